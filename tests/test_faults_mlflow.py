"""The MLflow server goes away in the middle of a search: a real `mlflow server` is stopped
and started again on the same sqlite store and port.

1. Down for a while (it takes the server ~25 s to answer again): the search goes on, says
   so in one line each way, and MLflow ends with one parent, one nested run per trial and
   every epoch's metrics once.
2. Down past `--tracking-outage-limit`: the search finishes, leaves what MLflow lacks in
   `mlflow-outbox.jsonl`, and `mixtune sync` sends it once the server is back.
"""

from __future__ import annotations

import json

import time

import pytest
from conftest import free_port
from fault_tools import LiveDriver, MlflowServer, cli_env, optuna_trials, ray_results, run_cli, search_runs, steps

pytestmark = pytest.mark.slow

SAMPLES = 6
EPOCHS = 5


@pytest.fixture
def server(tmp_path):
    root = tmp_path / "server"
    root.mkdir()
    srv = MlflowServer(root, free_port())
    srv.start()
    try:
        srv.wait_up()
        yield srv
    finally:
        srv.stop()


def search_argv(tmp_path, name, uri, *more):
    return ["search", "--space", "icm", "--num-samples", str(SAMPLES), "--epochs", str(EPOCHS),
            "--grace-period", str(EPOCHS), "--hidden", "32", "--num-threads", "1", "--num-cpus", "2",
            "--max-concurrent", "2", "--name", name, "--results-dir", str(tmp_path / "results"),
            "--tracking-uri", uri, *more]


def check_runs(uri, name, folder):
    """One FINISHED parent, one FINISHED nested run per trial, every epoch's metrics exactly once."""
    client, parents, trials = search_runs(uri, name)
    assert [p.info.status for p in parents] == ["FINISHED"]
    assert len(trials) == SAMPLES and len({t.data.tags["mixtune.trial_id"] for t in trials}) == SAMPLES
    for run in trials:
        assert run.info.status == "FINISHED", run.data.tags
        assert run.data.tags["mlflow.parentRunId"] == parents[0].info.run_id
        tid = run.data.tags["mixtune.trial_id"]
        reported = sorted({r["epoch"] for r in ray_results(folder / f"trial_{tid}")})
        assert reported == list(range(1, EPOCHS + 1))
        for metric in ("epoch", "val_scel", "train_loss"):
            assert steps(client, run, metric) == reported, (tid, metric)  # no duplicate, no gap
        assert run.data.params["seed"] == "0"
    assert "best_val_scel_ts" in parents[0].data.metrics
    assert "best_config.yaml" in {a.path for a in client.list_artifacts(parents[0].info.run_id)}
    assert len([t for t in optuna_trials(folder, name) if t.state.name == "COMPLETE"]) == SAMPLES
    return client, parents, trials


def test_server_down_for_a_while_loses_nothing(tmp_path, server):
    name = "outage"
    folder = tmp_path / "results" / name
    d = LiveDriver(search_argv(tmp_path, name, server.uri), tmp_path, cli_env(tmp_path))
    try:
        d.wait_line(lambda ln: " done, " in ln)  # the search is under way and MLflow has its first trial
        crashed = time.monotonic()
        server.stop(crash=True)
        down = d.wait_line(lambda ln: "is unreachable" in ln, timeout=120)
        restarted = time.monotonic()
        server.start()  # on the same store and port
        server.wait_up()
        d.wait_line(lambda ln: "is back after" in ln, timeout=120)
        rc = d.finish()
    finally:
        d.kill_group()
    out = d.out
    assert rc == 0, out + "\n".join(d.err)
    assert f"search {name} finished: {SAMPLES} trials (0 failed)" in out
    # one line each way
    assert [ln for _, ln in d.lines if "is unreachable" in ln] == [down]
    assert f"MLflow at {server.uri} is unreachable (" in down and str(folder / "mlflow-outbox.jsonl") in down
    assert len([ln for _, ln in d.lines if "is back after" in ln]) == 1
    # the trials did not wait for MLflow: trials finished while it was down (4 of the 6 were left
    # when it crashed; the driver may notice the outage only at its next write, so the window is
    # the server's own downtime, not the driver's lines)
    done_while_down = [ln for t, ln in d.lines if " done, " in ln and crashed < t < restarted]
    assert done_while_down, out
    check_runs(server.uri, name, folder)
    assert not (folder / "mlflow-outbox.jsonl").exists()


def test_server_down_past_the_limit_then_mixtune_sync(tmp_path, server):
    name = "outage-sync"
    folder = tmp_path / "results" / name
    outbox = folder / "mlflow-outbox.jsonl"
    env = cli_env(tmp_path)
    d = LiveDriver(search_argv(tmp_path, name, server.uri, "--tracking-outage-limit", "5"), tmp_path, env)
    try:
        d.wait_line(lambda ln: " done, " in ln)
        server.stop(crash=True)  # and it stays down until the search has ended
        rc = d.finish()
    finally:
        d.kill_group()
    out = d.out
    assert rc == 0, out + "\n".join(d.err)
    assert f"search {name} finished: {SAMPLES} trials (0 failed)" in out
    (limit_line,) = [ln for _, ln in d.lines if "--tracking-outage-limit 5s" in ln]
    assert f"kept in {outbox}; send them with: mixtune sync {folder}" in limit_line
    assert outbox.exists()
    kept = [json.loads(line) for line in outbox.read_text().splitlines()]
    ops = [e["op"]["op"] for e in kept if "op" in e]
    assert ops[-1] == "summary" and "metrics" in ops and "end" in ops

    # while the server is down, sync says so in one line and keeps the file
    rc, sync_out, sync_err = run_cli(["sync", str(folder)], tmp_path, env)
    (line,) = sync_err.strip().splitlines()
    assert rc == 2 and line.startswith(f"mixtune: error: tracking URI {server.uri} is unreachable ("), sync_err
    assert "Connection refused" in line
    assert [json.loads(x) for x in outbox.read_text().splitlines()] == kept  # untouched

    server.start()
    server.wait_up()
    rc, sync_out, sync_err = run_cli(["sync", name, "--results-dir", str(tmp_path / "results")], tmp_path, env)
    assert rc == 0, sync_out + sync_err
    assert f"search {name}: sending " in sync_out and "its MLflow runs are complete" in sync_out
    assert not outbox.exists()
    client, parents, trials = check_runs(server.uri, name, folder)
    best = min(trials, key=lambda r: r.data.metrics["val_scel_ts"])  # every trial ran every epoch
    assert parents[0].data.tags["best_trial_id"] == best.data.tags["mixtune.trial_id"]
    assert all(r.data.tags["state"] == "COMPLETED" for r in trials)
    assert "plots/learning_curve.png" in {a.path for a in client.list_artifacts(best.info.run_id, "plots")}

    rc, again, _ = run_cli(["sync", str(folder)], tmp_path, env)
    assert rc == 0 and "nothing to send" in again
