"""`mixtune sync`: send the MLflow writes a search's driver could not send.

A search whose MLflow server stayed unreachable past `--tracking-outage-limit` finishes
anyway and leaves the writes MLflow lacks in `mlflow-outbox.jsonl` in its folder (so does a
driver killed during an outage). `sync_search` sends them, in order, once the server is
back. If they include the search's summary, it is rebuilt from Ray's results on disk: the
best trial by the search's own rule (`selection.pick_best`), its config and model.
"""

from __future__ import annotations

from typing import Any, Callable

from tuner.tracking import callback as tracking
from tuner.tracking.outbox import OUTBOX_FILE, Outbox, pending
from tuner.report.selection import pick_best
from tuner.settings import SearchError, SearchSettings


def summary_from_ray(settings: SearchSettings, writer: tracking.Writer, op: dict[str, Any]) -> None:
    """The parent run's summary, from the search's results as Ray stored them."""
    from ray.tune import ExperimentAnalysis, ResultGrid

    from trainables.trainable import trial_config
    from tuner.report.summary import log_summary, trial_rows

    analysis = ExperimentAnalysis(settings.experiment_path, default_metric=settings.metric,
                                  default_mode=settings.mode)
    rows = trial_rows(ResultGrid(analysis))
    best = pick_best(rows, settings.metric, settings.mode, settings.epochs)
    if best is not None:
        best["train_config"] = trial_config(settings.base, best["config"], settings.cpus_per_trial).to_dict()
    log_summary(writer.client, settings, rows, best, float(op.get("seconds", 0.0)))


def sync_search(settings: SearchSettings, echo: Callable[[str], None] = print) -> int:
    """Send the search's pending MLflow writes; returns how many were sent.

    It holds the search folder's lock: a driver still running the search sends its own writes.
    """
    from tuner.execution.lock import search_lock

    with search_lock(settings.folder, "sync"):
        return _sync(settings, echo)


def _sync(settings: SearchSettings, echo: Callable[[str], None]) -> int:
    path = settings.folder / OUTBOX_FILE
    where = tracking.redact_uri(settings.tracking_uri)
    waiting = len(pending(path))
    if not waiting:
        echo(f"search {settings.name}: MLflow at {where} has every write of it; nothing to send")
        return 0
    tracking.check_tracking_uri(settings.tracking_uri)  # one line if the server is still down
    writer = tracking.Writer(settings)
    writer.summary = lambda op: summary_from_ray(settings, writer, op)
    box = Outbox(path, writer, where=where, echo=echo, limit=settings.tracking_outage_limit)
    echo(f"search {settings.name}: sending {waiting} MLflow writes to {where}, in order")
    done = box.drain()
    left = box.close()
    if not done or left:
        raise SearchError(f"MLflow at {where} became unreachable again; {left} writes are still in {path}: "
                          "run mixtune sync again once it is back")
    refused = f" ({box.dropped} refused by the server)" if box.dropped else ""
    echo(f"search {settings.name}: sent {box.sent} writes{refused}; its MLflow runs are complete")
    return box.sent
