"""Reconciling a stopped search's three stores before `Tuner.restore` continues it.

Ray Tune snapshots its experiment (trial statuses, each trial's latest checkpoint, the
searcher) every few seconds and after trial checkpoints, not after every event, while the
Optuna study (sqlite) and MLflow are written at once. A driver killed between two snapshots
therefore leaves three stores that disagree; before restoring:

- the snapshot may name a checkpoint that Ray already deleted (it keeps one per trial): Ray
  would refuse to restore that trial. `repair_checkpoints` puts the trial's newest checkpoint
  back under that name;
- a trial started after the last snapshot is unknown to Ray: its MLflow run is deleted (runs
  stay recoverable with `mlflow gc` not run), so MLflow ends with one run per trial of the
  search; `searcher.ResumableOptunaSearch` marks its Optuna trial FAIL when restored.

A trial that finished after the last snapshot is RUNNING to Ray: Ray runs it again from its
final checkpoint, where the trainable only re-reports the final metrics (it does not train
again) and the searcher does not tell Optuna twice.

Two more stores of the search's own are brought in line first:
- the MLflow writes an earlier driver could not send (`outbox.py`) are sent, before any run
  is looked at, so the runs are complete and in order;
- ASHA's journal (`scheduler.py`) keeps the results of the trials the snapshot knows only:
  a trial Ray forgot is run again under a reused id, and must not inherit its rungs.
"""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Callable

from tuner.settings import SearchError, SearchSettings


def checkpoint_index(path: Path) -> int:
    try:
        return int(path.name.rsplit("_", 1)[1])
    except (IndexError, ValueError):
        return -1


def repair_checkpoints(trials: list, echo: Callable[[str], None]) -> None:
    """Put each trial's newest checkpoint where the snapshot expects it, if Ray deleted it."""
    for trial in trials:
        ckpt = trial.checkpoint
        if ckpt is None or "://" in str(ckpt.path) or ckpt.filesystem.type_name != "local":
            continue  # remote storage: Ray's own error will say what is missing
        want = Path(ckpt.path)
        if want.exists():
            continue
        found = sorted(want.parent.glob("checkpoint_*"), key=checkpoint_index)
        found = [f for f in found if f.is_dir() and any(f.iterdir())]
        if not found:
            continue
        newest = found[-1]
        shutil.copytree(newest, want)
        echo(f"trial {trial.trial_id}: the snapshot's {want.name} was gone; restored from {newest.name}")


def forget_orphan_runs(client, settings: SearchSettings, known: set[str], echo: Callable[[str], None]) -> None:
    """Delete the MLflow runs of trials Ray does not know (started after its last snapshot)."""
    from tuner.tracking import callback as tracking

    for run in tracking.trial_runs(client, settings):
        tid = run.data.tags.get(tracking.TRIAL_TAG)
        if tid not in known:
            client.set_tag(run.info.run_id, "state", "ORPHANED")
            client.set_terminated(run.info.run_id, status="KILLED")
            client.delete_run(run.info.run_id)
            echo(f"trial {tid} was started after Ray's last snapshot; its MLflow run is deleted")


def send_left_writes(settings: SearchSettings, outbox, echo: Callable[[str], None]) -> None:
    """Send what an earlier driver of the search left in its outbox; a one-line error if MLflow is down."""
    from tuner.tracking.callback import redact_uri

    if not len(outbox):
        return
    echo(f"sending {len(outbox)} MLflow writes an earlier driver of this search could not send")
    if not outbox.drain():
        raise SearchError(f"MLflow at {redact_uri(settings.tracking_uri)} stayed unreachable for "
                          f"{settings.tracking_outage_limit:.0f}s; {len(outbox)} writes are still in {outbox.path}; "
                          f"resume once it is back")


def restore_tuner(settings: SearchSettings, trainable, client, echo: Callable[[str], None], outbox=None):
    """Reconcile the stores, then `Tuner.restore` (None when Ray never saved the experiment)."""
    from ray import tune
    from ray.tune import ExperimentAnalysis

    from tuner.schedulers.asha import JOURNAL_FILE, keep_trials

    if outbox is not None:
        send_left_writes(settings, outbox, echo)
    path = settings.experiment_path
    if not tune.Tuner.can_restore(path):
        keep_trials(settings.folder / JOURNAL_FILE, set())  # a new Tuner: no trial of the journal exists
        return None
    trials = ExperimentAnalysis(path).trials
    repair_checkpoints(trials, echo)
    known = {t.trial_id for t in trials}
    forget_orphan_runs(client, settings, known, echo)
    keep_trials(settings.folder / JOURNAL_FILE, known)
    # errored trials stay failed: they used up --max-failures retries, and Optuna has their FAIL
    return tune.Tuner.restore(path, trainable=trainable, resume_unfinished=True, resume_errored=False)
