"""`mixtune sync`: send the MLflow writes a search's driver did not send.

A search whose MLflow server stayed unreachable past `--tracking-outage-limit` finishes
anyway and leaves the writes MLflow lacks in `mlflow-outbox.jsonl` in its folder (so does a
driver killed during an outage). `sync_search` sends them, in order, once the server is
back. If they include the search's summary, it is rebuilt from Ray's results on disk: the
best trial by the search's own rule (`selection.pick_best`) or the Pareto front, its config
and model.

`mixtune search` (and `resume`) end the same way by default: the trials' writes are sent
before the command returns, the summary is held in the file and `send_in_background` starts
`mixtune sync` in a process of its own, so that the summary's plots and model (seconds of
imports and MLflow writes) do not hold the user (issue 26). Its output goes to
`mlflow-sync.log` in the search folder.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from typing import Any, Callable

from tuner.tracking import callback as tracking
from tuner.tracking.outbox import OUTBOX_FILE, Outbox, pending
from tuner.report.selection import pick_best
from tuner.settings import SearchError, SearchSettings


def summary_from_ray(settings: SearchSettings, writer: tracking.Writer, op: dict[str, Any]) -> None:
    """The parent run's summary, from the search's results as Ray stored them."""
    from ray.tune import ExperimentAnalysis, ResultGrid

    from trainables.trainable import trial_config
    from tuner.report.pareto import front_of
    from tuner.report.summary import log_summary, trial_rows

    rows = trial_rows(ResultGrid(ExperimentAnalysis(settings.experiment_path)))
    best, front = None, None
    if settings.multi:
        front = front_of(rows, settings)
    else:
        best = pick_best(rows, str(settings.metric), str(settings.mode), settings.epochs)
    if best is not None:
        best["train_config"] = trial_config(settings.base, best["config"], settings.cpus_per_trial).to_dict()
    log_summary(writer.client, settings, rows, best, float(op.get("seconds", 0.0)), front)


SYNC_LOG = "mlflow-sync.log"


def send_in_background(settings: SearchSettings) -> tuple[int, Path]:
    """Start `mixtune sync` for the search in a process of its own; returns its pid and log file.

    Called once the search's lock is released (the sync takes it). The process is in a
    session of its own, so it outlives the command and a Ctrl-C at the shell's prompt; if it
    stops before it is done, what it did not send stays in the outbox file for `mixtune sync`.
    """
    log = settings.folder / SYNC_LOG
    with open(log, "a") as out:
        proc = subprocess.Popen([sys.executable, "-m", "tuner.cli", "sync", str(settings.folder)],
                                stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT,
                                start_new_session=True, env={**os.environ, "PYTHONUNBUFFERED": "1"})
    return proc.pid, log


def send_held_summary(settings: SearchSettings, held: bool) -> str | None:
    """Start the sender of a summary the search held (`summary="background"`) once its lock is
    free; the line that says where it is (None: nothing was held)."""
    if not held:
        return None
    pid, log = send_in_background(settings)
    return (f"MLflow:       the summary (metrics, plots, best model) is being sent by pid {pid} (log: {log}); "
            f"if it stops: mixtune sync {settings.folder}")


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
