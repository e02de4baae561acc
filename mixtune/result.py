"""`SearchResult`: a finished search as a notebook reads it: trials as a DataFrame, the best config.

Built from what the search's own summary computed (`tuner.execution.execute.SearchOutcome`), or, for
a search that finished earlier, from its folder: Ray's saved results read back into the
same trial rows (`tuner.report.summary.trial_rows`), and the best picked by the same rule
(`tuner.report.selection.pick_best`, `tuner.report.pareto.front_of`). The trial table is the one the
search logs on its MLflow parent run (`tuner.tracking.mlflow_meta.trial_table`), with every other
metric the trials reported beside it.
"""

from __future__ import annotations

import contextlib
import io
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from trainables.core.config import TrainConfig
from trainables.core.metric_table import METRICS
from tuner.settings import SearchSettings

if TYPE_CHECKING:
    import pandas as pd


@dataclass(repr=False)
class SearchResult:
    """A finished search: its trials, its best trial's config and metrics, and its folder."""

    folder: Path
    """The search's folder: mixtune.json, optuna.db, best_config.yaml, Ray's trial folders."""
    settings: SearchSettings
    """The search's settings as saved (metric and mode resolved)."""
    trials: pd.DataFrame
    """One row per trial, best first: trial_id, run_name, run_id, status, epochs, metrics, searched values, error."""
    best_config: TrainConfig | None
    """The best trial's whole TrainConfig (what best_config.yaml holds); None for a search of several metrics."""
    best_metrics: dict[str, float] | None
    """The best trial's last reported metrics; None for a search of several metrics."""
    best_trial: str | None
    """The best trial's id (as `trials`, `compare` and `export_best(trial=...)` name it)."""
    front: list[str] | None = None
    """A search of several metrics: the trial ids on its Pareto front (None otherwise)."""
    seconds: float | None = None
    """How long the search ran, when this result comes from running it."""
    messages: list[str] = field(default_factory=list)
    """The lines the CLI would have printed (progress, notes, the summary)."""

    @property
    def name(self) -> str:
        return self.settings.name

    @property
    def metric(self) -> str:
        return str(self.settings.metric)

    @property
    def mode(self) -> str:
        return str(self.settings.mode)

    def __repr__(self) -> str:
        if self.best_metrics is not None:
            value = self.best_metrics.get(self.metric.split(",")[0])
            best = f"best {self.metric} {value:.6g} (trial {self.best_trial})" if value is not None else "no best"
        else:
            best = f"Pareto front of {len(self.front or [])} trials"
        return (f"SearchResult({self.name!r}: {len(self.trials)} trials, selects on {self.metric} ({self.mode}), "
                f"{best}, folder={str(self.folder)!r})")


def best_metrics(metrics: dict[str, Any]) -> dict[str, float]:
    """The trial's own metrics (the core's table), without Ray's bookkeeping (timestamps, pids, iterations)."""
    return {k: v for k, v in metrics.items() if k in METRICS}


def _run_ids(settings: SearchSettings) -> dict[str, tuple[str, str]]:
    """Trial id -> (MLflow run id, run name); empty when MLflow cannot be reached now (the ids are extras)."""
    from tuner.tracking import callback as tracking
    from tuner.errors import UserError

    try:
        tracking.check_tracking_uri(settings.tracking_uri)
        runs = tracking.trial_runs(tracking.client(settings.tracking_uri), settings)
    except (UserError, OSError):
        return {}
    return {r.data.tags[tracking.TRIAL_TAG]: (r.info.run_id, r.info.run_name) for r in runs
            if tracking.TRIAL_TAG in r.data.tags}


def trials_frame(settings: SearchSettings, rows: list[dict[str, Any]]) -> pd.DataFrame:
    """The parent run's trial table as a DataFrame, with the other metrics and each failed trial's error."""
    import pandas as pd

    from tuner.tracking.mlflow_meta import trial_table
    from tuner.report.selection import metric_columns

    table = trial_table(rows, settings.base, settings.metrics, settings.modes, _run_ids(settings))
    by_id = {r["trial_id"]: r for r in rows}
    order = [by_id[t] for t in table["trial_id"]]
    searched = sorted({k for r in rows for k in r["config"]})
    shown = [c for c in table if c not in searched]  # trial_id ... status, epochs, the selection metric(s)
    more = [m for m in metric_columns(str(settings.metric)) if m not in table and m != "epoch"
            and any(m in r["metrics"] for r in rows)]
    columns = {c: table[c] for c in shown}
    columns.update({m: [r["metrics"].get(m) for r in order] for m in more})
    columns.update({p: table[p] for p in table if p in searched})
    columns["error"] = [r["error"] for r in order]
    return pd.DataFrame(columns)


def from_rows(settings: SearchSettings, rows: list[dict[str, Any]], best: dict[str, Any] | None,
              front: list[dict[str, Any]] | None, seconds: float | None, messages: list[str]) -> SearchResult:
    best_config = None
    if best is not None:
        if "train_config" in best:  # the summary resolved it (what it wrote to best_config.yaml)
            best_config = TrainConfig.from_dict(best["train_config"])
        else:
            from trainables.trainable import trial_config

            best_config = trial_config(settings.base, best["config"], settings.cpus_per_trial)
    return SearchResult(
        folder=settings.folder,
        settings=settings,
        trials=trials_frame(settings, rows),
        best_config=best_config,
        best_metrics=best_metrics(best["metrics"]) if best is not None else None,
        best_trial=str(best["trial_id"]) if best is not None else None,
        front=[str(r["trial_id"]) for r in front] if front else None,
        seconds=seconds,
        messages=messages,
    )


def from_outcome(settings: SearchSettings, outcome, messages: list[str], echo) -> SearchResult:
    """The result of a search this process ran (or resumed), and the CLI's summary as lines."""
    from tuner.report.summary_text import print_outcome

    buf = io.StringIO()
    with contextlib.redirect_stdout(buf):  # print_outcome prints; here its lines go through echo
        print_outcome(settings, outcome)
    for line in buf.getvalue().splitlines():
        if line.strip():
            echo(line)
    return from_rows(settings, outcome.trials, outcome.best, outcome.front, outcome.seconds, messages)


def from_folder(settings: SearchSettings, messages: list[str]) -> SearchResult:
    """The result of a finished search, read back from Ray's saved results (no Ray runtime needed)."""
    from ray.tune import ExperimentAnalysis, ResultGrid

    from tuner.report.pareto import front_of
    from tuner.report.selection import pick_best
    from tuner.report.summary import trial_rows

    rows = trial_rows(ResultGrid(ExperimentAnalysis(settings.experiment_path)))
    if settings.multi:
        best, front = None, front_of(rows, settings)
    else:
        best, front = pick_best(rows, str(settings.metric), str(settings.mode), settings.epochs), None
    return from_rows(settings, rows, best, front, None, messages)
