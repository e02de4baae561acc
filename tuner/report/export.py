"""`mixtune export-best`: the best trial's TrainConfig, from MLflow or from Ray's results.

With several metrics there is no single best trial: the command takes `--trial ID` (any
trial, e.g. one of `mixtune compare --pareto`) or a rule (`--within D`: the Pareto-front
member with the best first metric among those whose second metric is within D of the
front's best second metric), and refuses to guess without one.

An exported config works from any folder of the machine that ran the search: its path
fields (PATH_FIELDS) are written absolute. A search's trials log `data_dir` as given (a
relative path, relative to where the search ran); the search's checked dataset records the
absolute path (`SearchSettings.data["source"]["uri"]`), which replaces it.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from trainables.core.config import TrainConfig, field_types
from tuner.errors import UserError
from tuner.report.selection import pick_best
from tuner.settings import BEST_FILE, SearchSettings


PATH_FIELDS = ("data_dir", "cache_dir")  # TrainConfig fields that name files or folders


def absolute_paths(cfg: TrainConfig, settings: SearchSettings) -> TrainConfig:
    """The config with its path fields absolute, so it works from any working folder."""
    changes: dict[str, str] = {}
    uri = ((settings.data or {}).get("source") or {}).get("uri")
    for name in PATH_FIELDS:
        value = getattr(cfg, name)
        if not value or "://" in value or Path(value).expanduser().is_absolute():
            continue
        if name == "data_dir" and uri and Path(uri).is_absolute() and Path(uri).name == Path(value).name:
            changes[name] = uri  # resolved where the search ran, when it was checked
        else:
            changes[name] = str(Path(value).expanduser().resolve())
    return cfg.replace(**changes) if changes else cfg


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
    from tuner.report.pareto import pareto_front, pick_within

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
                     within: float | None = None) -> tuple[TrainConfig, str]:
    from tuner.tracking import callback as tracking
    from tuner.report.compare import search_trial_runs

    rows = [{"error": None, "metrics": r.data.metrics, "run": r, "trial_id": r.data.tags.get(tracking.TRIAL_TAG)}
            for r in search_trial_runs(settings, tracking_uri) if r.info.status == "FINISHED"]
    chosen = choose(settings, rows, trial, within)
    best = chosen["run"]
    types = field_types()
    values = {k: parse_param(v, types[k]) for k, v in best.data.params.items() if k in types}
    # the run's params are the trial's whole config, thread count included
    return TrainConfig.from_dict(values, source=f"MLflow run {best.info.run_id}"), str(chosen["trial_id"])


def _best_trial_of(folder: Path) -> str | None:
    """The best trial's id as the finished search recorded it (finished.json), if it did."""
    try:
        return json.loads((Path(folder) / "finished.json").read_text()).get("best_trial")
    except (OSError, ValueError, AttributeError):
        return None


def export_best(folder: Path, source: str = "mlflow", tracking_uri: str | None = None, trial: str | None = None,
                within: float | None = None) -> tuple[TrainConfig, str, str | None]:
    """(the config, where it was read, the trial it is: its id, None when unknown); paths absolute."""
    settings = SearchSettings.load(folder)
    if source == "mlflow":
        cfg, trial_id = best_from_mlflow(settings, tracking_uri, trial, within)
        return absolute_paths(cfg, settings), f"MLflow ({settings.experiment})", trial_id
    if trial is not None or within is not None or settings.multi:
        raise UserError("--source ray exports the single best_config.yaml; with --trial, --within or several "
                        "metrics use --source mlflow")
    path = Path(folder) / BEST_FILE
    if not path.exists():
        raise UserError(f"{path} does not exist: the search has not finished (try --source mlflow)")
    return absolute_paths(TrainConfig.from_yaml(path), settings), str(path), _best_trial_of(folder)
