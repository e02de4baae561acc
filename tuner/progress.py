"""Quiet progress for a running search: one line per finished trial, with the best so far."""

from __future__ import annotations

import math
from typing import Any, Callable

from ray import tune

from tuner.selection import with_test

SHOWN = ("method", "k", "K", "alpha", "mix_level", "contrastive_weight", "loss", "lr")


def describe(config: dict[str, Any]) -> str:
    parts = []
    for key in SHOWN:
        if key in config:
            v = config[key]
            parts.append(f"{key}={v:.3g}" if isinstance(v, float) else f"{key}={v}")
    return " ".join(parts)


class Progress(tune.Callback):
    """Prints `[done/total, running] trial: metric (test_acc) — best so far (its test_acc, params)` lines."""

    def __init__(self, metric: str, mode: str, total: int, echo: Callable[[str], None] = print,
                 epochs: int | None = None):
        # several metrics ("a,b"): each trial's line shows them all; "best so far" is the front's size
        self.metric, self.mode, self.total, self.echo = metric, mode, total, echo
        self.metrics, self.modes = metric.split(","), mode.split(",")
        self.best: tuple[float, str, str] | None = None  # value, "metric v (test_acc t)", params
        self.seen: list[dict[str, Any]] = []  # several metrics: every finished trial's last result
        self.epochs = epochs  # the front counts trials that ran every epoch once any has, as the summary

    def _line(self, trials, trial, what: str) -> None:
        # the hook runs before Tune updates the trial's status: count it as done already
        done = sum(t.status in ("TERMINATED", "ERROR") or t is trial for t in trials)
        running = sum(t.status == "RUNNING" and t is not trial for t in trials)
        self.echo(f"[{done}/{self.total} done, {running} running] {trial.trial_id} {what}"
                  + (f"  | best {self.best[1]}: {self.best[2]}" if self.best else ""))

    def on_trial_complete(self, iteration, trials, trial, **info):
        last = trial.last_result or {}
        if len(self.metrics) > 1:
            from tuner.pareto import pareto_front

            self.seen.append({"metrics": last})
            full = [r for r in self.seen if r["metrics"].get("epoch") == self.epochs]
            size = len(pareto_front(full or self.seen, self.metrics, self.modes))
            self._line(trials, trial, f"{with_test(last, self.metric)} after {last.get('epoch')} epochs"
                       f"  | Pareto front so far: {size} trial{'s' * (size != 1)}")
            return
        value = last.get(self.metric)
        if isinstance(value, (int, float)) and math.isfinite(value):
            better = self.best is None or (value > self.best[0] if self.mode == "max" else value < self.best[0])
            if better:
                self.best = (value, with_test(last, self.metric), describe(trial.config))
            self._line(trials, trial, f"{with_test(last, self.metric)} after {last.get('epoch')} epochs")
        else:
            self._line(trials, trial, "finished without a metric")

    def on_trial_error(self, iteration, trials, trial, **info):
        from tuner.tracking import _trial_error

        self._line(trials, trial, f"FAILED: {_trial_error(trial)}")
