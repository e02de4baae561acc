"""`mixtune resume`: continue a search whose driver stopped (Ctrl-C, SIGKILL, lost machine).

Ray Tune snapshots its experiment (trial statuses, each trial's latest checkpoint, the
searcher) every few seconds and after trial checkpoints, not after every event, while the
Optuna study (sqlite) and MLflow are written at once. A driver killed between two snapshots
therefore leaves three stores that disagree, and `resume` reconciles them before and while
`Tuner.restore` runs:

- a trial that finished after the last snapshot is RUNNING to Ray but COMPLETE to Optuna.
  Ray runs it again from its checkpoint and Ray's `OptunaSearch` would report the new result
  to the finished Optuna trial: Optuna raises `UpdateFinishedTrialError` and the whole search
  dies. `ResumableOptunaSearch` marks such trials as already told when it is restored, so
  their replayed results are not sent to Optuna again; the trainable, finding its final
  checkpoint, only re-reports the final metrics (it does not train again);
- the snapshot may name a checkpoint that Ray already deleted (it keeps one per trial): Ray
  would refuse to restore that trial. `repair_checkpoints` puts the trial's newest checkpoint
  back under that name;
- a trial started after the last snapshot is unknown to Ray: its Optuna trial is marked FAIL
  (with the reason) and its MLflow run is deleted (runs stay recoverable with `mlflow gc`
  not run), so MLflow ends with one run per trial of the search.
"""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Callable

from ray.tune.search.optuna import OptunaSearch

from tuner.search import (
    SearchOutcome,
    SearchSettings,
    execute,
    prepare,
    quiet_logs,
)

ORPHAN_REASON = "orphaned: the search's driver stopped before Ray recorded this trial; resume runs others instead"


class ResumableOptunaSearch(OptunaSearch):
    """OptunaSearch that survives a restore from a stale snapshot and records trial errors."""

    def restore(self, checkpoint_path: str) -> None:
        super().restore(checkpoint_path)
        for note in self.reconcile():  # Tune restores the searcher inside fit(): print from here
            print(note, flush=True)

    def reconcile(self) -> list[str]:
        """Align the restored searcher with the study; returns one note per change."""
        from optuna.trial import TrialState

        storage = self._ot_study._storage
        study_id = self._ot_study._study_id
        notes = []
        by_number = {}
        for trial_id, ot_trial in self._ot_trials.items():
            by_number[ot_trial.number] = trial_id
            if trial_id in self._completed_trials:
                continue
            frozen = storage.get_trial(ot_trial._trial_id)
            if frozen.state.is_finished():
                # finished after Ray's last snapshot: its result is in the study already
                self._completed_trials.add(trial_id)
                notes.append(f"trial {trial_id} had finished after Ray's last snapshot "
                             f"(Optuna {frozen.state.name}); its result is kept")
        for frozen in storage.get_all_trials(study_id, deepcopy=False):
            if frozen.number in by_number:
                continue
            if frozen.state == TrialState.RUNNING:
                storage.set_trial_user_attr(frozen._trial_id, "error", ORPHAN_REASON)
                storage.set_trial_state_values(frozen._trial_id, TrialState.FAIL)
                notes.append(f"Optuna trial {frozen.number} was started after Ray's last snapshot; marked FAIL")
            elif frozen.state == TrialState.COMPLETE and frozen.number > max(by_number, default=-1):
                # Optuna forbids changing a finished trial: it stays, TPE may learn from it
                notes.append(f"Optuna trial {frozen.number} finished after Ray's last snapshot, which never "
                             "recorded it; it stays in the study but is not one of the search's trials")
        return notes

    def on_trial_result(self, trial_id: str, result: dict) -> None:
        import optuna

        try:
            super().on_trial_result(trial_id, result)
        except optuna.exceptions.UpdateFinishedTrialError:
            self._completed_trials.add(trial_id)  # told already (a race with a restore): keep that

    def on_trial_complete(self, trial_id: str, result: dict | None = None, error: bool = False) -> None:
        if error and trial_id not in self._completed_trials and trial_id in self._ot_trials:
            from tuner.tracking import error_of

            try:
                self._ot_study._storage.set_trial_user_attr(
                    self._ot_trials[trial_id]._trial_id, "error", error_of(trial_id))
            except Exception:  # an annotation must never stop the search
                pass
        super().on_trial_complete(trial_id, result=result, error=error)


# ----------------------------------------------------------------------------- before restore
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
    from tuner import tracking

    for run in tracking.trial_runs(client, settings):
        tid = run.data.tags.get(tracking.TRIAL_TAG)
        if tid not in known:
            client.set_tag(run.info.run_id, "state", "ORPHANED")
            client.set_terminated(run.info.run_id, status="KILLED")
            client.delete_run(run.info.run_id)
            echo(f"trial {tid} was started after Ray's last snapshot; its MLflow run is deleted")


def restore_tuner(settings: SearchSettings, path: str, trainable, client, echo: Callable[[str], None]):
    """Reconcile the stores, then `Tuner.restore` (None when Ray never saved the experiment)."""
    from ray import tune
    from ray.tune import ExperimentAnalysis

    if not tune.Tuner.can_restore(path):
        return None
    trials = ExperimentAnalysis(path).trials
    repair_checkpoints(trials, echo)
    forget_orphan_runs(client, settings, {t.trial_id for t in trials}, echo)
    # errored trials stay failed: they used up --max-failures retries, and Optuna has their FAIL
    return tune.Tuner.restore(path, trainable=trainable, resume_unfinished=True, resume_errored=False)


def resume_search(settings: SearchSettings, echo: Callable[[str], None] = print) -> SearchOutcome:
    quiet_logs()
    settings, dataset, space = prepare(settings)
    from tuner import tracking

    client = tracking.client(settings.tracking_uri)
    client.update_run(settings.parent_run_id, status="RUNNING")
    echo(f"resuming search {settings.name} from {settings.folder}")
    return execute(settings, dataset, space, client, echo, restore=True)

