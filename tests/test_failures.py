"""Failing trials: raising, out of memory, NaN loss; retries bounded by --max-failures; all-fail exits 2.

Faults are injected into real Ray worker processes by a `sitecustomize.py` put on PYTHONPATH
(Python imports it at start-up in every process, Ray's workers included): it wraps
`trainables.trainable.fit` once that module is imported and gives each trial, in the order
trials start, the next fault of MIXTUNE_TEST_FAULTS. A NaN loss is real: the fault only sets
lr=1e30 and the core raises DivergedError by itself.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from test_resume import Driver, cli_env, mlflow_runs, optuna_trials

os.environ["RAY_AUTH_MODE"] = "disabled"

SITECUSTOMIZE = '''
import importlib.abc, importlib.util, os, sys

class _Faults(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name != "trainables.trainable":
            return None
        sys.meta_path.remove(self)
        spec = importlib.util.find_spec(name)
        run = spec.loader.exec_module

        def exec_module(module):
            run(module)
            real_fit = module.fit

            def fit(cfg, *args, **kwargs):
                from ray import tune
                folder = os.environ["MIXTUNE_TEST_FAULT_DIR"]
                tid = tune.get_context().get_trial_id()
                mine = os.path.join(folder, tid)
                if not os.path.exists(mine):  # first attempt: take the next fault in line
                    faults = os.environ["MIXTUNE_TEST_FAULTS"].split(",")
                    for slot in range(len(faults) * 4):
                        try:
                            os.close(os.open(os.path.join(folder, f"slot{slot}"), os.O_CREAT | os.O_EXCL))
                            break
                        except FileExistsError:
                            continue
                    with open(mine, "w") as f:
                        f.write(faults[slot % len(faults)])
                fault = open(mine).read().split()[0]
                with open(mine, "a") as f:
                    f.write(" attempt")
                attempts = open(mine).read().count("attempt")
                if fault == "raise" or (fault == "flaky" and attempts == 1):
                    raise RuntimeError("injected failure")
                if fault == "oom":
                    import torch
                    raise torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 64.00 GiB (injected)")
                if fault == "nan":
                    cfg = cfg.replace(lr=1e30)
                return real_fit(cfg, *args, **kwargs)

            module.fit = fit

        spec.loader.exec_module = exec_module
        return spec

if os.environ.get("MIXTUNE_TEST_FAULTS"):
    sys.meta_path.insert(0, _Faults())
'''


def fault_env(tmp_path: Path, faults: str) -> dict[str, str]:
    hooks = tmp_path / "hooks"
    hooks.mkdir()
    (hooks / "sitecustomize.py").write_text(SITECUSTOMIZE)
    (tmp_path / "faults").mkdir()
    env = cli_env(tmp_path, MIXTUNE_TEST_FAULTS=faults, MIXTUNE_TEST_FAULT_DIR=str(tmp_path / "faults"))
    env["PYTHONPATH"] = os.pathsep.join([str(hooks), env["PYTHONPATH"]])
    return env


def fault_of(tmp_path: Path) -> dict[str, tuple[str, int]]:
    """Trial id -> (fault, attempts), as the injected workers recorded them."""
    out = {}
    for f in (tmp_path / "faults").iterdir():
        if not f.name.startswith("slot"):
            words = f.read_text().split()
            out[f.name] = (words[0], words.count("attempt"))
    return out


def run_cli(tmp_path: Path, env: dict[str, str], *argv: str) -> tuple[int, str, str]:
    d = Driver(list(argv), tmp_path, env)
    try:
        return d.finish()
    finally:
        d.kill_group()


@pytest.mark.slow
def test_failing_trials_are_recorded_and_the_search_goes_on(tmp_path):
    name = "faults"
    faults = "raise,oom,nan,flaky,none"
    rc, out, err = run_cli(
        tmp_path, fault_env(tmp_path, faults),
        "search", "--space", "icm", "--epochs", "2", "--grace-period", "2", "--num-cpus", "2",
        "--num-samples", "5", "--max-failures", "1", "--name", name,
        "--results-dir", str(tmp_path / "results"), "--tracking-uri", f"sqlite:///{tmp_path / 'mlflow.db'}",
    )
    assert rc == 0, (out, err)
    assert f"search {name} finished: 5 trials (3 failed)" in out
    seen = fault_of(tmp_path)
    assert sorted(f for f, _ in seen.values()) == sorted(faults.split(","))
    # --max-failures 1: a failing trial runs twice, a flaky one recovers on its retry
    for fault, attempts in seen.values():
        assert attempts == (1 if fault == "none" else 2), seen

    expected_error = {"raise": "injected failure", "oom": "OutOfMemoryError",
                      "nan": "DivergedError: training loss became nan"}
    _, parent, trials = mlflow_runs(tmp_path, name)
    assert [r.info.status for r in parent] == ["FINISHED"]
    assert len(trials) == 5
    for run in trials:
        fault = seen[run.data.tags["mixtune.trial_id"]][0]
        if fault in expected_error:
            assert run.info.status == "FAILED" and run.data.tags["state"] == "FAILED"
            assert expected_error[fault] in run.data.tags["error"], run.data.tags["error"]
        else:
            assert run.info.status == "FINISHED", (fault, run.data.tags)

    study = optuna_trials(tmp_path / "results" / name, name)
    failed = [t for t in study if t.state.name == "FAIL"]
    assert len(failed) == 3 and sum(t.state.name == "COMPLETE" for t in study) == 2
    errors = sorted(t.user_attrs.get("error", "") for t in failed)
    for text in expected_error.values():
        assert any(text in e for e in errors), errors


@pytest.mark.slow
def test_search_where_every_trial_fails_exits_nonzero_with_the_first_error(tmp_path):
    space = tmp_path / "space.yaml"
    space.write_text("params:\n  alpha: {low: 0.2, high: 2.0}\nfixed:\n  method: mixup\n")
    rc, out, err = run_cli(
        tmp_path, cli_env(tmp_path),
        "search", "--space", str(space), "--lr", "1e30", "--epochs", "2", "--num-cpus", "2",
        "--num-samples", "2", "--name", "allfail",
        "--results-dir", str(tmp_path / "results"), "--tracking-uri", f"sqlite:///{tmp_path / 'mlflow.db'}",
    )
    assert rc == 2, (out, err)
    lines = err.strip().splitlines()
    assert lines[-1].startswith("mixtune: error: every trial failed (2 trials); first error: ")
    assert "DivergedError: training loss became nan at epoch 1" in lines[-1]
    _, parent, trials = mlflow_runs(tmp_path, "allfail")
    assert [r.info.status for r in parent] == ["FAILED"]
    assert [r.info.status for r in trials] == ["FAILED", "FAILED"]
