"""ASHA whose rungs survive a restart of the driver: every result it saw is in a journal.

Ray Tune saves neither the scheduler's state in its experiment snapshot nor the results the
scheduler decided on. After `Tuner.restore`, a plain `ASHAScheduler` starts with empty
rungs. A trial that ASHA stopped after Ray's last snapshot is RUNNING to Ray, and it then
runs to the end; later trials are measured against rungs that lack every earlier trial.

`JournaledASHA` appends each result it decides on (trial, epoch, value, decision) and each
trial's final result to `asha.jsonl` in the search folder before it returns the decision.
A resumed search replays the journal into fresh brackets: the same results in the same
order give the same rungs, and the same decisions. A restored trial first re-reports its
checkpoint's epoch (`trainables/trainable.py`), so a trial the journal says was stopped is
stopped at the epoch it was stopped at. `restore.py` first keeps only the journal lines of
the trials Ray's snapshot knows (Ray reuses the ids of the trials it forgot for new ones).

The scheduler also hands every trial it is given to `faults.adopt` (see `faults.py`).
"""

from __future__ import annotations

import json
from pathlib import Path
from types import SimpleNamespace
from typing import Any

from ray.tune.schedulers import ASHAScheduler, TrialScheduler

from tuner import compat, faults

JOURNAL_FILE = "asha.jsonl"


def read_journal(path: Path) -> list[dict[str, Any]]:
    """The journal's entries, in order (a line cut short by a killed driver is skipped)."""
    try:
        lines = Path(path).read_text().splitlines()
    except FileNotFoundError:
        return []
    out = []
    for line in lines:
        try:
            entry = json.loads(line)
        except json.JSONDecodeError:
            continue
        if isinstance(entry, dict) and "trial" in entry:
            out.append(entry)
    return out


def keep_trials(path: Path, known: set[str]) -> int:
    """Rewrite the journal with only the entries of these trials; returns how many were dropped."""
    from trainables.core.files import write_text_atomic

    entries = read_journal(path)
    kept = [e for e in entries if e["trial"] in known]
    if len(kept) != len(entries) or (Path(path).exists() and not entries):
        write_text_atomic(Path(path), "".join(json.dumps(e) + "\n" for e in kept))
    return len(entries) - len(kept)


class JournaledASHA(ASHAScheduler):
    """ASHAScheduler (one bracket) that journals what it decides on and replays it on resume."""

    def __init__(self, journal: str, max_node_losses: int = faults.DEFAULT_MAX_NODE_LOSSES, **kwargs):
        super().__init__(brackets=1, **kwargs)
        self.journal = str(journal)
        self.max_node_losses = max_node_losses
        self._stopped_at: dict[str, float] = {}  # trial id -> the time at which it was stopped
        self._replayed = False

    # ------------------------------------------------------------------ journal
    def _write(self, entry: dict[str, Any]) -> None:
        # opened each time: a search folder that vanished must show at once, not later
        with open(self.journal, "a") as f:
            f.write(json.dumps(entry) + "\n")

    def _replay(self) -> None:
        """Feed the journal's results, in order, through the (empty) bracket."""
        if self._replayed:
            return
        self._replayed = True
        bracket = compat.asha_bracket(self)
        for e in read_journal(Path(self.journal)):
            value = e.get("value")
            if value is None or e.get("t") is None:
                continue
            trial = SimpleNamespace(trial_id=e["trial"])
            reward = compat.asha_reward(self, value)
            if e.get("event") == "complete":
                bracket.on_result(trial, e["t"], reward)
                continue
            if compat.asha_stops_at_max_t(self, e["t"]):
                decision = TrialScheduler.STOP
            else:
                decision = bracket.on_result(trial, e["t"], reward)
            if TrialScheduler.STOP in (decision, e.get("decision")):
                self._stopped_at.setdefault(e["trial"], e["t"])
                compat.asha_count_stopped(self)

    # ------------------------------------------------------------------ Tune hooks
    def on_trial_add(self, tune_controller, trial) -> None:
        faults.adopt(trial, self.max_node_losses)
        self._replay()
        super().on_trial_add(tune_controller, trial)

    def on_trial_result(self, tune_controller, trial, result: dict) -> str:
        self._replay()
        time_attr, metric = compat.asha_observed(self)
        t, value = result.get(time_attr), result.get(metric)
        stopped_at = self._stopped_at.get(trial.trial_id)
        if stopped_at is not None and t is not None and t >= stopped_at:
            decision = TrialScheduler.STOP  # stopped before the driver restarted, at this result
        else:
            decision = super().on_trial_result(tune_controller, trial, result)
        if t is not None and isinstance(value, (int, float)):
            self._write({"trial": trial.trial_id, "t": t, "value": float(value), "decision": decision})
        return decision

    def on_trial_complete(self, tune_controller, trial, result: dict) -> None:
        time_attr, metric = compat.asha_observed(self)
        t, value = (result or {}).get(time_attr), (result or {}).get(metric)
        if t is not None and isinstance(value, (int, float)):
            self._write({"trial": trial.trial_id, "t": t, "value": float(value), "event": "complete"})
        super().on_trial_complete(tune_controller, trial, result)

    def __getstate__(self) -> dict[str, Any]:
        # a restored copy starts empty and rebuilds everything from the journal
        state = compat.asha_empty_state(self.__dict__)
        state.update(_replayed=False, _stopped_at={})
        return state

