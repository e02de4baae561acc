"""`mixtune export-best`: the best trial's TrainConfig, from MLflow or from Ray's results.

With several metrics there is no single best trial: the command takes `--trial ID` (any
trial, e.g. one of `mixtune compare --pareto`) or a rule (`--within D`: the Pareto-front
member with the best first metric among those whose second metric is within D of the
front's best second metric), and refuses to guess without one.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from trainables.core.config import TrainConfig, field_types
from tuner.errors import UserError
from tuner.selection import pick_best
from tuner.settings import BEST_FILE, SearchSettings


def parse_param(value: str, typ: type) -> Any:
    """An MLflow param string back to the field's type."""
    if value == "None":
        return None
    if typ is bool:
        return value == "True"
    return typ(value)


def choose(settings: SearchSettings, rows: list[dict[str, Any]], trial: str | None = None,
           within: float | None = None) -> dict[str, Any]:
    """The row to export: the named trial, the rule's front member, or the single-metric best."""
    from tuner.pareto import pareto_front, pick_within

    if trial is not None:
        found = [r for r in rows if r["trial_id"] == trial]
        if not found:
            raise UserError(f"search {settings.name} has no finished trial {trial!r} "
                            f"(its trials: {', '.join(sorted(r['trial_id'] for r in rows)) or 'none'})")
        return found[0]
    if within is not None and not settings.multi:
        raise UserError(f"--within applies to searches of several metrics; {settings.name} selects on {settings.metric}")
    if settings.multi:
        if within is None:
            raise UserError(f"search {settings.name} optimises {settings.metric}: its Pareto front has no single best "
                            "trial; choose one with --trial ID (see mixtune compare --pareto), or a rule: --within D "
                            f"(the best {settings.metrics[0]} among front members within D of the best {settings.metrics[1]})")
        if within < 0:
            raise UserError(f"--within {within} must be >= 0")
        full = [r for r in rows if r["metrics"].get("epoch") == settings.epochs]  # as the summary's front
        front = pareto_front(full or rows, settings.metrics, settings.modes)
        if not front:
            raise UserError(f"search {settings.name} has no finished trial with {settings.metric} in MLflow")
        return pick_within(front, settings.metrics, settings.modes, within)
    # the same choice as the search's own summary: best last metric, trials that ran every
    # epoch first (their config reproduces their number)
    chosen = pick_best(rows, settings.metric, settings.mode, settings.epochs)
    if chosen is None:
        raise UserError(f"search {settings.name} has no finished trial with {settings.metric} in MLflow")
    return chosen


def best_from_mlflow(settings: SearchSettings, tracking_uri: str | None = None, trial: str | None = None,
                     within: float | None = None) -> TrainConfig:
    from tuner import tracking
    from tuner.compare import search_trial_runs

    rows = [{"error": None, "metrics": r.data.metrics, "run": r, "trial_id": r.data.tags.get(tracking.TRIAL_TAG)}
            for r in search_trial_runs(settings, tracking_uri) if r.info.status == "FINISHED"]
    best = choose(settings, rows, trial, within)["run"]
    types = field_types()
    values = {k: parse_param(v, types[k]) for k, v in best.data.params.items() if k in types}
    # the run's params are the trial's whole config, thread count included
    return TrainConfig.from_dict(values, source=f"MLflow run {best.info.run_id}")


def export_best(folder: Path, source: str = "mlflow", tracking_uri: str | None = None, trial: str | None = None,
                within: float | None = None) -> tuple[TrainConfig, str]:
    settings = SearchSettings.load(folder)
    if source == "mlflow":
        return best_from_mlflow(settings, tracking_uri, trial, within), f"MLflow ({settings.experiment})"
    if trial is not None or within is not None or settings.multi:
        raise UserError("--source ray exports the single best_config.yaml; with --trial, --within or several "
                        "metrics use --source mlflow")
    path = Path(folder) / BEST_FILE
    if not path.exists():
        raise UserError(f"{path} does not exist: the search has not finished (try --source mlflow)")
    return TrainConfig.from_yaml(path), str(path)
