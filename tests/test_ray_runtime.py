"""Which Ray runtime a search uses when one started by `ray start` runs on the machine.

Plain `ray.init()` joins the newest local runtime it finds (`<temp>/ray/ray_current_cluster`)
and then refuses `num_cpus`: `mixtune search --num-cpus 2` crashed with a traceback. A search
now starts a runtime of its own unless told to join one (`--address`, or `$RAY_ADDRESS` as a
Ray job's driver gets it); `--address auto` joins the running one (bench/startup.py: the
1-trial search's fixed cost with a runtime that outlives it).

A real head (`ray start --head --block`, one CPU, a custom resource naming it) under a
`RAY_TMPDIR` of this test's own, so that neither it nor the searches see another runtime of
the machine.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest
from fault_tools import cli_env, run_cli, search_runs
from test_multinode import free_port, node_ports, port_open, session_members

pytestmark = pytest.mark.slow

NODE_ID = '''
import ray, sys
ray.init(address=sys.argv[1], logging_level="ERROR", log_to_driver=False)
print([n["NodeID"] for n in ray.nodes() if n["Alive"] and "outside" in n["Resources"]][0])
ray.shutdown()
'''


def test_a_search_starts_its_own_runtime_unless_told_to_join(tmp_path):
    root = Path(tempfile.mkdtemp(prefix="mr-", dir="/tmp"))  # short: Ray's socket paths are length-limited
    port = free_port()
    env = cli_env(tmp_path, RAY_TMPDIR=str(root), RAY_USAGE_STATS_ENABLED="0")
    env.pop("RAY_ADDRESS", None)
    with open(tmp_path / "head.log", "w") as log:
        head = subprocess.Popen(["ray", "start", "--head", "--block", "--port", str(port), "--num-cpus", "1",
                                 "--num-gpus", "0", "--resources", '{"outside": 1}', "--include-dashboard", "false",
                                 "--node-ip-address", "127.0.0.1", "--disable-usage-stats", *node_ports()],
                                stdout=log, stderr=subprocess.STDOUT, env=env, start_new_session=True)
    try:
        deadline = time.time() + 90
        # up, and its address where plain ray.init() looks for one
        while not (port_open(port) and (root / "ray" / "ray_current_cluster").exists()):
            assert head.poll() is None, (tmp_path / "head.log").read_text()[-2000:]
            assert time.time() < deadline, "the head never came up (GCS port, ray_current_cluster)"
            time.sleep(0.5)
        probe = subprocess.run([sys.executable, "-c", NODE_ID, f"127.0.0.1:{port}"], capture_output=True, text=True,
                               env=env, timeout=120)
        assert probe.returncode == 0, probe.stderr[-2000:]
        outside = probe.stdout.strip().splitlines()[-1]
        uri = f"sqlite:///{tmp_path / 'mlflow.db'}"

        def search(name: str, *extra: str) -> set[str]:
            rc, out, err = run_cli(["search", "--space", "icm", "--num-samples", "1", "--epochs", "1", "--hidden",
                                    "16", "--name", name, "--results-dir", str(tmp_path / "results"),
                                    "--tracking-uri", uri, "--summary", "wait", *extra], tmp_path, env)
            assert rc == 0, out[-2000:] + err[-3000:]
            _, _, trials = search_runs(uri, name)
            return {r.data.tags["node_id"] for r in trials}

        def head_monitors() -> set[int]:  # the running runtime's autoscaler monitor
            found = set()
            for pid in session_members({head.pid}):
                try:
                    if b"autoscaler/_private/monitor.py" in Path(f"/proc/{pid}/cmdline").read_bytes():
                        found.add(pid)
                except OSError:
                    pass
            return found

        monitors = head_monitors()
        assert monitors, session_members({head.pid})
        # --num-cpus sizes a runtime of the search's own: the running one is not joined
        own = search("own", "--num-cpus", "2")
        assert own and outside not in own
        # --address auto joins it
        assert search("joined", "--address", "auto") == {outside}
        # a search stops (and kills the monitor of) only a runtime it started
        assert head_monitors() == monitors
    finally:
        if head.poll() is None:
            os.killpg(head.pid, signal.SIGTERM)
        deadline = time.time() + 10
        while session_members({head.pid}) and time.time() < deadline:
            time.sleep(0.5)
        for pid in session_members({head.pid}):
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        head.wait(timeout=30)
        shutil.rmtree(root, ignore_errors=True)
