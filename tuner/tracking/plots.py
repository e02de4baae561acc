"""Figures logged to MLflow: a trial's learning curve and a search's summary plots.

The summary plots are Optuna's own (`optuna.visualization.matplotlib`): optimisation history,
slice plot, parameter importances, Pareto front. Each function here takes the plain values the
summary has (`tuner/report/summary.py` calls them) and hands Optuna an in-memory study built from
them, so the figures are the ones `optuna-dashboard` and Optuna's documentation show. Only two
things are added by hand, because Optuna's plotting functions do not take them:

- `learning_curve`: a trial's train_loss and test_acc per epoch, side by side. A study holds
  one objective's intermediate values, not every metric a trial reports, so
  `plot_intermediate_values` cannot draw it.
- `pareto`: which trials the front is taken from. `plot_pareto_front` computes its own front
  over every completed trial; mixtune's front ranks only trials that ran every epoch (as the
  best-trial rule does), so a trial ASHA stopped early can look undominated without being on
  it. Those trials are passed as constraint-violating ("infeasible") and relabelled
  "not ranked", which makes Optuna's highlighted front the summary's `front`.

Optuna's plotting functions switch matplotlib to its ggplot style globally; every call here
runs inside `rc_context`, so the style does not leak into later figures.
"""

from __future__ import annotations

import contextlib
import warnings
from typing import Any, Iterator

import matplotlib

matplotlib.use("Agg")  # no display on workers or CI; set before pyplot is imported
import matplotlib.pyplot as plt  # noqa: E402

LOG_SCALE = ("lr", "weight_decay", "alpha", "k")  # parameters searched on a log scale, drawn on one


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


# ---------------------------------------------------------------------------- Optuna's plots
@contextlib.contextmanager
def _optuna_plotting() -> Iterator[Any]:
    """optuna, quiet (no "study created" log line, no ExperimentalWarning), its style kept local."""
    import optuna

    level = optuna.logging.get_verbosity()
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    try:
        with matplotlib.rc_context(), warnings.catch_warnings():
            warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
            # a parameter with one value in every trial: matplotlib widens the axis itself
            warnings.filterwarnings("ignore", "Attempting to set identical low and high xlims", UserWarning)
            yield optuna
    finally:
        optuna.logging.set_verbosity(level)


def _figure(axes) -> Any:
    """The figure of what an Optuna plot returns (one Axes, or an array of them)."""
    first = axes.flat[0] if hasattr(axes, "flat") else axes
    fig = first.figure
    if len(fig.axes) == 1:  # labels inside the saved PNG (the slice plot's colorbar keeps Optuna's layout)
        fig.set_layout_engine("tight")
    return fig


def _direction(mode: str) -> str:
    return "maximize" if mode == "max" else "minimize"


def best_so_far(values: list[float], mode: str, metric: str):
    """Each trial's metric in completion order, and the running best (Optuna's optimisation history)."""
    with _optuna_plotting() as optuna:
        study = optuna.create_study(direction=_direction(mode))
        study.add_trials([optuna.trial.create_trial(value=float(v)) for v in values])
        ax = optuna.visualization.matplotlib.plot_optimization_history(study, target_name=metric)
        ax.set_xlabel("trial (completion order)")
        return _figure(ax)


def importances(scores: dict[str, float]):
    """Parameter importances as a horizontal bar chart (Optuna's plot of the scores the summary computed)."""
    with _optuna_plotting() as optuna:

        class Given(optuna.importance.BaseImportanceEvaluator):
            """The importances already computed on the real study (summary.importances)."""

            def evaluate(self, study, params=None, *, target=None) -> dict[str, float]:
                return dict(scores)

        study = optuna.create_study()
        study.add_trial(optuna.trial.create_trial(value=0.0))  # the plot needs one completed trial
        ax = optuna.visualization.matplotlib.plot_param_importances(study, evaluator=Given())
        if ax.get_legend() is not None:
            ax.get_legend().remove()  # it would name the stand-in study's objective, not the metric
        return _figure(ax)


def _distribution(optuna, name: str, values: list[Any]):
    """The distribution a parameter's values fit, for the slice plot's axis: log, linear or categorical."""
    numeric = all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in values)
    if not numeric:
        return optuna.distributions.CategoricalDistribution(sorted(set(values), key=str))
    low, high = min(values), max(values)
    log = name in LOG_SCALE and low > 0
    if all(isinstance(v, int) for v in values):
        return optuna.distributions.IntDistribution(int(low), int(high), log=log)
    return optuna.distributions.FloatDistribution(float(low), float(high), log=log)


def param_scatter(rows: list[dict[str, Any]], params: list[str], metric: str):
    """One panel per parameter: its value against the metric (Optuna's slice plot; categoricals by name)."""
    scored = [r for r in rows if isinstance(r.get(metric), (int, float))]
    with _optuna_plotting() as optuna:
        dists = {p: _distribution(optuna, p, [r[p] for r in scored if p in r])
                 for p in params if any(p in r for r in scored)}
        study = optuna.create_study()
        study.add_trials([
            optuna.trial.create_trial(value=float(r[metric]), params={p: r[p] for p in dists if p in r},
                                      distributions={p: d for p, d in dists.items() if p in r})
            for r in scored
        ])
        axes = optuna.visualization.matplotlib.plot_slice(study, params=list(dists) or None, target_name=metric)
        return _figure(axes)


def _dominated_by(row: dict[str, Any], others: list[dict[str, Any]], metrics: list[str], modes: list[str]) -> bool:
    sign = [1.0 if m == "max" else -1.0 for m in modes]
    v = [s * row["metrics"][m] for s, m in zip(sign, metrics)]
    for o in others:
        w = [s * o["metrics"][m] for s, m in zip(sign, metrics)]
        if all(a >= b for a, b in zip(w, v)) and any(a > b for a, b in zip(w, v)):
            return True
    return False


def pareto(rows: list[dict[str, Any]], front: list[dict[str, Any]], metrics: list[str], modes: list[str]):
    """Every trial on the metrics given (two: a plane; three: Optuna draws 3-D), the Pareto front highlighted.

    `front` is the summary's front. A trial off it that nobody on it dominates was not ranked
    (it stopped early or failed): it is drawn apart, as "not ranked", so that the front Optuna
    highlights is `front` itself.
    """
    def plotted(r: dict[str, Any]) -> bool:
        return all(isinstance(r["metrics"].get(m), (int, float)) for m in metrics)

    on_front = {id(r) for r in front}
    drawn = [r for r in rows if plotted(r)]
    ranked_front = [r for r in front if plotted(r)]
    with _optuna_plotting() as optuna:
        study = optuna.create_study(directions=[_direction(m) for m in modes])
        trials = []
        for r in drawn:
            ranked = id(r) in on_front or _dominated_by(r, ranked_front, metrics, modes)
            trials.append(optuna.trial.create_trial(values=[float(r["metrics"][m]) for m in metrics],
                                                    constraints={"not_ranked": 0.0 if ranked else 1.0}))
        study.add_trials(trials)
        names = [f"{m} ({'higher' if mode == 'max' else 'lower'} is better)" for m, mode in zip(metrics, modes)]
        ax = optuna.visualization.matplotlib.plot_pareto_front(study, target_names=names)
        relabel = {"Best Trial": "Pareto front", "Feasible Trial": "trial", "Trial": "trial",
                   "Infeasible Trial": "not ranked (stopped early)"}
        for drawn_set in ax.collections:
            drawn_set.set_label(relabel.get(drawn_set.get_label(), drawn_set.get_label()))
        if ax.get_legend() is not None:
            ax.legend()
        return _figure(ax)
