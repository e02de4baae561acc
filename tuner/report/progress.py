"""Quiet progress for a running search: one line per finished trial, with the best so far."""

from __future__ import annotations

import math
from typing import Any, Callable

from ray import tune

from tuner.report.selection import with_test

SHOWN = ("method", "k", "K", "alpha", "mix_level", "contrastive_weight", "loss", "lr")


def epochs_text(n: Any) -> str:
    """`after 1 epoch`, `after 3 epochs`."""
    n = int(n) if isinstance(n, (int, float)) and float(n).is_integer() else n
    return f"after {n} epoch{'' if n == 1 else 's'}"


def describe(config: dict[str, Any]) -> str:
    parts = []
    for key in SHOWN:
        if key in config:
            v = config[key]
            parts.append(f"{key}={v:.3g}" if isinstance(v, float) else f"{key}={v}")
    return " ".join(parts)


def stop_text(folder) -> str | None:
    """What the search in `folder` had done when it stopped (its `Progress.stop_text`); None when
    no Progress of that search was set up in this process."""
    from tuner.tracking.callback import search_state

    progress = search_state(folder).progress
    return progress.stop_text() if progress is not None else None


class Progress(tune.Callback):
    """Prints `[done/total, running] trial: metric (test_acc) — best so far (its test_acc, params)` lines."""

    def __init__(self, metric: str, mode: str, total: int, echo: Callable[[str], None] = print,
                 epochs: int | None = None, folder=None):
        # several metrics ("a,b"): each trial's line shows them all; "best so far" is the front's size
        self.metric, self.mode, self.total, self.echo = metric, mode, total, echo
        self.folder = folder  # the search's folder: its state holds this callback (stop_text)
        self.metrics, self.modes = metric.split(","), mode.split(",")
        self.best: tuple[float, str, str] | None = None  # value, "metric v (test_acc t)", params
        self.seen: list[dict[str, Any]] = []  # several metrics: every finished trial's last result
        self.epochs = epochs  # the front counts trials that ran every epoch once any has, as the summary
        # what a stop reports: Tune marks the trials it stops at Ctrl-C TERMINATED, like finished
        # ones, so finished and running are counted here, from the hooks, not from the statuses
        self.finished: set[str] = set()  # ended (completed, stopped by ASHA, failed) in this run
        self.earlier: set[str] | None = None  # ended before this run (a resumed search), seen at its first step
        self.running: set[str] = set()  # started and not ended

    def setup(self, stop=None, num_samples=None, total_num_samples=None, **info):
        # the driver's callback of the search now running (a restored search unpickles its own)
        if getattr(self, "folder", None) is not None:
            from tuner.tracking.callback import search_state

            search_state(self.folder).progress = self

    def on_step_begin(self, iteration, trials, **info):
        if self.earlier is None:
            self.earlier = {t.trial_id for t in trials if t.status in ("TERMINATED", "ERROR")}

    def on_trial_start(self, iteration, trials, trial, **info):
        self.running.add(trial.trial_id)

    def _ended(self, trial) -> None:
        self.running.discard(trial.trial_id)
        self.finished.add(trial.trial_id)

    def stop_text(self) -> str:
        """` after 1/6 trials finished, 2 running`: what a stopped search had done (for its stop line)."""
        done = len(self.finished | (self.earlier or set()))
        running = f", {len(self.running)} running (a resume runs them again from their last checkpoint)" \
            if self.running else ""
        return f" after {done}/{self.total} trials finished{running}"

    def _line(self, trials, trial, what: str) -> None:
        # the hook runs before Tune updates the trial's status: count it as done already
        done = sum(t.status in ("TERMINATED", "ERROR") or t is trial for t in trials)
        running = sum(t.status == "RUNNING" and t is not trial for t in trials)
        self.echo(f"[{done}/{self.total} done, {running} running] {trial.trial_id} {what}"
                  + (f"  | best {self.best[1]}: {self.best[2]}" if self.best else ""))

    def on_trial_complete(self, iteration, trials, trial, **info):
        self._ended(trial)
        last = trial.last_result or {}
        if len(self.metrics) > 1:
            from tuner.report.pareto import pareto_front

            self.seen.append({"metrics": last})
            full = [r for r in self.seen if r["metrics"].get("epoch") == self.epochs]
            size = len(pareto_front(full or self.seen, self.metrics, self.modes))
            self._line(trials, trial, f"{with_test(last, self.metric)} {epochs_text(last.get('epoch'))}"
                       f"  | Pareto front so far: {size} trial{'s' * (size != 1)}")
            return
        value = last.get(self.metric)
        if isinstance(value, (int, float)) and math.isfinite(value):
            better = self.best is None or (value > self.best[0] if self.mode == "max" else value < self.best[0])
            if better:
                self.best = (value, with_test(last, self.metric), describe(trial.config))
            self._line(trials, trial, f"{with_test(last, self.metric)} {epochs_text(last.get('epoch'))}")
        else:
            self._line(trials, trial, "finished without a metric")

    def on_trial_error(self, iteration, trials, trial, **info):
        from tuner.tracking.callback import _trial_error

        self._ended(trial)
        self._line(trials, trial, f"FAILED: {_trial_error(trial)}")
