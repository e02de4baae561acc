"""`ResumableOptunaSearch`: Ray's OptunaSearch that survives a restore from a stale snapshot.

Ray Tune snapshots its experiment (trial statuses, the searcher) every few seconds, while
the Optuna study (sqlite) is written at once. A driver killed between two snapshots leaves
the two disagreeing: a trial that finished after the last snapshot is RUNNING to Ray but
COMPLETE to Optuna, and Ray's `OptunaSearch` would report its replayed result to the
finished Optuna trial (`UpdateFinishedTrialError`, the whole search dies). This searcher
reconciles itself with the study when restored, and records a failed trial's error in the
study.
"""

from __future__ import annotations

from ray.tune.search.optuna import OptunaSearch

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
        """The intermediate value at step=epoch (Ray's OptunaSearch uses training_iteration, which
        a restored trial's re-reported epoch shifts); each epoch is reported once."""
        import optuna

        if trial_id in self._completed_trials or trial_id not in self._ot_trials:
            return
        epoch = result.get("epoch")
        if isinstance(epoch, (int, float)):
            if int(epoch) in self._ot_trials[trial_id]._cached_frozen_trial.intermediate_values:
                return  # a restored trial re-reports its checkpoint's epoch
            result = {**result, "training_iteration": int(epoch)}
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


def make_searcher(settings, space, points: list | None = None) -> ResumableOptunaSearch:
    """TPE (multivariate, grouped for conditional spaces, seeded) over a persistent sqlite study.

    Several metrics: the same TPE, multi-objective (Optuna's MOTPE: its density split ranks
    trials by non-domination). Chosen over NSGA-II because a search has tens of trials, not
    the generations of a population NSGA-II needs to move; TPE also keeps using the
    conditional space's grouping. `points` are evaluated first (enqueued in the study).
    """
    import warnings

    import optuna

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        sampler = optuna.samplers.TPESampler(multivariate=True, group=True, seed=settings.seed)
    storage = optuna.storages.RDBStorage(settings.study_storage)
    return ResumableOptunaSearch(
        space=space,
        metric=settings.metrics if settings.multi else settings.metric,
        mode=settings.modes if settings.multi else settings.mode,
        points_to_evaluate=points or None,
        sampler=sampler,
        study_name=settings.study_name,
        storage=storage,
    )
