"""`ResumableOptunaSearch`: Ray's OptunaSearch that survives a restore from a stale snapshot.

Ray Tune snapshots its experiment (trial statuses, the searcher) every few seconds, while
the Optuna study (sqlite) is written at once. A driver killed between two snapshots leaves
the two disagreeing: a trial that finished after the last snapshot is RUNNING to Ray but
COMPLETE to Optuna, and Ray's `OptunaSearch` would report its replayed result to the
finished Optuna trial (`UpdateFinishedTrialError`, the whole search dies). This searcher
reconciles itself with the study when restored, and records a failed trial's error in the
study.

The study also reads as the search did: a trial that ASHA stopped is PRUNED, with its value at
every epoch it ran (Ray's OptunaSearch tells it COMPLETE with its last value, so TPE, the
importances and the dashboard took a 2-epoch trial for a finished one); each Optuna trial
carries the Ray trial id that the terminal and MLflow show; the objectives are named.
"""

from __future__ import annotations

import math
import warnings

from ray.tune.search.optuna import OptunaSearch

from tuner import compat

RAY_TRIAL_ATTR = "ray_trial_id"
ORPHAN_REASON = "orphaned: the search's driver stopped before Ray recorded this trial; resume runs others instead"


class ResumableOptunaSearch(OptunaSearch):
    """OptunaSearch that survives a restore from a stale snapshot and records trial errors.

    max_t: the epochs a trial runs when nothing stops it; a trial that ends before (stopped
    by ASHA) is told to the study as PRUNED when `record_pruned`.
    """

    def __init__(self, *args, max_t: int | None = None, record_pruned: bool = True, folder: str | None = None,
                 **kwargs):
        self.max_t = max_t
        self.record_pruned = record_pruned
        self.folder = folder  # the search folder: where the driver keeps the trials' errors (tracking.search_state)
        super().__init__(*args, **kwargs)

    def _setup_study(self, mode) -> None:
        super()._setup_study(mode)
        import optuna

        metric = compat.search_metric(self)
        names = metric if isinstance(metric, list) else [metric]
        study = compat.search_study(self)
        if study.metric_names is None:
            with warnings.catch_warnings():  # experimental in Optuna 4-5; the dashboard shows the names
                warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
                study.set_metric_names(list(names))

    def suggest(self, trial_id: str):
        params = super().suggest(trial_id)
        ot_trial = compat.search_trials(self).get(trial_id)
        if ot_trial is not None and params is not None:
            ot_trial.set_user_attr(RAY_TRIAL_ATTR, trial_id)  # the id the terminal and MLflow show
        return params

    def restore(self, checkpoint_path: str) -> None:
        super().restore(checkpoint_path)
        for note in self.reconcile():  # Tune restores the searcher inside fit(): print from here
            print(note, flush=True)

    def reconcile(self) -> list[str]:
        """Align the restored searcher with the study; returns one note per change."""
        from optuna.trial import TrialState

        storage, study_id = compat.study_storage(compat.search_study(self))
        told = compat.search_told(self)
        notes = []
        by_number = {}
        for trial_id, ot_trial in compat.search_trials(self).items():
            by_number[ot_trial.number] = trial_id
            if trial_id in told:
                continue
            frozen = storage.get_trial(compat.storage_trial_id(ot_trial))
            if frozen.state.is_finished():
                # finished after Ray's last snapshot: its result is in the study already
                told.add(trial_id)
                notes.append(f"trial {trial_id} had finished after Ray's last snapshot "
                             f"(Optuna {frozen.state.name}); its result is kept")
        for frozen in storage.get_all_trials(study_id, deepcopy=False):
            if frozen.number in by_number:
                continue
            if frozen.state == TrialState.RUNNING:
                storage.set_trial_user_attr(compat.storage_trial_id(frozen), "error", ORPHAN_REASON)
                storage.set_trial_state_values(compat.storage_trial_id(frozen), TrialState.FAIL)
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

        trials, told = compat.search_trials(self), compat.search_told(self)
        if trial_id in told or trial_id not in trials:
            return
        epoch = result.get("epoch")
        if isinstance(epoch, (int, float)):
            if int(epoch) in compat.intermediate_values(trials[trial_id]):
                return  # a restored trial re-reports its checkpoint's epoch
            result = {**result, "training_iteration": int(epoch)}
        try:
            super().on_trial_result(trial_id, result)
        except optuna.exceptions.UpdateFinishedTrialError:
            told.add(trial_id)  # told already (a race with a restore): keep that

    def on_trial_complete(self, trial_id: str, result: dict | None = None, error: bool = False) -> None:
        epoch = None if error else self._last_epoch(trial_id, result)
        if epoch is not None and self.record_pruned and self.max_t and epoch < self.max_t:
            self._tell_pruned(trial_id, result)  # ASHA stopped it before its last epoch
            return
        if epoch is not None:
            self.on_trial_result(trial_id, result)  # the last epoch too: Tune passes it here only
        trials = compat.search_trials(self)
        if error and trial_id not in compat.search_told(self) and trial_id in trials:
            from tuner.tracking.callback import error_of

            storage, _ = compat.study_storage(compat.search_study(self))
            try:
                storage.set_trial_user_attr(compat.storage_trial_id(trials[trial_id]), "error", error_of(getattr(self, "folder", None) or "", trial_id))
            except Exception:  # an annotation must never stop the search
                pass
        super().on_trial_complete(trial_id, result=result, error=error)

    def _last_epoch(self, trial_id: str, result: dict | None) -> float | None:
        """The epoch of a single-objective trial's last result, when it carries a finite value of
        the metric and the study has not been told the trial's end; else None (Optuna has no
        intermediate values for several objectives)."""
        if not result or isinstance(self.metric, list):
            return None
        if trial_id in compat.search_told(self) or trial_id not in compat.search_trials(self):
            return None
        epoch, value = result.get("epoch"), result.get(self.metric)
        if isinstance(epoch, (int, float)) and isinstance(value, (int, float)) and math.isfinite(value):
            return epoch
        return None

    def _tell_pruned(self, trial_id: str, result: dict) -> None:
        """PRUNED, with the value of the epoch it was stopped at as its last intermediate value
        (Tune does not pass a stopping result to the searcher); Optuna takes that as its value."""
        import optuna
        from optuna.trial import TrialState

        self.on_trial_result(trial_id, result)  # once per epoch: a re-reported epoch is skipped
        try:
            compat.search_study(self).tell(compat.search_trials(self)[trial_id], state=TrialState.PRUNED)
        except optuna.exceptions.UpdateFinishedTrialError:
            pass  # told already (a race with a restore): keep that
        compat.search_told(self).add(trial_id)


def make_sampler(settings):
    """The Optuna sampler `settings.sampler` names, seeded, with its start-up sized to the budget.

    tpe: multivariate TPE, grouped for conditional spaces, with the constant liar (a running
    trial counts as a bad one, so two proposals made while both run do not land together);
    several metrics: the same TPE, multi-objective (Optuna's MOTPE: its density split ranks
    trials by non-domination). Chosen over NSGA-II because a search has tens of trials, not the
    generations of a population NSGA-II needs to move; TPE also keeps using the conditional
    space's grouping. gp: Optuna's Gaussian-process sampler (parameters outside the space that
    every trial shares, such as a method's own knobs in a conditional space, are drawn at
    random). random: Optuna's RandomSampler.
    """
    import optuna

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        if settings.sampler == "gp":
            return optuna.samplers.GPSampler(seed=settings.seed, n_startup_trials=settings.n_startup,
                                             warn_independent_sampling=False)
        if settings.sampler == "random":
            return optuna.samplers.RandomSampler(seed=settings.seed)
        return optuna.samplers.TPESampler(multivariate=True, group=True, seed=settings.seed,
                                          n_startup_trials=settings.n_startup,
                                          constant_liar=settings.constant_liar)


def make_searcher(settings, space, points: list | None = None) -> ResumableOptunaSearch:
    """`settings.sampler` over a persistent sqlite study; `points` are evaluated first (enqueued)."""
    import optuna

    storage = optuna.storages.RDBStorage(settings.study_storage)
    return ResumableOptunaSearch(
        space=space,
        metric=settings.metrics if settings.multi else settings.metric,
        mode=settings.modes if settings.multi else settings.mode,
        points_to_evaluate=points or None,
        sampler=make_sampler(settings),
        study_name=settings.study_name,
        storage=storage,
        max_t=settings.epochs,
        record_pruned=settings.record_pruned,
        folder=str(settings.folder),
    )
