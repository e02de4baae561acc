"""A real two-node Ray cluster on loopback: `mixtune search --address` spreads trials over both,
and goes on with one node when the other vanishes (its processes SIGKILLed mid-trial).

Two `ray start --block` processes (a head and a second node), each with one CPU and a custom
resource naming it, each in its own temp dir and process session. The search runs as a
separate driver process against the real `mlflow server` fixture. The nodes run under a
`sitecustomize` guard that makes every dataset loader raise inside their processes, so the
trials can only have trained on data that came from the driver through the object store.
Afterwards both nodes are stopped by their own process sessions (never `ray stop`, which
would take down every Ray runtime on the machine) and the test checks nothing of theirs is left.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import textwrap
import time
import uuid
from pathlib import Path

import optuna
import pytest
from mlflow.tracking import MlflowClient

pytestmark = pytest.mark.slow

# imported at start-up by every Python process of the two nodes (PYTHONPATH), not by the driver
GUARD = textwrap.dedent('''
    import importlib.abc, importlib.machinery, os, sys

    class _NoDatasetFiles(importlib.abc.MetaPathFinder):
        """After trainables.core.data is imported here, loading a dataset raises."""

        def find_spec(self, name, path, target=None):
            if name != "trainables.core.data":
                return None
            spec = importlib.machinery.PathFinder.find_spec(name, path)
            if spec is None:
                return None
            run = spec.loader.exec_module

            def exec_module(module):
                run(module)

                def refuse(*args, **kwargs):
                    raise RuntimeError("this node has no dataset files: data must come from the driver")

                module.load_dataset = refuse
                for key in module.LOADERS:
                    module.LOADERS[key] = refuse
                marker = os.path.join(os.environ["MIXTUNE_TEST_GUARD"], f"guarded-{os.getpid()}")
                open(marker, "w").close()

            spec.loader.exec_module = exec_module
            return spec

    sys.meta_path.insert(0, _NoDatasetFiles())


    class _PacedEpochs(importlib.abc.MetaPathFinder):
        """When <guard>/pace holds seconds: after each epoch a trial reports, it marks the node
        and trial it ran on (<guard>/epochs/<node>-<trial>-<epoch>) and sleeps that long."""

        def find_spec(self, name, path, target=None):
            if name != "trainables.trainable":
                return None
            spec = importlib.machinery.PathFinder.find_spec(name, path)
            if spec is None:
                return None
            run = spec.loader.exec_module

            def exec_module(module):
                run(module)
                real_fit = module.fit

                def fit(cfg, dataset, on_epoch=None, resume=None):
                    import time

                    import ray
                    from ray import tune

                    folder = os.environ["MIXTUNE_TEST_GUARD"]
                    try:
                        pace = float(open(os.path.join(folder, "pace")).read())
                    except OSError:
                        return real_fit(cfg, dataset, on_epoch, resume=resume)
                    node = ray.get_runtime_context().get_node_id()
                    trial = tune.get_context().get_trial_id()
                    os.makedirs(os.path.join(folder, "epochs"), exist_ok=True)

                    def paced(metrics, make_state):
                        on_epoch(metrics, make_state)  # returns once the driver has the result
                        open(os.path.join(folder, "epochs", f"{node}-{trial}-{int(metrics['epoch'])}"), "w").close()
                        time.sleep(pace)

                    return real_fit(cfg, dataset, paced, resume=resume)

                module.fit = fit

            spec.loader.exec_module = exec_module
            return spec

    sys.meta_path.insert(0, _PacedEpochs())
''')

# asks the cluster which node holds which custom resource; run as its own short-lived driver
PROBE = textwrap.dedent('''
    import json, sys, time
    import ray

    ray.init(address=sys.argv[1], logging_level="ERROR", log_to_driver=False)
    deadline = time.time() + float(sys.argv[2])
    while True:
        alive = [n for n in ray.nodes() if n["Alive"]]
        names = {r: n["NodeID"] for n in alive for r in n["Resources"] if r in ("node_a", "node_b")}
        if len(names) == 2 or time.time() > deadline:
            break
        time.sleep(0.5)
    print(json.dumps(names))
    ray.shutdown()
''')


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def port_open(port: int) -> bool:
    with socket.socket() as s:
        s.settimeout(1)
        return s.connect_ex(("127.0.0.1", port)) == 0


def session_members(sids: set[int]) -> dict[int, str]:
    """pid -> command line of every live process in one of these sessions (the nodes' processes)."""
    found = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
            fields = stat[stat.rindex(")") + 2:].split()  # after "pid (comm) "
            if fields[0] == "Z" or int(fields[3]) not in sids:  # state, ..., session id
                continue
            found[int(entry.name)] = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode()[:120]
        except (OSError, ValueError, IndexError):
            continue
    return found


def start_node(args: list[str], env: dict[str, str], log: Path) -> subprocess.Popen:
    with open(log, "w") as out:
        # its own session: the node's daemons and workers inherit it, so they can be found and stopped
        return subprocess.Popen(["ray", "start", "--block", "--disable-usage-stats", "--num-gpus", "0",
                                 "--node-ip-address", "127.0.0.1", *args],
                                stdout=out, stderr=subprocess.STDOUT, env=env, start_new_session=True)


def node_ports() -> list[str]:
    """Every port a node listens on, free ones: two nodes share the host (and other test runs)."""
    return ["--node-manager-port", str(free_port()), "--object-manager-port", str(free_port()),
            "--dashboard-agent-listen-port", str(free_port()), "--dashboard-agent-grpc-port", str(free_port()),
            "--metrics-export-port", str(free_port()), "--runtime-env-agent-port", str(free_port())]


@pytest.fixture
def two_nodes(tmp_path, request):
    """(address, {"node_a": id, "node_b": id}, guard folder, MLflow URI, {"node_a": its `ray start`, ...});
    nodes stopped afterwards.

    The session's `mlflow_server` is asked for while the head boots: both take tens of seconds.
    """
    root = Path(tempfile.mkdtemp(prefix="mt-", dir="/tmp"))  # short: Ray's socket paths are length-limited
    guard = root / "guard"
    guard.mkdir()
    (guard / "sitecustomize.py").write_text(GUARD)
    port = free_port()
    address = f"127.0.0.1:{port}"
    env = {**os.environ, "RAY_AUTH_MODE": "disabled", "RAY_USAGE_STATS_ENABLED": "0",
           "PYTHONPATH": os.pathsep.join(filter(None, [str(guard), os.environ.get("PYTHONPATH")])),
           "MIXTUNE_TEST_GUARD": str(guard)}
    nodes: list[subprocess.Popen] = []
    try:
        nodes.append(start_node(["--head", "--port", str(port), "--num-cpus", "1", "--resources", '{"node_a": 1}',
                                 "--include-dashboard", "false",
                                 "--temp-dir", str(root / "a"), *node_ports()], env, tmp_path / "head.log"))
        mlflow_uri = request.getfixturevalue("mlflow_server")
        deadline = time.time() + 90
        while not port_open(port):
            assert nodes[0].poll() is None, f"head exited: {(tmp_path / 'head.log').read_text()[-2000:]}"
            assert time.time() < deadline, "the head's GCS port never opened"
            time.sleep(0.5)
        nodes.append(start_node(["--address", address, "--num-cpus", "1", "--resources", '{"node_b": 1}',
                                 "--temp-dir", str(root / "b"), *node_ports()], env, tmp_path / "node_b.log"))
        probe = subprocess.run([sys.executable, "-c", PROBE, address, "90"], capture_output=True, text=True,
                               timeout=150, env={**os.environ, "RAY_AUTH_MODE": "disabled"})
        assert probe.returncode == 0, probe.stderr[-2000:]
        ids = json.loads(probe.stdout.strip().splitlines()[-1])
        assert set(ids) == {"node_a", "node_b"}, f"the cluster did not come up with both nodes: {ids}"
        yield address, ids, guard, mlflow_uri, {"node_a": nodes[0], "node_b": nodes[1]}
    finally:
        sids = {p.pid for p in nodes}  # start_new_session: each node's session id is its `ray start` pid
        for p in reversed(nodes):  # the second node first, then the head
            if p.poll() is None:
                os.killpg(p.pid, signal.SIGTERM)
        # as `ray stop` does: a grace period after SIGTERM, then SIGKILL for what is left
        # `ray stop` waits 16 s; a test cluster needs less (MIXTUNE_TEST_STOP_GRACE seconds, default 5)
        deadline = time.time() + float(os.environ.get("MIXTUNE_TEST_STOP_GRACE", "5"))
        while session_members(sids) and time.time() < deadline:
            time.sleep(0.5)
        for pid in session_members(sids):
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        for p in nodes:
            p.wait(timeout=30)
        deadline = time.time() + 10  # SIGKILLed processes vanish once the kernel has reaped them
        while session_members(sids) and time.time() < deadline:
            time.sleep(0.2)
        left = session_members(sids)
        shutil.rmtree(root, ignore_errors=True)
        assert not left, f"processes of the test cluster are still running: {left}"
        assert not port_open(port), "the test cluster's GCS port still answers"


def test_search_spreads_trials_over_two_nodes(tmp_path, two_nodes):
    address, node_ids, guard, mlflow_server, _ = two_nodes
    # paced epochs (0.5 s each): a trial holds its node's one CPU longer than the other node takes
    # to start a worker, so two trials run at once, one per node (unpaced, all four once ran on A)
    (guard / "pace").write_text("0.5")
    name = f"multinode-{uuid.uuid4().hex[:8]}"
    shared = tmp_path / "shared"  # --storage-path: a folder every node reaches
    samples = 4
    cmd = ["mixtune", "search", "--address", address, "--space", "icm", "--num-samples", str(samples),
           "--epochs", "3", "--hidden", "32", "--max-concurrent", "2", "--cpus-per-trial", "1",
           "--grace-period", "1", "--name", name, "--experiment", name, "--tracking-uri", mlflow_server,
           "--results-dir", str(tmp_path / "results"), "--storage-path", str(shared)]
    # the driver alone may load the dataset: it runs without the guard
    env = {k: v for k, v in os.environ.items() if k not in ("MIXTUNE_TEST_GUARD", "MLFLOW_TRACKING_URI")}
    env["RAY_AUTH_MODE"] = "disabled"
    run = subprocess.run(cmd, capture_output=True, text=True, timeout=300, env=env, cwd=tmp_path)
    assert run.returncode == 0, f"search failed:\n{run.stdout[-3000:]}\n{run.stderr[-3000:]}"
    assert f"[{samples}/{samples} done" in run.stdout

    # the trials ran under the guard: the dataset they trained on came through the object store
    assert list(guard.glob("guarded-*")), "no node process imported the data module under the guard"

    # every trial is a nested run in the one MLflow server, tagged with the node it ran on
    client = MlflowClient(mlflow_server)
    exp = client.get_experiment_by_name(name)
    runs = client.search_runs([exp.experiment_id], filter_string=f"tags.`mixtune.search` = '{name}'")
    trials = [r for r in runs if r.data.tags.get("mixtune.role") == "trial"]
    parents = [r for r in runs if r.data.tags.get("mixtune.role") == "search"]
    assert len(parents) == 1 and len(trials) == samples
    assert all(r.info.status == "FINISHED" for r in runs)
    assert all(r.data.tags["mlflow.parentRunId"] == parents[0].info.run_id for r in trials)
    tagged = {r.data.tags["node_id"] for r in trials}
    assert tagged == set(node_ids.values()), f"trials ran on {tagged}, the nodes are {node_ids}"

    # Ray's results and checkpoints are in the shared storage path and agree on the nodes
    trial_dirs = sorted((shared / name).glob("trial_*"))
    assert len(trial_dirs) == samples
    reported = set()
    for d in trial_dirs:
        lines = [json.loads(line) for line in (d / "result.json").read_text().splitlines() if line.strip()]
        reported |= {line["node_id"] for line in lines}
        assert list(d.glob("checkpoint_*/state.pt")), f"{d.name} has no checkpoint in the shared folder"
    assert reported == set(node_ids.values())


def test_lost_worker_node_trials_go_on_from_their_checkpoints(tmp_path, two_nodes):
    """A spot node vanishes: node B's raylet, workers and all are SIGKILLed while a trial runs there.

    Epochs are paced (0.4 s each, a marker per epoch names the node) so the kill lands in the
    middle of a trial on B. The search goes on with node A alone; the trial that was on B
    continues from its last checkpoint there without using up --max-failures (0).
    """
    address, node_ids, guard, mlflow_server, procs = two_nodes
    (guard / "pace").write_text("0.4")
    name = f"nodeloss-{uuid.uuid4().hex[:8]}"
    shared = tmp_path / "shared"
    folder = tmp_path / "results" / name
    samples, epochs = 4, 6
    cmd = [sys.executable, "-m", "tuner.cli", "search", "--address", address, "--space", "icm",
           "--num-samples", str(samples), "--epochs", str(epochs), "--grace-period", str(epochs), "--hidden", "32",
           "--num-threads", "1", "--max-concurrent", "2", "--cpus-per-trial", "1", "--name", name,
           "--experiment", name, "--tracking-uri", mlflow_server, "--results-dir", str(tmp_path / "results"),
           "--storage-path", str(shared)]
    env = {k: v for k, v in os.environ.items() if k not in ("MIXTUNE_TEST_GUARD", "MLFLOW_TRACKING_URI")}
    env.update(RAY_AUTH_MODE="disabled", PYTHONUNBUFFERED="1",
               PYTHONPATH=os.pathsep.join(filter(None, [str(Path(__file__).resolve().parents[1]),
                                                        env.get("PYTHONPATH")])))
    log = open(tmp_path / "driver.log", "w")
    driver = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, env=env, cwd=tmp_path,
                              start_new_session=True)
    try:
        b = node_ids["node_b"]
        deadline = time.time() + 240
        while True:  # a trial on B has reported (and checkpointed) its second epoch
            marks = [m.name for m in (guard / "epochs").glob(f"{b}-*")] if (guard / "epochs").exists() else []
            on_b = [m.rsplit("-", 2) for m in marks]
            started = [(t, int(e)) for _, t, e in on_b]
            if any(e >= 2 for _, e in started):
                break
            assert driver.poll() is None, (tmp_path / "driver.log").read_text()
            assert time.time() < deadline, "no trial reached its second epoch on node B"
            time.sleep(0.05)
        # as a reclaimed machine vanishes: every process of node B, SIGKILL, by its own pid
        victims = session_members({procs["node_b"].pid})
        for pid in victims:
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        killed_at = time.time()
        assert any("raylet" in c for c in victims.values()), victims
        rc = driver.wait(timeout=300)
    finally:
        if driver.poll() is None:
            os.killpg(driver.pid, signal.SIGKILL)
            driver.wait()
        log.close()
    out = (tmp_path / "driver.log").read_text()
    assert rc == 0, out[-4000:]
    assert f"search {name} finished: {samples} trials (0 failed)" in out, out[-3000:]
    # the trials on B at the kill: the last epoch each had reached there
    reached: dict[str, int] = {}
    for t, e in started:
        reached[t] = max(reached.get(t, 0), e)
    lost = {t: e for t, e in reached.items()
            if not (guard / "epochs" / f"{b}-{t}-{epochs}").exists()}  # had not finished on B
    assert lost, f"no trial was running on node B when it was killed: {reached}"
    for t, e in lost.items():
        note = [ln for ln in out.splitlines() if ln.startswith(f"trial {t}: its node {b[:12]} was lost")]
        assert len(note) == 1, out[-3000:]
        assert "not counted in --max-failures" in note[0] and "node loss 1 of 3" in note[0]

    client = MlflowClient(mlflow_server)
    exp = client.get_experiment_by_name(name)
    runs = client.search_runs([exp.experiment_id], filter_string=f"tags.`mixtune.search` = '{name}'")
    trials = {r.data.tags["mixtune.trial_id"]: r for r in runs if r.data.tags.get("mixtune.role") == "trial"}
    assert len(trials) == samples and all(r.info.status == "FINISHED" for r in runs)
    for tid, run in trials.items():
        # every trial reached its end; one metric point per epoch, no duplicate, no gap
        for metric in ("epoch", "val_scel"):
            assert sorted(m.step for m in client.get_metric_history(run.info.run_id, metric)) == \
                list(range(1, epochs + 1)), (tid, metric)
        results = [json.loads(x) for x in (shared / name / f"trial_{tid}" / "result.json").read_text().splitlines()]
        series = [(r["epoch"], r["node_id"]) for r in results]
        assert series[-1][0] == epochs
        if tid not in lost:
            assert [e for e, _ in series] == list(range(1, epochs + 1)), series
            continue
        # on B up to the kill, then on A from its last checkpoint: the epoch count does not restart
        switch = next(i for i, (_, node) in enumerate(series) if node != b)
        before, after = series[:switch], series[switch:]
        assert [e for e, _ in before] == list(range(1, len(before) + 1)) and before[-1][0] >= lost[tid]
        assert {node for _, node in after} == {node_ids["node_a"]}
        assert after[0][0] == before[-1][0], series  # the checkpoint's epoch, re-reported once
        assert [e for e, _ in after[1:]] == list(range(before[-1][0] + 1, epochs + 1)), series
        assert run.data.tags["node_losses"] == "1" and run.data.tags["node_id"] == node_ids["node_a"]
        assert run.data.tags["state"] == "COMPLETED"

    study = optuna.load_study(study_name=f"mixtune-{name}", storage=f"sqlite:///{folder / 'optuna.db'}")
    assert len(study.trials) == samples and all(t.state.name == "COMPLETE" for t in study.trials)
    assert time.time() - killed_at < 200
