"""Which metric a search selects on, and which trial it calls best.

Reads the core's metric table (`trainables/core/metric_table.py`): the default metric is
the label kind's own (validation, computed from the labels a user has), a metric that reads
true labels is taken only when asked for by name and said so, and a metric this search's
trials cannot report is a one-line error. `pick_best` is the one rule the summary,
`export-best` and `compare` share.
"""

from __future__ import annotations

from typing import Any

from trainables.core.metric_table import METRICS, default_metric, reads_true_labels_note, selectable
from tuner.settings import SearchError, SearchSettings
from tuner.tracking.mlflow_meta import finite_number


def resolve_metric(metric: str | None, mode: str | None, labels: str, val: bool, test: bool,
                   train_labels: bool) -> tuple[str, str, str | None]:
    """(metric, mode, note) for a search whose runs have these labels and splits.

    metric None: the label kind's default (needs a validation split). mode None: the metric's
    own direction; a mode against it is an error. note: the line to print when the metric
    reads true labels (test split, or the truth behind generated complementary labels).
    """
    available = selectable(labels, val=val, test=test, train_labels=train_labels)
    if metric is None:
        metric = default_metric(labels)
        if metric not in available:
            raise SearchError(f"val_fraction=0 leaves no validation metric to select on; give val_fraction > 0, or "
                              f"--metric with one of {', '.join(available)}")
    if metric not in METRICS or METRICS[metric].mode is None:
        raise SearchError(f"--metric {metric!r} is not a metric a search can select on; "
                          f"this search's trials report {', '.join(available)}")
    if metric not in available:
        spec = METRICS[metric]
        why = {"val": "there is no validation split (val_fraction=0)", "test": "the data has no test labels",
               "train_labels": "the data has no true training labels",
               "pairing": "the data has no true training labels"}.get(spec.needs, "")
        if labels not in spec.labels:
            why = f"it needs labels={' or '.join(spec.labels)}, not labels={labels}"
        raise SearchError(f"--metric {metric} cannot be reported by this search's trials ({why}); "
                          f"choose one of {', '.join(available)}")
    own = METRICS[metric].mode
    if mode is None:
        mode = own
    elif mode != own:
        raise SearchError(f"--mode {mode} contradicts {metric}, for which {'higher' if own == 'max' else 'lower'} "
                          "is better")
    return metric, mode, reads_true_labels_note(metric, labels)


def resolve_metrics(metric: str | None, mode: str | None, labels: str, val: bool, test: bool,
                    train_labels: bool) -> tuple[str, str, list[str]]:
    """("a,b", "max,min", notes) for `--metric a,b --mode max,min` (modes optional); one metric works too.

    Two or three distinct metrics make a multi-objective search; its notes say what ASHA does.
    """
    names = [m.strip() for m in metric.split(",")] if metric else [None]
    modes = [m.strip() for m in mode.split(",")] if mode else [None] * len(names)
    if len(names) > 3:
        raise SearchError(f"--metric {metric}: a search optimises at most 3 metrics")
    if len(modes) != len(names):
        raise SearchError(f"--mode {mode} gives {len(modes)} direction(s) for {len(names)} metric(s) in --metric {metric}")
    if len(set(names)) != len(names):
        raise SearchError(f"--metric {metric} names a metric twice")
    out, notes = [], []
    for name, m in zip(names, modes):
        out.append(resolve_metric(name, m, labels, val=val, test=test, train_labels=train_labels))
    notes += [n for _, _, n in out if n]
    if len(out) > 1:
        notes.append(f"multi-objective search: TPE proposes along the Pareto front of {', '.join(o[0] for o in out)}; "
                     f"ASHA stops trials on {out[0][0]} alone (it cannot rank on several metrics)")
    return ",".join(o[0] for o in out), ",".join(o[1] for o in out), notes


def metric_columns(metric: str) -> list[str]:
    """Columns of a trial table: the selection metric first, then every other one worth showing."""
    first = metric.split(",")
    rest = [m.name for m in METRICS.values() if m.mode and m.name not in first and m.name != "train_loss"]
    return [*first, *rest, "epoch"]



def pick_best(rows: list[dict[str, Any]], metric: str, mode: str, epochs: int) -> dict[str, Any] | None:
    """Best trial by its last reported metric, preferring trials that ran every epoch.

    rows: dicts with "error" (None when the trial did not fail) and "metrics" (its last
    result). A trial ASHA stopped early ran a different learning-rate schedule than its
    config describes, so a retrain from its config would not reproduce its number.
    """
    ok = [r for r in rows if r["error"] is None and finite_number(r["metrics"].get(metric)) is not None]
    full = [r for r in ok if r["metrics"].get("epoch") == epochs]
    pool = full or ok
    if not pool:
        return None
    sign = 1 if mode == "max" else -1
    return max(pool, key=lambda r: sign * r["metrics"][metric])


def with_test(metrics: dict[str, Any], metric: str) -> str:
    """`val_scel 1.934217 (test_acc 0.9310)`: the selection metric(s), and the test accuracy beside it.

    The selection metric gets 6 decimals: trials a small validation split scores alike must
    still read apart where the best one is named.
    """
    names = metric.split(",")
    text = " ".join(f"{m} {metrics[m]:.6f}" if finite_number(metrics.get(m)) is not None else f"{m} -" for m in names)
    test = finite_number(metrics.get("test_acc"))
    if "test_acc" not in names and test is not None:
        text += f" (test_acc {test:.4f})"
    return text


def _source(name: str, labels: str) -> str:
    spec = METRICS[name]
    if spec.reads == "test":
        return "the test split's true labels"
    if spec.reads == "train":
        return "the true labels of the training rows"
    if spec.needs == "val":
        return ("the validation split's complementary labels only, no true label read"
                if labels != "ordinary" else "the validation split's labels")
    return "the training rows' own labels"


def describe_selection(settings: SearchSettings) -> str:
    """One line: what the search selects on, and whether that reads true labels."""
    labels = settings.base["labels"]
    pairs = [f"{m} ({mode})" for m, mode in zip(settings.metrics, settings.modes)]
    sources = list(dict.fromkeys(_source(m, labels) for m in settings.metrics))  # each once, in order
    what = pairs[0] if len(pairs) == 1 else f"the Pareto front of {', '.join(pairs[:-1])} and {pairs[-1]}"
    return f"selects on {what}, from {' and '.join(sources)}"
