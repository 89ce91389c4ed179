"""Curation merges a cycle's production feedback rows into its dataset (real databases, a
real local store): a corroborated correction wins dedup over a synthetic row of the same input,
and a feedback row carrying golden text is rejected like any other."""

from __future__ import annotations

import json
from pathlib import Path

from curation.domain import FEEDBACK_PREFIX
from shared.db import Database
from shared.events.base import ArtifactRef
from shared.events.catalog import DatasetPublished
from tests.integration.test_curation_service import (
    GOLDEN,
    apply_spec,
    deliver,
    deps,
    outbox,
    store,
    synth_event,
    synth_rows,
)

FIXED = json.dumps({"priority": "high", "team": "billing"})


async def test_feedback_rows_join_the_dataset_and_win_over_synthetic_ones(
    db: Database, tmp_path: Path
):
    artifacts = store(tmp_path)
    spec_ref = await apply_spec(artifacts, validation_share=0.2)
    rows = synth_rows(20)
    feedback = [
        # The same ticket as a synthetic row, answered differently by corroborating users.
        {"id": "c1", "use_case": "feedback", "input": rows[0]["input"], "output": FIXED},
        {
            "id": "c2",
            "use_case": "feedback",
            "input": "Refund the double charge please",
            "output": FIXED,
        },
        {"id": "c3", "use_case": "feedback", "input": "Re: " + GOLDEN[0]["input"], "output": FIXED},
    ]
    # A synthetic row may not claim feedback's precedence by its id.
    rows.append({**synth_rows(1, seed=9)[0], "id": f"{FEEDBACK_PREFIX}forged"})
    body = b"".join(json.dumps(r).encode() + b"\n" for r in feedback) + b"not json\n"
    fb_ref = await artifacts.put_bytes(body, media_type="application/jsonl")
    event = await synth_event(artifacts, spec_ref, rows)
    event = event.model_copy(update={"feedback_dataset": fb_ref})

    assert await deliver(deps(db, artifacts), event) == "acked"

    [published] = await outbox(db, DatasetPublished)
    manifest = json.loads(await artifacts.get_bytes(published.manifest))
    [source] = manifest["lineage"]["sources"]
    assert source["feedback_dataset"] == fb_ref.model_dump(mode="json")
    assert source["feedback_rows"] == 3
    data = [
        json.loads(line)
        for ref in (published.train, published.validation)
        for line in (await artifacts.get_bytes(ref)).decode().splitlines()
    ]
    by_id = {r["id"]: r for r in data}
    assert {f"{FEEDBACK_PREFIX}c1", f"{FEEDBACK_PREFIX}c2"} <= set(by_id)
    assert f"{FEEDBACK_PREFIX}c3" not in by_id  # contaminated: golden text never trains
    assert rows[0]["id"] not in by_id  # the synthetic twin lost to the correction
    answer = [m for m in by_id[f"{FEEDBACK_PREFIX}c1"]["messages"] if m["role"] == "assistant"]
    assert json.loads(answer[0]["content"]) == json.loads(FIXED)
    assert f"{FEEDBACK_PREFIX}forged" not in by_id
    assert manifest["counts"]["rejected"] == {
        "contaminated": 1,
        "exact_duplicate": 1,
        "malformed": 2,  # the forged id, and the feedback file's bad line
    }
    rejected = (await artifacts.get_bytes(ArtifactRef(**manifest["files"]["rejected"]))).decode()
    assert f'"{FEEDBACK_PREFIX}line-4"' in rejected  # named as feedback's, not the batch's
