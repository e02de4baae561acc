"""experiments/icm_protocol.py (issue 22): its parts' runs, the run store it resumes from, the report it assembles."""

from __future__ import annotations

import pytest

from experiments import icm_protocol as proto_mod
from experiments.icm_protocol import LOSS_ARMS, OTHER_LOSSES, SETTINGS, Protocol, digits_changes, render


def test_parts_name_the_runs_the_issue_asks_for(tmp_path):
    proto = Protocol(str(tmp_path), str(tmp_path / "cache"), seeds=(0, 1, 2, 3, 4))
    losses = proto.part_runs("losses")
    assert len(losses) == len(OTHER_LOSSES) * 5 * len(LOSS_ARMS)
    assert {c.loss for c, _ in losses} == set(OTHER_LOSSES)
    assert all(c.model == "mlp1" and c.hidden == 500 and c.batch_size == 512 and c.schedule == "none"
               for c, _ in losses)  # the authors' setting
    linear = proto.part_runs("linear")
    assert {c.model for c, _ in linear} == {"linear"} and {c.method for c, _ in linear} == {
        "none", "mixup", "icm", "icm_share_labels_in_batch"}
    digits = proto.part_runs("digits")
    assert {c.model for c, _ in digits} == {"mlp1", "mlp"}  # the authors' ladder, and today's setting at 0.8
    assert {c.dataset for c, _ in digits} == {"digits"}
    assert sorted({c.train_fraction for c, _ in digits}) == [0.2, 0.4, 0.8]
    assert len(digits) == (3 + 1) * 5 * 3
    # as many examples seen as the authors' 60 MNIST epochs: fewer rows, more epochs
    assert [digits_changes(tf)["epochs"] for tf in (0.8, 0.4, 0.2)] == [334, 668, 1336]
    assert {c.seed for c, _ in digits} == {0, 1, 2, 3, 4} and all(c.data_seed == c.seed for c, _ in digits)


@pytest.mark.timeout(300)
def test_digits_part_trains_resumes_and_reports(tmp_path, monkeypatch):
    """A shortened digits part for real: runs stored once, read back by a second invocation, the table and
    verdict rows assembled from them, and the cut line counting the seeds that ran."""
    monkeypatch.setitem(SETTINGS, "authors", dict(SETTINGS["authors"], epochs=3))  # 17 digits epochs
    monkeypatch.setattr(proto_mod, "DIGITS_LADDER", (0.8,))
    monkeypatch.setattr(proto_mod, "DIGITS_RUNS", (("authors", 0.8), ("today", 0.8)))
    cache = str(tmp_path / "cache")
    proto = Protocol(str(tmp_path), cache, seeds=(0, 1))
    for cfg, oracle in proto.part_runs("digits"):
        entry = proto.run(cfg, oracle)
        assert len(entry["curve"]["test_acc"]) == digits_changes(0.8)["epochs"] == 17
    assert proto.trained == 12  # three arms x two seeds, in the authors' setting and today's
    # learns: on digits every arm is far above chance (10 %) after 17 epochs (51 steps) of the authors' MLP
    assert all(max(proto.run(c, o)["curve"]["test_acc"]) > 0.3 for c, o in proto.part_runs("digits"))

    again = Protocol(str(tmp_path), cache, seeds=(0, 1))
    for cfg, oracle in again.part_runs("digits"):
        again.run(cfg, oracle)
    assert again.trained == 0  # everything read from the run store

    text = render(again, features=None)
    assert "Size ladder on digits" in text
    rows = [ln for ln in text.splitlines() if ln.startswith("| 0.8 (~")]
    assert len(rows) == 2 and "today's MLP" in rows[1]
    assert all(row.count("±") == 6 for row in rows)  # three arms, two readings each
    assert "| icm beats none | digits, train_fraction 0.8 |" in text
    assert "| share_in_batch beats none | digits, train_fraction 0.8 |" in text
    assert "| icm beats none | digits, today's MLP (BatchNorm) and recipe, train_fraction 0.8 |" in text
    assert "digits 0.8: 2" in text and "losses fwd 0, scl_exp 0" in text
