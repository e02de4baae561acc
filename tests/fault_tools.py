"""Helpers of the fault tests: a mixtune driver read line by line while it runs, and a real
`mlflow server` that can be stopped and started again on the same store and port.

Both run in their own process session, so that what they start (Ray's processes, the
server's workers) can be stopped with them, by their own process group, and nothing else.
"""

from __future__ import annotations

import json
import os
import queue
import signal
import subprocess
import sys
import threading
import time
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


class LiveDriver:
    """A `mixtune` CLI process whose stdout is read, with the time of each line, while it runs."""

    def __init__(self, argv: list[str], cwd: Path, env: dict[str, str]):
        self.proc = subprocess.Popen([sys.executable, "-m", "tuner.cli", *argv], cwd=cwd, env=env,
                                     stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                                     start_new_session=True)
        self.lines: list[tuple[float, str]] = []  # (monotonic time, line) of stdout
        self.err: list[str] = []
        self._new: queue.Queue[str | None] = queue.Queue()
        threading.Thread(target=self._read, args=(self.proc.stdout, True), daemon=True).start()
        threading.Thread(target=self._read, args=(self.proc.stderr, False), daemon=True).start()

    def _read(self, stream, out: bool) -> None:
        for line in stream:
            if out:
                self.lines.append((time.monotonic(), line.rstrip("\n")))
                self._new.put(line)
            else:
                self.err.append(line.rstrip("\n"))
        if out:
            self._new.put(None)

    @property
    def out(self) -> str:
        return "\n".join(line for _, line in self.lines)

    def wait_line(self, predicate, timeout: float = 300) -> str:
        """The first stdout line (from now on) that satisfies predicate; fails if the driver ends first."""
        deadline = time.monotonic() + timeout
        while True:
            try:
                line = self._new.get(timeout=max(0.1, deadline - time.monotonic()))
            except queue.Empty:
                raise AssertionError(f"no such line within {timeout:.0f}s:\n{self.out}\n" + "\n".join(self.err))
            if line is None:
                self.proc.wait()
                raise AssertionError(f"driver ended (rc {self.proc.returncode}) before the expected line:\n"
                                     f"{self.out}\n" + "\n".join(self.err))
            if predicate(line):
                return line.rstrip("\n")

    def finish(self, timeout: float = 400) -> int:
        try:
            return self.proc.wait(timeout=timeout)
        finally:
            time.sleep(0.2)  # let the readers take the last lines

    def kill_group(self) -> None:
        """SIGKILL whatever is left of the driver's session (its local Ray runtime, if any)."""
        try:
            os.killpg(self.proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        self.proc.wait()


def cli_env(tmp_path: Path, **extra: str) -> dict[str, str]:
    env = dict(os.environ, RAY_AUTH_MODE="disabled", MIXTUNE_CACHE=str(tmp_path / "cache"), PYTHONUNBUFFERED="1")
    env.pop("MLFLOW_TRACKING_URI", None)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT), env.get("PYTHONPATH")]))
    env.update(extra)
    return env


def run_cli(argv: list[str], cwd: Path, env: dict[str, str], timeout: float = 400) -> tuple[int, str, str]:
    p = subprocess.run([sys.executable, "-m", "tuner.cli", *argv], cwd=cwd, env=env, capture_output=True,
                       text=True, timeout=timeout, start_new_session=True)
    return p.returncode, p.stdout, p.stderr


class MlflowServer:
    """A real `mlflow server` (sqlite store, local artifacts) that can be stopped and started again."""

    def __init__(self, root: Path, port: int):
        self.root, self.port = root, port
        self.uri = f"http://127.0.0.1:{port}"
        self.proc: subprocess.Popen | None = None
        self.starts = 0

    def start(self) -> None:
        self.starts += 1
        log = open(self.root / f"server-{self.starts}.log", "w")
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "mlflow", "server",
             "--backend-store-uri", f"sqlite:///{self.root / 'mlflow.db'}",
             "--artifacts-destination", str(self.root / "artifacts"),
             "--host", "127.0.0.1", "--port", str(self.port), "--workers", "1"],
            stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
        )
        log.close()

    def up(self) -> bool:
        try:
            with urllib.request.urlopen(f"{self.uri}/health", timeout=2) as r:
                return r.status == 200
        except OSError:
            return False

    def wait_up(self, timeout: float = 180) -> float:
        """Seconds until /health answers."""
        t0 = time.monotonic()
        while not self.up():
            assert self.proc is not None and self.proc.poll() is None, \
                (self.root / f"server-{self.starts}.log").read_text()[-2000:]
            assert time.monotonic() - t0 < timeout, f"mlflow server did not answer within {timeout}s"
            time.sleep(0.3)
        return time.monotonic() - t0

    def stop(self, crash: bool = False) -> None:
        """SIGTERM to the server's process group (gunicorn/uvicorn and its workers), SIGKILL if it lingers.

        `crash`: SIGKILL at once, as a server that dies does. A graceful stop lets open
        keep-alive connections finish first, which can take longer than a small search runs.
        """
        if self.proc is None or self.proc.poll() is not None:
            return
        os.killpg(self.proc.pid, signal.SIGKILL if crash else signal.SIGTERM)
        try:
            self.proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait()
        deadline = time.monotonic() + 10
        while self.up() and time.monotonic() < deadline:  # a worker that outlived its parent
            time.sleep(0.2)
        try:
            os.killpg(self.proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass


def search_runs(uri: str, name: str, experiment: str = "mixtune"):
    """(client, parent runs, trial runs) of a search, deleted runs left out."""
    from mlflow.tracking import MlflowClient

    client = MlflowClient(tracking_uri=uri)
    exp = client.get_experiment_by_name(experiment)
    runs = client.search_runs([exp.experiment_id], filter_string=f"tags.`mixtune.search` = '{name}'",
                              max_results=1000)
    return (client, [r for r in runs if r.data.tags.get("mixtune.role") == "search"],
            [r for r in runs if r.data.tags.get("mixtune.role") == "trial"])


def steps(client, run, metric: str = "epoch") -> list[int]:
    return sorted(m.step for m in client.get_metric_history(run.info.run_id, metric))


def ray_results(trial_dir: Path) -> list[dict]:
    """The results Ray recorded for a trial (result.json), in order."""
    return [json.loads(line) for line in (trial_dir / "result.json").read_text().splitlines() if line.strip()]


def optuna_trials(folder: Path, name: str):
    import optuna

    return optuna.load_study(study_name=f"mixtune-{name}", storage=f"sqlite:///{folder / 'optuna.db'}").trials


def wait_for_exit(pid: int, timeout: float = 180.0) -> None:
    """Wait for a child of this process to end (a search's summary sender, when the CLI ran in
    this process), reaping it; fail after `timeout`."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            done, _ = os.waitpid(pid, os.WNOHANG)
        except ChildProcessError:  # reaped already (by subprocess' own clean-up)
            return
        if done == pid:
            return
        time.sleep(0.2)
    raise AssertionError(f"the summary's sender (pid {pid}) was still running after {timeout:.0f}s")


def summary_sender(out: str) -> int:
    """The pid of the summary's sender, as a search's last printed line names it."""
    import re

    found = re.search(r"^MLflow: .* sent by pid (\d+) ", out, re.M)
    assert found, out[-2000:]
    return int(found.group(1))
