"""Resume: a real `mixtune search` driver is interrupted (SIGINT) and killed (SIGKILL), then resumed.

The SIGKILL is sent as soon as the driver prints a trial's "done" line, with one trial at a
time and Ray's periodic snapshot pushed out to an hour: Ray's last experiment snapshot then
predates that trial's completion while the Optuna study (sqlite) already holds it COMPLETE,
which is the case that makes a plain `Tuner.restore` + `OptunaSearch` die with Optuna's
`UpdateFinishedTrialError`. The test checks that precondition on disk before resuming.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path

import pytest

os.environ["RAY_AUTH_MODE"] = "disabled"

ROOT = Path(__file__).resolve().parents[1]
SECRET = "hunter2-do-not-log"


@dataclass
class Driver:
    """One mixtune CLI process in its own session (so its Ray processes can be killed with it)."""

    argv: list[str]
    cwd: Path
    env: dict[str, str]
    lines: list[str] = field(default_factory=list)

    def __post_init__(self):
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "tuner.cli", *self.argv], cwd=self.cwd, env=self.env,
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, start_new_session=True,
        )

    def until(self, predicate) -> str:
        """Read stdout until a line satisfies `predicate`; returns it (fails if the process ends first)."""
        for line in self.proc.stdout:
            self.lines.append(line)
            if predicate(line):
                return line
        self.proc.wait()
        raise AssertionError(f"driver ended (rc {self.proc.returncode}) before the expected line:\n"
                             + "".join(self.lines) + self.proc.stderr.read())

    def finish(self, timeout: float = 400) -> tuple[int, str, str]:
        out, err = self.proc.communicate(timeout=timeout)
        self.lines.append(out)
        return self.proc.returncode, "".join(self.lines), err

    def kill_group(self) -> None:
        """SIGKILL whatever is left of the driver's session (Ray's raylet, GCS and workers)."""
        try:
            os.killpg(self.proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        self.proc.wait()


def done_lines(text: str) -> list[str]:
    return [ln for ln in text.splitlines() if " done, " in ln]


def cli_env(tmp_path: Path, **extra: str) -> dict[str, str]:
    env = dict(os.environ, RAY_AUTH_MODE="disabled", MIXTUNE_CACHE=str(tmp_path / "cache"),
               PYTHONUNBUFFERED="1", MIXTUNE_TEST_SECRET=SECRET, AWS_SECRET_ACCESS_KEY=SECRET)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT), env.get("PYTHONPATH")]))
    env.update(extra)
    return env


def search_argv(tmp_path: Path, name: str, *more: str) -> list[str]:
    return ["search", "--space", "icm", "--epochs", "3", "--grace-period", "3", "--num-cpus", "2",
            "--name", name, "--results-dir", str(tmp_path / "results"),
            "--tracking-uri", f"sqlite:///{tmp_path / 'mlflow.db'}", *more]


def mlflow_runs(tmp_path: Path, name: str):
    from mlflow.tracking import MlflowClient

    client = MlflowClient(tracking_uri=f"sqlite:///{tmp_path / 'mlflow.db'}")
    exp = client.get_experiment_by_name("mixtune")
    runs = client.search_runs([exp.experiment_id], filter_string=f"tags.`mixtune.search` = '{name}'",
                              max_results=1000)
    parent = [r for r in runs if r.data.tags.get("mixtune.role") == "search"]
    trials = [r for r in runs if r.data.tags.get("mixtune.role") == "trial"]
    return client, parent, trials


def optuna_trials(folder: Path, name: str):
    import optuna

    return optuna.load_study(study_name=f"mixtune-{name}", storage=f"sqlite:///{folder / 'optuna.db'}").trials


def ray_snapshot(folder: Path) -> dict[str, str]:
    """Trial id -> status in Ray's newest experiment snapshot."""
    path = max(folder.glob("experiment_state-*.json"), key=lambda p: p.stat().st_mtime)
    state = json.loads(path.read_text())
    out = {}
    for trial_json, _ in state["trial_data"]:
        t = json.loads(trial_json)
        out[t["trial_id"]] = t["status"]
    return out


def wait_for(condition, proc: subprocess.Popen, timeout: float = 300) -> None:
    """Poll a condition on disk (not a fixed sleep); fail if the process ends or time runs out."""
    import time

    deadline = time.monotonic() + timeout
    while not condition():
        assert proc.poll() is None, f"driver ended early (rc {proc.returncode})"
        assert time.monotonic() < deadline, "condition not met in time"
        time.sleep(0.1)


def trial_id_of(line: str) -> str:
    return line.split("] ", 1)[1].split()[0]


@pytest.mark.slow
def test_sigint_then_sigkill_then_resume(tmp_path):
    name = "killme"
    folder = tmp_path / "results" / name
    n = 3
    argv = search_argv(tmp_path, name, "--num-samples", str(n), "--max-concurrent", "1")

    # 1. Ctrl-C after the first trial: a clean stop that prints how to resume
    d = Driver(argv, tmp_path, cli_env(tmp_path))
    try:
        first = d.until(lambda ln: " done, " in ln)
        # wait for the next trial's first checkpoint, so the snapshot Ray saves on Ctrl-C holds it
        first_id = trial_id_of(first)
        wait_for(lambda: any(c.parent.name != f"trial_{first_id}" for c in folder.glob("trial_*/checkpoint_*")),
                 d.proc)
        os.kill(d.proc.pid, signal.SIGINT)
        rc, out, err = d.finish()
    finally:
        d.kill_group()
    assert rc == 130, (out, err)
    assert f"continue it with: mixtune resume {folder}" in out
    # finished and running counted apart (Tune calls a trial stopped by Ctrl-C finished)
    assert f"stopped after 1/{n} trials finished, 1 running" in out, out
    assert err.strip().splitlines()[-1] == "mixtune: interrupted"
    _, parent, trials = mlflow_runs(tmp_path, name)
    assert [r.info.status for r in parent] == ["KILLED"]
    assert all(r.info.status != "RUNNING" for r in trials), [(r.info.status, r.data.tags) for r in trials]

    # 2. resume, then SIGKILL the driver the moment the next trial finishes
    d = Driver(["resume", str(folder)], tmp_path, cli_env(tmp_path, TUNE_GLOBAL_CHECKPOINT_S="3600"))
    try:
        line = d.until(lambda ln: " done, " in ln and trial_id_of(ln) != first_id)
        d.proc.send_signal(signal.SIGKILL)
        d.proc.wait()
    finally:
        d.kill_group()
    killed_id = trial_id_of(line)
    killed_value = float(line.split("val_scel_ts ")[1].split()[0])  # the trial's own value, first on the line
    # the trap: Ray's snapshot still has that trial unfinished, Optuna has it COMPLETE
    assert ray_snapshot(folder)[killed_id] != "TERMINATED"
    states = {t.state.name for t in optuna_trials(folder, name)}
    assert "COMPLETE" in states
    assert [r.info.status for r in mlflow_runs(tmp_path, name)[1]] == ["RUNNING"]  # killed: nobody closed it

    # 3. resume again: survives, keeps the finished trial, ends with one run per trial
    d = Driver(["resume", name, "--results-dir", str(tmp_path / "results")], tmp_path, cli_env(tmp_path))
    try:
        rc, out, err = d.finish()
    finally:
        d.kill_group()
    assert rc == 0, (out, err)
    assert f"trial {killed_id} had finished after Ray's last snapshot" in out
    assert "UpdateFinishedTrialError" not in out + err
    assert f"search {name} finished: {n} trials (0 failed)" in out

    client, parent, trials = mlflow_runs(tmp_path, name)
    assert [r.info.status for r in parent] == ["FINISHED"]
    ids = [r.data.tags["mixtune.trial_id"] for r in trials]
    assert len(trials) == n and len(set(ids)) == n, ids
    assert {r.info.status for r in trials} == {"FINISHED"}
    assert first_id in ids and killed_id in ids
    killed = next(r for r in trials if r.data.tags["mixtune.trial_id"] == killed_id)
    assert killed.data.metrics["val_scel_ts"] == pytest.approx(killed_value, abs=1e-4)  # kept, not retrained
    epochs = [m.step for m in client.get_metric_history(killed.info.run_id, "test_acc")]
    assert sorted(epochs) == [1, 2, 3]  # each epoch logged once despite the replay
    for r in trials:
        assert r.data.params["seed"] == "0"  # every trial's seed is logged
        # named after what it is, with the dataset logged once, across the two resumes
        tid, method = r.data.tags["mixtune.trial_id"], r.data.params["method"]
        assert method in ("icm", "icm_share_labels_in_batch")  # the icm preset's variants
        assert r.info.run_name.startswith(f"{tid} {method} k=")
        assert len(client.get_run(r.info.run_id).inputs.dataset_inputs) == 1
    # the resumed search's end wrote the trial table: every trial once
    table = json.loads(Path(client.download_artifacts(parent[0].info.run_id, "trials.json")).read_text())
    assert sorted(row[table["columns"].index("trial_id")] for row in table["data"]) == sorted(ids)

    complete = [t for t in optuna_trials(folder, name) if t.state.name == "COMPLETE"]
    assert len(complete) == n
    assert all(t.state.name in ("COMPLETE", "FAIL") for t in optuna_trials(folder, name))
    assert (folder / "best_config.yaml").exists()

    # no secret from the environment reached MLflow
    for r in [*parent, *trials]:
        blob = json.dumps([r.data.params, r.data.tags])
        assert SECRET not in blob


# ----------------------------------------------------------------------------- fast, in-process
def _space(trial):
    trial.suggest_float("alpha", 0.1, 2.0)


def _searcher(cls, tmp_path):
    import optuna

    return cls(space=_space, metric="test_acc", mode="max", study_name="s",
               storage=optuna.storages.RDBStorage(f"sqlite:///{tmp_path / 'optuna.db'}"),
               sampler=optuna.samplers.RandomSampler(seed=0))


def _stale_snapshot(tmp_path, cls):
    """Three trials suggested and snapshotted; then t1 finishes and a 4th is asked: the driver dies."""
    import optuna

    searcher = _searcher(cls, tmp_path)
    for tid in ("t1", "t2", "t3"):
        searcher.suggest(tid)
    searcher.on_trial_result("t1", {"test_acc": 0.5, "training_iteration": 1})
    searcher.save(str(tmp_path / "searcher.pkl"))  # Ray's snapshot
    searcher.on_trial_result("t1", {"test_acc": 0.7, "training_iteration": 2})
    searcher.on_trial_complete("t1", {"test_acc": 0.7})  # finished after the snapshot
    searcher.suggest("t4")  # started after the snapshot: Ray never hears of it
    restored = _searcher(cls, tmp_path)
    restored.restore(str(tmp_path / "searcher.pkl"))
    return restored, optuna.load_study(study_name="s", storage=f"sqlite:///{tmp_path / 'optuna.db'}")


def test_plain_optuna_search_dies_on_a_stale_snapshot(tmp_path):
    """The trap itself, without Ray: the replayed trial's result hits a finished Optuna trial."""
    import optuna
    from ray.tune.search.optuna import OptunaSearch

    restored, _ = _stale_snapshot(tmp_path, OptunaSearch)
    with pytest.raises(optuna.exceptions.UpdateFinishedTrialError):
        restored.on_trial_result("t1", {"test_acc": 0.7, "training_iteration": 2})


def test_resumable_search_survives_a_stale_snapshot(tmp_path, capsys):
    from tuner.search.searcher import ORPHAN_REASON, ResumableOptunaSearch

    restored, study = _stale_snapshot(tmp_path, ResumableOptunaSearch)
    out = capsys.readouterr().out
    assert "trial t1 had finished after Ray's last snapshot (Optuna COMPLETE); its result is kept" in out
    assert "Optuna trial 3 was started after Ray's last snapshot; marked FAIL" in out
    restored.on_trial_result("t1", {"test_acc": 0.7, "training_iteration": 2})  # no error
    restored.on_trial_complete("t1", {"test_acc": 0.7})
    restored.on_trial_result("t2", {"test_acc": 0.4, "training_iteration": 1})
    restored.on_trial_complete("t2", {"test_acc": 0.4})
    restored.on_trial_complete("t3", None, error=True)
    trials = study.trials
    assert [t.state.name for t in trials] == ["COMPLETE", "COMPLETE", "FAIL", "FAIL"]
    assert [t.value for t in trials[:2]] == [0.7, 0.4]  # t1 keeps the value it finished with
    assert trials[3].user_attrs["error"] == ORPHAN_REASON
    assert trials[2].user_attrs["error"] == "unknown error"  # no live trial to read an error from


def test_repair_checkpoints_restores_a_deleted_snapshot_checkpoint(tmp_path):
    from types import SimpleNamespace

    from ray import tune

    from tuner.execution.restore import repair_checkpoints

    trial_dir = tmp_path / "trial_x"
    (trial_dir / "checkpoint_000002").mkdir(parents=True)
    (trial_dir / "checkpoint_000002" / "state.pt").write_bytes(b"newest")
    want = trial_dir / "checkpoint_000001"  # what the stale snapshot names; Ray deleted it
    trial = SimpleNamespace(trial_id="x", checkpoint=tune.Checkpoint.from_directory(str(want)))
    notes = []
    repair_checkpoints([trial], notes.append)
    assert (want / "state.pt").read_bytes() == b"newest"
    assert notes == ["trial x: the snapshot's checkpoint_000001 was gone; restored from checkpoint_000002"]
    repair_checkpoints([trial], notes.append)  # present now: nothing to do
    assert len(notes) == 1
