"""ASHA's rungs survive a killed driver: a resumed search stops the trials an uninterrupted twin stops.

Two searches with the same seeds, one trial at a time (so ASHA sees the results in one
order): the twin runs through; the other's driver is SIGKILLed right after ASHA stopped a
trial at its first rung (epoch 2) and the progress line said so, before Ray saved that in
its snapshot (a `sitecustomize` hook kills the driver at that moment). Ray snapshots at the
end of every step of its loop (`TUNE_GLOBAL_CHECKPOINT_S=0`), so its newest snapshot is the
one before the step that stopped the trial: to Ray that trial is still running. After `mixtune resume`, every trial has the
same last epoch and the same metric as in the twin: the trial stopped before the kill is
stopped at the same result, and later trials meet the same rungs.
"""

from __future__ import annotations

import os

import pytest
from fault_tools import LiveDriver, cli_env, optuna_trials, ray_results, search_runs

from test_resume import ray_snapshot

pytestmark = pytest.mark.slow

SAMPLES, EPOCHS = 6, 4

# imported by the driver at start-up (PYTHONPATH): SIGKILL it once a trial ended early
KILL_HOOK = '''
import importlib.abc, importlib.machinery, os, signal, sys

class _KillAfterEarlyStop(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path, target=None):
        if name != "tuner.report.progress":
            return None
        spec = importlib.machinery.PathFinder.find_spec(name, path)
        run = spec.loader.exec_module

        def exec_module(module):
            run(module)
            real = module.Progress.on_trial_complete

            def on_trial_complete(self, iteration, trials, trial, **info):
                real(self, iteration, trials, trial, **info)
                if (trial.last_result or {}).get("epoch", 0) < int(os.environ["MIXTUNE_TEST_EPOCHS"]):
                    with open(os.environ["MIXTUNE_TEST_KILLED"], "w") as f:
                        f.write(trial.trial_id)
                    sys.stdout.flush()
                    os.kill(os.getpid(), signal.SIGKILL)

            module.Progress.on_trial_complete = on_trial_complete

        spec.loader.exec_module = exec_module
        return spec

if os.environ.get("MIXTUNE_TEST_KILLED"):
    sys.meta_path.insert(0, _KillAfterEarlyStop())
'''


def argv(root, name):
    return ["search", "--space", "icm", "--num-samples", str(SAMPLES), "--epochs", str(EPOCHS),
            "--grace-period", "2", "--reduction-factor", "2", "--max-concurrent", "1", "--num-cpus", "1",
            "--hidden", "32", "--num-threads", "1", "--search-seed", "0", "--name", name,
            "--results-dir", str(root / "results"), "--tracking-uri", f"sqlite:///{root / 'mlflow.db'}"]


def outcomes(root, name) -> list[tuple[dict, int, float]]:
    """Per trial of the search, in the order Optuna proposed them: (params, last epoch, last metric)."""
    from tuner.settings import SearchSettings

    folder = root / "results" / name
    metric = SearchSettings.load(folder).metric
    lasts = [ray_results(d)[-1] for d in folder.glob("trial_*")]
    out = []
    for t in optuna_trials(folder, name):
        if t.state.name not in ("COMPLETE", "PRUNED"):  # PRUNED: stopped by ASHA, its last epoch's value
            continue  # an orphan (started after Ray's last snapshot) is not one of the search's trials
        (last,) = [r for r in lasts if all(r["config"].get(k) == v for k, v in t.params.items())]
        epoch, value = last["epoch"], last[metric]
        assert t.value == pytest.approx(value, abs=1e-9)
        out.append((t.params, epoch, value))
    return out


def test_resumed_search_stops_the_trials_its_uninterrupted_twin_stops(tmp_path):
    twin, cut = tmp_path / "twin", tmp_path / "cut"
    twin.mkdir(), cut.mkdir()
    hooks = cut / "hooks"
    hooks.mkdir()
    (hooks / "sitecustomize.py").write_text(KILL_HOOK)
    killed_file = cut / "killed"
    env = cli_env(cut, TUNE_GLOBAL_CHECKPOINT_S="0", MIXTUNE_TEST_KILLED=str(killed_file),
                  MIXTUNE_TEST_EPOCHS=str(EPOCHS))
    env["PYTHONPATH"] = os.pathsep.join([str(hooks), env["PYTHONPATH"]])
    # the twin runs beside the first part of the other, each on one CPU: results do not depend on timing
    first = LiveDriver(argv(twin, "twin"), twin, cli_env(twin))
    second = LiveDriver(argv(cut, "cut"), cut, env)
    try:
        rc = second.finish()
        twin_rc = first.finish()
    finally:
        second.kill_group()  # what is left of the killed driver's Ray runtime
        first.kill_group()
    assert twin_rc == 0, first.out + "\n".join(first.err)
    assert rc == -9, (rc, second.out, second.err)
    killed = killed_file.read_text()
    folder = cut / "results" / "cut"
    # the trap: ASHA had stopped the trial, the progress line said so, Ray's snapshot has it unfinished
    last = [ln for _, ln in second.lines if " done, " in ln][-1]
    assert last.split("] ", 1)[1].startswith(killed)
    assert ray_snapshot(folder)[killed] != "TERMINATED"

    d = LiveDriver(["resume", str(folder)], cut, cli_env(cut))
    try:
        rc = d.finish()
    finally:
        d.kill_group()
    assert rc == 0, d.out + "\n".join(d.err)
    assert f"search cut finished: {SAMPLES} trials (0 failed)" in d.out

    want, got = outcomes(twin, "twin"), outcomes(cut, "cut")
    assert len(want) == len(got) == SAMPLES
    for (p1, e1, v1), (p2, e2, v2) in zip(want, got):
        assert p1 == p2 and e1 == e2 and v1 == pytest.approx(v2, abs=1e-9), (want, got)
    stopped = [e for _, e, _ in want if e < EPOCHS]
    assert stopped and len(stopped) < SAMPLES, want  # ASHA did stop some trials, not all

    # MLflow agrees: one run per trial, the killed one STOPPED_EARLY, each epoch once
    client, parents, trials = search_runs(f"sqlite:///{cut / 'mlflow.db'}", "cut")
    assert [p.info.status for p in parents] == ["FINISHED"] and len(trials) == SAMPLES
    run = next(r for r in trials if r.data.tags["mixtune.trial_id"] == killed)
    assert run.info.status == "FINISHED" and run.data.tags["state"] == "STOPPED_EARLY"
    for r in trials:
        assert sorted(m.step for m in client.get_metric_history(r.info.run_id, "epoch")) == \
            list(range(1, int(r.data.metrics["epoch"]) + 1))
