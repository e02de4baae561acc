"""Issue 21.4: one process per search folder, with real processes.

A second `resume`, or `sync` while the driver runs, stops at once with one line naming the
holder (pid and command) and a non-zero exit; the lock goes with its holder, however it ends.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

import pytest
from test_resume import Driver, cli_env, search_argv

from tuner.settings import SearchSettings

HOLD = """
import sys, time
from tuner.execution.lock import search_lock
with search_lock(sys.argv[1], "resume"):
    print("locked", flush=True)
    time.sleep(600)
"""


def mixtune(tmp_path, *argv: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "tuner.cli", *argv], cwd=tmp_path, env=cli_env(tmp_path),
                          capture_output=True, text=True, timeout=300)


def test_a_second_process_is_refused_and_a_killed_holder_leaves_no_stale_lock(tmp_path):
    settings = SearchSettings(name="s", space="icm", base={"epochs": 1}, results_dir=str(tmp_path / "results"),
                              tracking_uri=f"sqlite:///{tmp_path / 'mlflow.db'}")
    settings.folder.mkdir(parents=True)
    settings.save()
    holder = subprocess.Popen([sys.executable, "-c", HOLD, str(settings.folder)], env=cli_env(tmp_path),
                              stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "locked"
        for command in ("resume", "sync"):
            second = mixtune(tmp_path, command, str(settings.folder))
            assert second.returncode == 2 and second.stdout == ""
            (line,) = second.stderr.strip().splitlines()
            assert line.startswith(f"mixtune: error: cannot {command} search s: ") and \
                f"in use by pid {holder.pid} (" in line, line
    finally:
        holder.send_signal(signal.SIGKILL)  # no clean-up: the kernel drops the lock with the process
        holder.wait()
    after = mixtune(tmp_path, "sync", str(settings.folder))
    assert after.returncode == 0 and "nothing to send" in after.stdout, after.stderr


@pytest.mark.slow
def test_sync_while_the_driver_runs_is_refused(tmp_path):
    """A real `mixtune search` driver holds its folder; `mixtune sync` of it fails in one line naming it."""
    driver = Driver(search_argv(tmp_path, "busy", "--num-samples", "1", "--epochs", "2", "--hidden", "16"),
                    tmp_path, cli_env(tmp_path))
    try:
        driver.until(lambda line: line.startswith("search busy:"))  # created: the lock is held
        folder = tmp_path / "results" / "busy"
        sync = mixtune(tmp_path, "sync", str(folder))
        assert sync.returncode == 2
        (line,) = sync.stderr.strip().splitlines()
        assert f"in use by pid {driver.proc.pid} (" in line and " search " in line, line
        rc, out, err = driver.finish()
        assert rc == 0, err
    finally:
        driver.kill_group()
    assert mixtune(tmp_path, "sync", str(folder)).returncode == 0  # free again once the driver ended
