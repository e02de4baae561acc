"""What a search selects on: the metric table's defaults, refusals and notes, and the best-trial rule."""

from __future__ import annotations

import pytest

from tuner.report.selection import pick_best, resolve_metric, with_test
from tuner.settings import SearchError


def test_defaults_read_no_true_label():
    assert resolve_metric(None, None, "complementary", val=True, test=True, train_labels=True) == \
        ("val_scel_ts", "min", None)
    assert resolve_metric(None, None, "given", val=True, test=False, train_labels=False) == ("val_scel_ts", "min", None)
    assert resolve_metric(None, None, "ordinary", val=True, test=True, train_labels=True) == ("val_acc", "max", None)


def test_true_label_metrics_only_when_named_and_said():
    metric, mode, note = resolve_metric("test_acc", None, "complementary", val=True, test=True, train_labels=True)
    assert (metric, mode) == ("test_acc", "max")
    assert note.startswith("note: the search selects on test_acc, which reads the test split's true labels")
    _, _, note = resolve_metric("noise_rate", None, "complementary", val=True, test=True, train_labels=True)
    assert "true labels behind the complementary ones" in note
    # with ordinary labels the training labels are the user's own: no note for them
    assert resolve_metric("pair_impurity", None, "ordinary", val=True, test=True, train_labels=True)[2] is None


@pytest.mark.parametrize("args, needle", [
    (("val_acc", None, "complementary", True, True, True), "it needs labels=ordinary, not labels=complementary"),
    (("val_scel", None, "complementary", False, True, True), "there is no validation split"),
    ((None, None, "complementary", False, True, True), "val_fraction=0 leaves no validation metric"),
    (("test_acc", None, "given", True, False, False), "the data has no test labels"),
    (("noise_rate", None, "given", True, True, False), "labels=complementary or given|no true training labels"),
    (("val_scel", "max", "complementary", True, True, True), "--mode max contradicts val_scel"),
    (("lr", None, "complementary", True, True, True), "--metric 'lr' is not a metric a search can select on"),
])
def test_metrics_a_search_cannot_report_are_refused(args, needle):
    metric, mode, labels, val, test, train_labels = args
    with pytest.raises(SearchError, match=needle):
        resolve_metric(metric, mode, labels, val=val, test=test, train_labels=train_labels)


def test_pick_best_prefers_full_trials_and_follows_the_mode():
    rows = [
        {"error": None, "metrics": {"val_scel": 1.0, "epoch": 2}},  # best value, but stopped early
        {"error": None, "metrics": {"val_scel": 1.5, "epoch": 5}},
        {"error": None, "metrics": {"val_scel": 1.2, "epoch": 5}},
        {"error": "boom", "metrics": {"val_scel": 0.1, "epoch": 5}},
        {"error": None, "metrics": {"val_scel": float("nan"), "epoch": 5}},
    ]
    assert pick_best(rows, "val_scel", "min", 5) is rows[2]
    assert pick_best(rows, "val_scel", "max", 5) is rows[1]
    assert pick_best(rows[:1], "val_scel", "min", 5) is rows[0]  # nothing ran to the end: the best partial
    assert pick_best(rows[3:], "val_scel", "min", 5) is None


def test_the_test_accuracy_is_shown_beside_the_selection_metric():
    assert with_test({"val_scel": 1.23456, "test_acc": 0.9}, "val_scel") == "val_scel 1.234560 (test_acc 0.9000)"
    assert with_test({"val_scel": 1.0}, "val_scel") == "val_scel 1.000000"
    assert with_test({"test_acc": 0.9}, "test_acc") == "test_acc 0.900000"
