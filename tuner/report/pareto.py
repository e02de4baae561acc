"""Pareto fronts of multi-objective searches: which trials no other trial beats on every metric.

Pure functions over trial rows (dicts with "metrics"), used by the summary, `compare
--pareto` and `export-best`. A trial dominates another when it is at least as good on every
metric and strictly better on one; the front is the set of trials nobody dominates. Trials
missing a metric (or with a non-finite value) are not ranked.
"""

from __future__ import annotations

import math
from typing import Any, Sequence


def _values(row: dict[str, Any], metrics: Sequence[str], modes: Sequence[str]) -> tuple[float, ...] | None:
    """The row's metrics, signed so that larger is better on every axis; None if one is missing."""
    out = []
    for m, mode in zip(metrics, modes):
        v = row["metrics"].get(m)
        if not isinstance(v, (int, float)) or isinstance(v, bool) or not math.isfinite(v):
            return None
        out.append(float(v) if mode == "max" else -float(v))
    return tuple(out)


def dominates(a: Sequence[float], b: Sequence[float]) -> bool:
    """a is at least as good as b everywhere and better somewhere (larger is better)."""
    return all(x >= y for x, y in zip(a, b)) and any(x > y for x, y in zip(a, b))


def pareto_front(rows: list[dict[str, Any]], metrics: Sequence[str], modes: Sequence[str]) -> list[dict[str, Any]]:
    """The rows no other row dominates, in their given order. O(n^2): searches have few trials."""
    scored = [(r, v) for r in rows if (v := _values(r, metrics, modes)) is not None]
    return [r for r, v in scored if not any(dominates(w, v) for _, w in scored)]


def pick_within(front: list[dict[str, Any]], metrics: Sequence[str], modes: Sequence[str],
                within: float) -> dict[str, Any]:
    """The front member with the best first metric among those whose second metric is within
    `within` of the front's best second metric (in the second metric's own units)."""
    if not front:
        raise ValueError("the Pareto front is empty")
    if len(metrics) < 2:
        raise ValueError("pick_within needs two metrics")
    sign = [1.0 if mode == "max" else -1.0 for mode in modes]
    second = [sign[1] * r["metrics"][metrics[1]] for r in front]
    best_second = max(second)
    near = [r for r, s in zip(front, second) if best_second - s <= within]
    return max(near, key=lambda r: sign[0] * r["metrics"][metrics[0]])


def front_of(rows: list[dict[str, Any]], settings) -> list[dict[str, Any]]:
    """The Pareto front of a search's trial rows (`summary.trial_rows`), among those that ran
    every epoch when any did (as `selection.pick_best`)."""
    ok = [r for r in rows if r["error"] is None]
    full = [r for r in ok if r["metrics"].get("epoch") == settings.epochs]
    return pareto_front(full or ok, settings.metrics, settings.modes)
