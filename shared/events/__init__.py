"""The event catalog: one declaration of every event, its subject and its stream."""

from .base import ArtifactRef, Event
from .catalog import *  # noqa: F403 - the catalog is the public surface
from .catalog import CATALOG, event_class
from .stream import STREAM_NAME, STREAM_SUBJECTS, ConsumerPolicy, StreamPolicy

__all__ = [
    "CATALOG",
    "STREAM_NAME",
    "STREAM_SUBJECTS",
    "ArtifactRef",
    "ConsumerPolicy",
    "Event",
    "StreamPolicy",
    "event_class",
]
