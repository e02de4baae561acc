"""Figures logged to MLflow: a trial's learning curve and a search's summary plots."""

from __future__ import annotations

from typing import Any

import matplotlib

matplotlib.use("Agg")  # no display on workers or CI; set before pyplot is imported
import matplotlib.pyplot as plt  # noqa: E402


def learning_curve(series: dict[str, list[tuple[int, float]]]):
    """train_loss and test_acc against epoch, on two axes."""
    fig, axes = plt.subplots(1, len(series), figsize=(4.5 * len(series), 3.2), squeeze=False)
    for ax, (name, points) in zip(axes[0], sorted(series.items())):
        points = sorted(points)
        ax.plot([p[0] for p in points], [p[1] for p in points], marker=".")
        ax.set_xlabel("epoch")
        ax.set_title(name)
        ax.grid(alpha=0.3)
    fig.tight_layout()
    return fig


def best_so_far(values: list[float], mode: str, metric: str):
    """Each trial's metric in completion order, and the running best."""
    fig, ax = plt.subplots(figsize=(5.5, 3.5))
    best, running = None, []
    for v in values:
        best = v if best is None else (max(best, v) if mode == "max" else min(best, v))
        running.append(best)
    xs = list(range(1, len(values) + 1))
    ax.scatter(xs, values, s=14, alpha=0.6, label="trial")
    ax.step(xs, running, where="post", color="C3", label="best so far")
    ax.set_xlabel("trial (completion order)")
    ax.set_ylabel(metric)
    ax.legend()
    ax.grid(alpha=0.3)
    fig.tight_layout()
    return fig


def importances(scores: dict[str, float]):
    """Optuna's parameter importances as a horizontal bar chart."""
    fig, ax = plt.subplots(figsize=(5.5, 0.4 * max(len(scores), 2) + 1))
    names = list(scores)[::-1]
    ax.barh(names, [scores[n] for n in names])
    ax.set_xlabel("importance (Optuna's default evaluator)")
    fig.tight_layout()
    return fig


def param_scatter(rows: list[dict[str, Any]], params: list[str], metric: str):
    """One panel per parameter: its value against the metric (categoricals as strings)."""
    n = max(len(params), 1)
    cols = min(n, 3)
    nrows = -(-n // cols)
    fig, axes = plt.subplots(nrows, cols, figsize=(4 * cols, 3 * nrows), squeeze=False)
    for ax, p in zip(axes.flat, params):
        pts = [(r[p], r[metric]) for r in rows if p in r and r.get(metric) is not None]
        if pts and all(isinstance(x, (int, float)) and not isinstance(x, bool) for x, _ in pts):
            ax.scatter([x for x, _ in pts], [y for _, y in pts], s=14)
            if p in ("lr", "weight_decay", "alpha", "k") and all(x > 0 for x, _ in pts):
                ax.set_xscale("log")
        else:
            cats = sorted({str(x) for x, _ in pts})
            ax.scatter([cats.index(str(x)) for x, _ in pts], [y for _, y in pts], s=14)
            ax.set_xticks(range(len(cats)), cats, rotation=30)
        ax.set_xlabel(p)
        ax.set_ylabel(metric)
        ax.grid(alpha=0.3)
    for ax in list(axes.flat)[len(params):]:
        ax.axis("off")
    fig.tight_layout()
    return fig


def pareto(rows: list[dict[str, Any]], front: list[dict[str, Any]], metrics: list[str], modes: list[str]):
    """Every trial on the first two metrics, the Pareto front highlighted and joined in order."""
    fig, ax = plt.subplots(figsize=(5.5, 4))
    a, b = metrics[0], metrics[1]
    pts = [(r["metrics"][a], r["metrics"][b]) for r in rows
           if isinstance(r["metrics"].get(a), (int, float)) and isinstance(r["metrics"].get(b), (int, float))]
    ax.scatter([p[0] for p in pts], [p[1] for p in pts], s=14, alpha=0.5, label="trial")
    on = sorted((r["metrics"][a], r["metrics"][b]) for r in front)
    ax.plot([p[0] for p in on], [p[1] for p in on], "o-", color="C3", label="Pareto front")
    ax.set_xlabel(f"{a} ({'higher' if modes[0] == 'max' else 'lower'} is better)")
    ax.set_ylabel(f"{b} ({'higher' if modes[1] == 'max' else 'lower'} is better)")
    ax.legend()
    ax.grid(alpha=0.3)
    fig.tight_layout()
    return fig

