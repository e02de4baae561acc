"""What a finished search prints: where its results are and how to look at them.

Every command it prints works as printed: the Optuna dashboard line names the install step
(`pip install 'mixtune[dashboard]'`) when optuna-dashboard is not installed.
"""

from __future__ import annotations

import shutil
import sys
from pathlib import Path

from tuner.report.progress import describe
from tuner.report.selection import describe_selection, with_test


def print_outcome(settings, outcome) -> None:
    from tuner.tracking.callback import ui_lines

    ok = sum(r["error"] is None for r in outcome.trials)
    n = len(outcome.trials)
    print(f"\nsearch {settings.name} finished: {n} trials ({n - ok} failed) in {outcome.seconds:.1f}s")
    print(f"the search {describe_selection(settings)}")
    from tuner.search.space import pinned_note

    if pinned_note(settings):
        print(pinned_note(settings))
    if outcome.best is not None:
        print(f"best {with_test(outcome.best['metrics'], settings.metric)}: {describe(outcome.best['config'])}")
    front = getattr(outcome, "front", None)
    if front:
        print(f"Pareto front ({len(front)} of {n} trials; none is beaten on every metric by another):")
        for r in sorted(front, key=lambda r: r["metrics"][settings.metrics[0]], reverse=settings.modes[0] == "max"):
            print(f"  {r['trial_id']}  {with_test(r['metrics'], settings.metric)}: {describe(r['config'])}")
    print(f"results:      {outcome.folder}")
    if front:
        print(f"front:        {outcome.folder / 'pareto_front.json'}  (export one: mixtune export-best "
              f"{outcome.folder} --trial ID, or --within D)")
        print(f"compare:      mixtune compare {outcome.folder} --pareto")
    else:
        print(f"best config:  {outcome.folder / 'best_config.yaml'}  (retrain: mixtune train --config <it>)")
        print(f"compare:      mixtune compare {outcome.folder}")
    from tuner.report.compare import save_runs_view

    # the view the runs link opens: the metric, test_acc and the searched values as columns
    save_runs_view(settings, sorted({k for r in outcome.trials for k in (r.get("config") or {})}))
    for line in ui_lines(settings):  # the runs table of this search, not MLflow 3's GenAI overview
        print(line)
    print(dashboard_line(settings.study_storage, study_id(settings)))


DASHBOARD_URL = "http://127.0.0.1:8080"  # optuna-dashboard's default host and port
DASHBOARD_INSTALL = "pip install 'mixtune[dashboard]'"


def dashboard_command() -> str | None:
    """How to run optuna-dashboard here: its name when on PATH, its path beside this Python, or None."""
    if shutil.which("optuna-dashboard"):
        return "optuna-dashboard"
    beside = Path(sys.executable).with_name("optuna-dashboard")  # a virtualenv used without activating it
    return str(beside) if beside.is_file() else None


def study_id(settings) -> int | None:
    """The search's study id in its own storage (the dashboard's URL names studies by id)."""
    try:
        import optuna

        return optuna.storages.RDBStorage(settings.study_storage).get_study_id_from_name(settings.study_name)
    except Exception:  # no study (yet): the line then points to the dashboard's list of studies
        return None


def dashboard_line(storage: str, study: int | None = None) -> str:
    command = dashboard_command()
    if command is None:
        return f"Optuna study: optuna-dashboard {storage}  (not installed: {DASHBOARD_INSTALL} first)"
    url = DASHBOARD_URL if study is None else f"{DASHBOARD_URL}/dashboard/studies/{study}"
    return f"Optuna study: {command} {storage}  (then open {url})"
