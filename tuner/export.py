"""`mixtune export-best`: the best trial's TrainConfig, from MLflow or from Ray's results."""

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


def best_from_mlflow(settings: SearchSettings, tracking_uri: str | None = None) -> TrainConfig:
    from tuner.compare import search_trial_runs

    # the same choice as the search's own summary: best last metric, trials that ran every
    # epoch first (their config reproduces their number)
    rows = [{"error": None, "metrics": r.data.metrics, "run": r}
            for r in search_trial_runs(settings, tracking_uri) if r.info.status == "FINISHED"]
    chosen = pick_best(rows, settings.metric, settings.mode, int(settings.base["epochs"]))
    if chosen is None:
        raise UserError(f"search {settings.name} has no finished trial with {settings.metric} in MLflow")
    best = chosen["run"]
    types = field_types()
    values = {k: parse_param(v, types[k]) for k, v in best.data.params.items() if k in types}
    # the run's params are the trial's whole config, thread count included
    return TrainConfig.from_dict(values, source=f"MLflow run {best.info.run_id}")


def export_best(folder: Path, source: str = "mlflow", tracking_uri: str | None = None) -> tuple[TrainConfig, str]:
    settings = SearchSettings.load(folder)
    if source == "mlflow":
        return best_from_mlflow(settings, tracking_uri), f"MLflow ({settings.experiment})"
    path = Path(folder) / BEST_FILE
    if not path.exists():
        raise UserError(f"{path} does not exist: the search has not finished (try --source mlflow)")
    return TrainConfig.from_yaml(path), str(path)
