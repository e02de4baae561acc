"""The summary's figures: Optuna's own plots fed with the values the summary has, checked by what they draw."""

from __future__ import annotations

import math

import matplotlib
import matplotlib.pyplot as plt
import numpy as np
import pytest

from tuner.tracking import plots
from tuner.report.pareto import pareto_front


def points(collection) -> list[tuple[float, float]]:
    return [(round(float(x), 6), round(float(y), 6)) for x, y in collection.get_offsets()]


def saved(fig, tmp_path, name: str) -> int:
    path = tmp_path / name
    fig.savefig(path)
    plt.close(fig)
    data = path.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    return len(data)


@pytest.mark.parametrize("mode", ["min", "max"])
def test_best_so_far_is_optunas_history_with_the_running_best(tmp_path, mode):
    values = [2.30, 2.25, 2.28, 2.10, 2.20, 2.05]
    fig = plots.best_so_far(values, mode, "val_scel_ts")
    ax = fig.axes[0]
    assert ax.get_ylabel() == "val_scel_ts" and ax.get_title() == "Optimization History Plot"
    (scatter,) = [c for c in ax.collections if c.get_label() == "val_scel_ts"]
    assert [y for _, y in points(scatter)] == values  # every trial, in completion order
    (best,) = [line for line in ax.get_lines() if line.get_label() == "Best Value"]
    running = list(np.minimum.accumulate(values) if mode == "min" else np.maximum.accumulate(values))
    assert list(best.get_ydata()) == pytest.approx(running)
    assert saved(fig, tmp_path, "best_so_far.png") > 1000


def test_importances_draws_the_given_scores(tmp_path):
    scores = {"lr": 0.55, "method": 0.3, "alpha": 0.1, "k": 0.05}
    fig = plots.importances(scores)
    ax = fig.axes[0]
    bars = {t.get_text(): None for t in ax.get_yticklabels()}
    widths = [p.get_width() for p in ax.patches]
    assert sorted(widths) == pytest.approx(sorted(scores.values()))
    assert set(bars) == set(scores) and ax.get_legend() is None
    # the longest bar is the most important parameter's
    names = [t.get_text() for t in ax.get_yticklabels()]
    assert names[int(np.argmax(widths))] == "lr"
    assert saved(fig, tmp_path, "param_importances.png") > 1000


def test_param_scatter_is_a_slice_per_parameter(tmp_path):
    rng = np.random.default_rng(0)
    rows = []
    for i in range(12):
        method = ["mixup", "icm"][i % 2]
        row = {"method": method, "lr": float(10 ** rng.uniform(-4, -2)), "alpha": float(rng.uniform(0.1, 2)),
               "val_scel_ts": float(2.3 - 0.01 * i)}
        if method == "icm":
            row["k"] = int(rng.integers(5, 50))  # conditional: only ICM trials have it
        rows.append(row)
    rows.append({"method": "mixup", "lr": 1e-3, "alpha": 1.0, "val_scel_ts": None})  # a failed metric: left out
    params = ["alpha", "k", "lr", "method"]
    fig = plots.param_scatter(rows, params, "val_scel_ts")
    panels = [ax for ax in fig.axes if ax.get_xlabel() in params]
    assert [ax.get_xlabel() for ax in panels] == params
    by_name = {ax.get_xlabel(): ax for ax in panels}
    assert by_name["lr"].get_xscale() == "log" and by_name["alpha"].get_xscale() == "log"
    assert sum(len(c.get_offsets()) for c in by_name["k"].collections) == 6
    assert sum(len(c.get_offsets()) for c in by_name["lr"].collections) == 12
    ys = sorted(y for c in by_name["lr"].collections for _, y in c.get_offsets())
    assert ys == pytest.approx(sorted(r["val_scel_ts"] for r in rows[:12]))
    assert {t.get_text().strip("'") for t in by_name["method"].get_xticklabels()} >= {"icm", "mixup"}
    assert saved(fig, tmp_path, "params_vs_metric.png") > 1000


def _row(i, acc, ece, epoch=10):
    return {"trial_id": f"t{i}", "metrics": {"val_acc_est": acc, "test_ece": ece, "epoch": epoch}}


def test_pareto_highlights_the_summarys_front(tmp_path):
    rows = [_row(0, 0.9, 0.30), _row(1, 0.8, 0.10), _row(2, 0.6, 0.05), _row(3, 0.7, 0.20), _row(4, 0.5, 0.40),
            _row(5, 0.95, 0.02, epoch=2),  # stopped early: undominated, but not ranked
            _row(6, 0.4, 0.50, epoch=2),  # stopped early and dominated anyway
            {"trial_id": "t7", "metrics": {"val_acc_est": 0.99}}]  # no second metric: not drawn
    metrics, modes = ["val_acc_est", "test_ece"], ["max", "min"]
    front = pareto_front([r for r in rows if r["metrics"].get("epoch") == 10], metrics, modes)
    assert [r["trial_id"] for r in front] == ["t0", "t1", "t2"]
    fig = plots.pareto(rows, front, metrics, modes)
    ax = fig.axes[0]
    drawn = {c.get_label(): sorted(points(c)) for c in ax.collections}
    assert drawn["Pareto front"] == sorted((r["metrics"]["val_acc_est"], r["metrics"]["test_ece"]) for r in front)
    assert drawn["not ranked (stopped early)"] == [(0.95, 0.02)]
    assert drawn["trial"] == [(0.4, 0.5), (0.5, 0.4), (0.7, 0.2)]
    assert [t.get_text() for t in ax.get_legend().get_texts()] == ["not ranked (stopped early)", "trial", "Pareto front"]
    assert ax.get_xlabel() == "val_acc_est (higher is better)" and ax.get_ylabel() == "test_ece (lower is better)"
    assert saved(fig, tmp_path, "pareto_front.png") > 1000


def test_pareto_without_unranked_trials_and_with_three_metrics(tmp_path):
    rows = [_row(0, 0.9, 0.3), _row(1, 0.8, 0.1), _row(2, 0.7, 0.2)]
    front = pareto_front(rows, ["val_acc_est", "test_ece"], ["max", "min"])
    ax = plots.pareto(rows, front, ["val_acc_est", "test_ece"], ["max", "min"]).axes[0]
    assert {c.get_label() for c in ax.collections} == {"trial", "Pareto front"}
    plt.close(ax.figure)
    for i, r in enumerate(rows):
        r["metrics"]["val_loss"] = [0.5, 0.6, 0.1][i]
    metrics, modes = ["val_acc_est", "test_ece", "val_loss"], ["max", "min", "min"]
    fig = plots.pareto(rows, pareto_front(rows, metrics, modes), metrics, modes)
    assert fig.axes[0].name == "3d"  # Optuna draws three metrics in 3-D
    assert saved(fig, tmp_path, "pareto3.png") > 1000


def test_optunas_style_does_not_leak(tmp_path):
    before = dict(matplotlib.rcParams)
    for fig in (plots.best_so_far([1.0, 0.5], "min", "m"), plots.importances({"a": 1.0}),
                plots.pareto([_row(0, 0.9, 0.3), _row(1, 0.8, 0.1)], [_row(0, 0.9, 0.3)],
                             ["val_acc_est", "test_ece"], ["max", "min"])):
        plt.close(fig)
    after = dict(matplotlib.rcParams)
    changed = {k for k in before if before[k] != after[k] and not (isinstance(before[k], float) and math.isnan(before[k]))}
    assert not changed, changed
    fig = plots.learning_curve({"train_loss": [(1, 2.0), (2, 1.5)], "test_acc": [(1, 0.3), (2, 0.5)]})
    assert fig.axes[0].get_facecolor()[:3] == (1.0, 1.0, 1.0)  # matplotlib's default, not ggplot's grey
    assert [ax.get_title() for ax in fig.axes] == ["test_acc", "train_loss"]
    assert saved(fig, tmp_path, "learning_curve.png") > 1000
