"""`mixtune export-best`: the best trial's TrainConfig, from MLflow or from Ray's results."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

from trainables.core.config import TrainConfig, field_types
from tuner.errors import UserError
from tuner.search import BEST_FILE, SearchSettings


def parse_param(value: str, typ: type) -> Any:
    """An MLflow param string back to the field's type."""
    if value == "None":
        return None
    if typ is bool:
        return value == "True"
    return typ(value)


def best_from_mlflow(settings: SearchSettings, tracking_uri: str | None = None) -> TrainConfig:
    from tuner.compare import trial_runs

    runs = [r for r in trial_runs(settings, tracking_uri) if r.info.status == "FINISHED"]
    scored = [r for r in runs if isinstance(r.data.metrics.get(settings.metric), float)
              and math.isfinite(r.data.metrics[settings.metric])]
    # prefer trials that ran every epoch: their config reproduces their number
    full = [r for r in scored if r.data.tags.get("state") == "COMPLETED"]
    pool = full or scored
    if not pool:
        raise UserError(f"search {settings.name} has no finished trial with {settings.metric} in MLflow")
    sign = 1 if settings.mode == "max" else -1
    best = max(pool, key=lambda r: sign * r.data.metrics[settings.metric])
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
