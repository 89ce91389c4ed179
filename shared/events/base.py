"""The envelope every event shares, and the small value types payloads are built from."""

from __future__ import annotations

import re
from datetime import UTC, datetime
from typing import Annotated, ClassVar, TypeVar
from uuid import UUID, uuid4

from pydantic import BaseModel, ConfigDict, Field, StringConstraints

SUBJECT_PATTERN = re.compile(r"^distillery(\.[a-z][a-z_]*)+\.[a-z_]+ed\.v[1-9][0-9]*$")

MAX_TEXT = 65536
Sha256Hex = Annotated[str, StringConstraints(pattern=r"^[0-9a-f]{64}$")]
# A task, slice, service or metric name: short by construction (task specs allow 64 chars).
Name = Annotated[str, StringConstraints(min_length=1, max_length=128)]
# Why something happened, for people: stages truncate to 4000 before they publish.
Reason = Annotated[str, StringConstraints(min_length=1, max_length=8192)]
# List fields carry at most this many items (slices, gates, metrics); bodies go to artifacts.
MAX_ITEMS = 1024
# Integer columns are 32-bit: a larger count would fail in the database, later and retried.
MAX_COUNT = 2**31 - 1
Count = Annotated[int, Field(ge=-MAX_COUNT, le=MAX_COUNT)]


E = TypeVar("E", bound="Event")


def utcnow() -> datetime:
    return datetime.now(UTC)


class Frozen(BaseModel):
    # extra="forbid": a typo in a producer must fail at the producer, not silently vanish.
    # allow_inf_nan=False: `Infinity`, NaN and 1e309 (which parses to inf) are refused in every
    # float, so no cost, loss or score downstream turns into inf arithmetic. str_max_length: no
    # field carries an unbounded string into a table; fields that need less say so below.
    model_config = ConfigDict(
        frozen=True, extra="forbid", allow_inf_nan=False, str_max_length=MAX_TEXT
    )


class ArtifactRef(Frozen):
    """Where a large thing lives. Events carry this, never the bytes."""

    uri: str = Field(
        min_length=1, max_length=4096, description="file:// or s3:// location of the object"
    )
    sha256: Sha256Hex = Field(description="hex digest of the object's bytes; checked on read")
    size_bytes: int = Field(ge=0, le=2**53)
    media_type: str = Field(default="application/octet-stream", max_length=256)


class Event(Frozen):
    """Envelope. Subclasses set `subject`; the version lives in the subject, not the body."""

    subject: ClassVar[str]

    event_id: UUID = Field(
        default_factory=uuid4,
        description="unique; also the Nats-Msg-Id header, so JetStream drops duplicates",
    )
    cycle_id: UUID | None = Field(
        description="correlation id of the improvement cycle; null only outside any cycle"
    )
    causation_id: UUID | None = Field(
        default=None, description="event_id of the event this one answers; null for a root"
    )
    occurred_at: datetime = Field(default_factory=utcnow)
    producer: str = Field(
        min_length=1, max_length=64, description="service or tool that emitted the event"
    )

    def caused(self, cls: type[E], *, producer: str, **fields) -> E:
        """Build the event that answers this one, carrying correlation and causation."""
        fields.setdefault("cycle_id", self.cycle_id)
        return cls(causation_id=self.event_id, producer=producer, **fields)
