"""The metric table: every metric a run reports, which way is better, and what it reads.

The one place that says which metrics exist and whether a metric reads true labels that a
complementary-label user does not have. The search, ASHA, the summary, `compare`,
`export-best`, the progress line and the plots all read it; `metrics.py` computes them.
Free of torch, so the command line can check a `--metric` before loading the training stack.
"""

from __future__ import annotations

from dataclasses import dataclass

from .config import CL_LABELS, LABELS


@dataclass(frozen=True)
class MetricSpec:
    name: str
    mode: str | None
    """max | min: which way is better; None for bookkeeping (epoch, time) nobody selects on."""
    meaning: str
    reads: str | None = None
    """Whose true labels it reads: None (only what a user has), "test" (the test split's) or
    "train" (the true labels behind generated complementary labels)."""
    labels: tuple[str, ...] = LABELS
    """Label kinds whose runs report it."""
    needs: str | None = None
    """val (a validation split), test (test labels), train_labels (true training labels), pairing (a mixing method)."""


_CL = CL_LABELS
METRICS: dict[str, MetricSpec] = {m.name: m for m in (
    MetricSpec("train_loss", "min", "mean training loss of the epoch (the method's own objective, on mixed rows)"),
    MetricSpec("val_acc", "max", "accuracy on the validation split's labels", labels=("ordinary",), needs="val"),
    MetricSpec("val_loss", "min", "cross-entropy on the validation split's labels", labels=("ordinary",), needs="val"),
    MetricSpec("val_ece", "min", "expected calibration error (15 bins) on the validation split", labels=("ordinary",),
               needs="val"),
    MetricSpec("val_scel", "min", "SCEL on the validation CLs: -log (softmax(z) Q)_ybar (libcll's default)",
               labels=_CL, needs="val"),
    MetricSpec("val_scel_ts", "min", "SCEL at the temperature that fits the validation CLs best: calibration "
               "taken out, ranks by separation (metrics.scel_ts_t)", labels=_CL, needs="val"),
    MetricSpec("val_ure", "min", "unbiased estimate of the validation cross-entropy from CLs, through Q^-1",
               labels=_CL, needs="val"),
    MetricSpec("val_acc_est", "max", "unbiased estimate of validation accuracy from CLs alone: mean (t Q^-1)[argmax]",
               labels=_CL, needs="val"),
    MetricSpec("test_acc", "max", "accuracy on the test split's true labels", reads="test", needs="test"),
    MetricSpec("test_ece", "min", "expected calibration error (15 bins) on the test split", reads="test",
               needs="test"),
    MetricSpec("noise_rate", "min", "share of (mixed) training CL rows that name the anchor's true class",
               reads="train", labels=_CL, needs="train_labels"),
    MetricSpec("pair_impurity", "min", "share of mixing pairs whose true classes differ", reads="train",
               needs="pairing"),
    MetricSpec("epoch", None, "epochs trained so far"),
    MetricSpec("epoch_time", None, "seconds of the epoch: training and evaluation"),
    MetricSpec("samples_per_s", None, "training throughput of the epoch (rows per second)"),
    MetricSpec("lr", None, "learning rate after the epoch's schedule step"),
)}


def get_metric(name: str) -> MetricSpec:
    """The metric called `name`; ValueError listing the valid names otherwise."""
    try:
        return METRICS[name]
    except KeyError:
        raise ValueError(f"unknown metric {name!r}; valid: {', '.join(METRICS)}") from None


def selectable(labels: str, val: bool, test: bool, train_labels: bool) -> list[str]:
    """Metrics a search over runs of this kind can select on (those with a direction that its runs report).

    val: a validation split exists; test: test labels exist; train_labels: true training labels exist.
    pair_impurity counts as available where true training labels are (only mixing methods report it).
    """
    have = {"val": val, "test": test, "train_labels": train_labels, "pairing": train_labels, None: True}
    return [m.name for m in METRICS.values() if m.mode and labels in m.labels and have[m.needs]]


def default_metric(labels: str) -> str:
    """What a search selects on when not told: measured in docs/results.md (validation-metric section)."""
    return "val_acc" if labels == "ordinary" else "val_scel_ts"


def reads_true_labels_note(name: str, labels: str) -> str | None:
    """One line to print when a search selects on true labels a user would not have, else None."""
    spec = get_metric(name)
    if spec.reads == "test":
        return f"note: the search selects on {name}, which reads the test split's true labels: its best score is optimistic"
    if spec.reads == "train" and labels in CL_LABELS:
        return (f"note: the search selects on {name}, which reads the true labels behind the complementary ones:"
                " real complementary-label data has none")
    return None
