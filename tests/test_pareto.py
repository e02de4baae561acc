"""Pareto fronts: no front member is dominated, every dominated trial is off the front."""

from __future__ import annotations

import itertools
import random

import pytest

from tuner.report.pareto import dominates, pareto_front, pick_within


def row(i, acc, ece):
    return {"trial_id": f"t{i}", "metrics": {"val_acc": acc, "val_ece": ece}}


def test_front_by_hand():
    rows = [row(0, 0.9, 0.10), row(1, 0.8, 0.05), row(2, 0.85, 0.12), row(3, 0.9, 0.10), row(4, 0.7, 0.20)]
    front = pareto_front(rows, ["val_acc", "val_ece"], ["max", "min"])
    # t2 is dominated by t0 (better acc, lower ece), t4 by everyone; t0 and t3 tie: both stay
    assert [r["trial_id"] for r in front] == ["t0", "t1", "t3"]


def test_front_invariants_on_random_trials():
    rng = random.Random(0)
    for _ in range(50):
        rows = [row(i, rng.random(), rng.random()) for i in range(rng.randint(1, 30))]
        rows.append({"trial_id": "missing", "metrics": {"val_acc": 0.99}})  # not ranked
        front = pareto_front(rows, ["val_acc", "val_ece"], ["max", "min"])
        signed = {r["trial_id"]: (r["metrics"]["val_acc"], -r["metrics"]["val_ece"]) for r in rows[:-1]}
        on = {r["trial_id"] for r in front}
        assert "missing" not in on and on
        for a, b in itertools.permutations(signed, 2):
            if dominates(signed[a], signed[b]):
                assert b not in on  # a dominated trial is off the front
        for t in on:  # no front member is dominated
            assert not any(dominates(signed[o], signed[t]) for o in signed)


def test_three_metrics():
    rows = [{"trial_id": i, "metrics": {"a": a, "b": b, "c": c}}
            for i, (a, b, c) in enumerate([(1, 1, 1), (2, 0, 1), (0, 0, 0), (1, 1, 2)])]
    assert [r["trial_id"] for r in pareto_front(rows, "abc", ["max"] * 3)] == [1, 3]


def test_pick_within():
    front = [row(0, 0.90, 0.10), row(1, 0.88, 0.04), row(2, 0.80, 0.03)]
    m, modes = ["val_acc", "val_ece"], ["max", "min"]
    assert pick_within(front, m, modes, 0.0)["trial_id"] == "t2"  # only the best ece
    assert pick_within(front, m, modes, 0.015)["trial_id"] == "t1"
    assert pick_within(front, m, modes, 1.0)["trial_id"] == "t0"
    with pytest.raises(ValueError):
        pick_within([], m, modes, 0.1)
