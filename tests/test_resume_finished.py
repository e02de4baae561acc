"""Issue 21.1: `mixtune resume` on a search that finished changes nothing (a real search, real CLI processes).

Before, it restored the finished experiment, sent a second summary and turned the parent run from
FINISHED to FAILED with a second logged model.
"""

from __future__ import annotations

import subprocess
import sys

import pytest
from test_resume import cli_env, mlflow_runs

pytestmark = pytest.mark.slow


def mixtune(tmp_path, *argv: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "tuner.cli", *argv], cwd=tmp_path, env=cli_env(tmp_path),
                          capture_output=True, text=True, timeout=300)


def test_resuming_a_finished_search_changes_nothing(tmp_path):
    name = "done"
    run = mixtune(tmp_path, "search", "--space", "icm", "--num-samples", "2", "--epochs", "1", "--hidden", "16",
                  "--num-cpus", "2", "--name", name, "--results-dir", str(tmp_path / "results"),
                  "--tracking-uri", f"sqlite:///{tmp_path / 'mlflow.db'}")
    assert run.returncode == 0, run.stderr
    folder = tmp_path / "results" / name
    assert (folder / "finished.json").exists()
    client, (parent,), trials = mlflow_runs(tmp_path, name)
    assert parent.info.status == "FINISHED" and len(trials) == 2
    before = {p.name: p.stat().st_mtime_ns for p in folder.rglob("*") if p.is_file() and p.name != ".mixtune.lock"}

    for _ in range(2):
        again = mixtune(tmp_path, "resume", str(folder))
        assert again.returncode == 0, again.stderr
        lines = again.stdout.strip().splitlines()
        assert len(lines) == 1 and lines[0].startswith(f"search {name} has finished (2 trials, 0 failed)"), \
            again.stdout
        assert "MLflow" not in again.stderr and "Downloading" not in again.stderr, again.stderr

    client, (parent2,), trials2 = mlflow_runs(tmp_path, name)
    assert parent2.info.status == "FINISHED" and parent2.info.end_time == parent.info.end_time
    assert parent2.data.metrics == parent.data.metrics
    assert sorted(t.info.run_id for t in trials2) == sorted(t.info.run_id for t in trials)
    models = client.search_logged_models(experiment_ids=[parent.info.experiment_id],
                                         filter_string=f"source_run_id = '{parent.info.run_id}'")
    assert len(models) == 1
    after = {p.name: p.stat().st_mtime_ns for p in folder.rglob("*") if p.is_file() and p.name != ".mixtune.lock"}
    assert after == before  # not a file of the search folder was touched
