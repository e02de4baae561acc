"""Shared fixtures: environment for Ray and the cache, a real `mlflow server` per session, one Ray
runtime for the in-process searches that need none of their own, and finished searches that tests
only read.

A test that needs its own Ray runtime (it starts one, or checks that a search starts and stops
one) asks for `ray_shutdown`; a test that only needs a search to run asks for `shared_ray`, and
a test that only reads a finished search asks for `finished_search` or `server_search`. The tests
on the shared runtime run last, together (`pytest_collection_modifyitems`), so it starts once.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
import urllib.request
from contextlib import redirect_stdout
from dataclasses import dataclass
from io import StringIO
from pathlib import Path

import pytest

# Ray: no token auth in tests; mixtune: a clustering cache private to this test session
os.environ.setdefault("RAY_AUTH_MODE", "disabled")
os.environ.setdefault("RAY_DEDUP_LOGS", "0")
# searches send their MLflow summary before returning, so a test reads it right after; the
# default (a background sender) has its own test, tests/test_summary_background.py
os.environ["MIXTUNE_SUMMARY"] = "wait"

SHARED = Path(__file__).resolve().parents[1].parent / "shared"
MNIST_DIR = SHARED / "data" / "mnist"


@pytest.fixture(autouse=True, scope="session")
def _cache_dir(tmp_path_factory):
    path = tmp_path_factory.mktemp("mixtune-cache")
    old = os.environ.get("MIXTUNE_CACHE")
    os.environ["MIXTUNE_CACHE"] = str(path)
    yield path
    if old is None:
        os.environ.pop("MIXTUNE_CACHE", None)
    else:
        os.environ["MIXTUNE_CACHE"] = old


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_http(url: str, timeout: float, proc: subprocess.Popen | None = None) -> None:
    deadline = time.time() + timeout
    while time.time() < deadline:
        if proc is not None and proc.poll() is not None:
            raise RuntimeError(f"process serving {url} exited with code {proc.returncode}")
        try:
            with urllib.request.urlopen(url, timeout=2) as r:
                if r.status == 200:
                    return
        except OSError:
            time.sleep(0.5)
    raise RuntimeError(f"{url} did not answer within {timeout:.0f}s")


@pytest.fixture(scope="session")
def mlflow_server(tmp_path_factory):
    """A real `mlflow server` on a free loopback port (sqlite backend), stopped afterwards."""
    root = tmp_path_factory.mktemp("mlflow-server")
    port = free_port()
    log = open(root / "server.log", "w")
    proc = subprocess.Popen(
        [sys.executable, "-m", "mlflow", "server",
         "--backend-store-uri", f"sqlite:///{root / 'mlflow.db'}",
         "--artifacts-destination", str(root / "artifacts"),
         "--host", "127.0.0.1", "--port", str(port), "--workers", "1"],
        stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
    )
    uri = f"http://127.0.0.1:{port}"
    try:
        wait_http(f"{uri}/health", timeout=180, proc=proc)
        yield uri
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, 9)
            proc.wait()
        log.close()


SHARED_RAY = "_shared_ray_session"  # in the closure of shared_ray, finished_search and server_search


def pytest_collection_modifyitems(config, items):
    """The tests on the shared Ray runtime run last, in their own order: the runtime starts once."""
    shared = [item for item in items if SHARED_RAY in getattr(item, "fixturenames", ())]
    if shared:
        ids = {id(item) for item in shared}
        items[:] = [item for item in items if id(item) not in ids] + shared


def _start_shared_ray() -> None:
    """A local runtime started the way `mixtune search` starts one (its workers prewarmed), 2 CPUs."""
    import ray

    from tuner.execution.assembly import start_ray
    from tuner.settings import SearchSettings

    if not ray.is_initialized():
        start_ray(SearchSettings(name="pytest", space="icm", base={}, num_cpus=2))


@pytest.fixture(scope="session")
def _shared_ray_session():
    yield
    import ray

    if ray.is_initialized():
        ray.shutdown()


@pytest.fixture
def shared_ray(_shared_ray_session):
    """One Ray runtime (2 CPUs) shared by the in-process searches that need none of their own.

    A search finds it running, uses it and leaves it running: the Python API's case of a
    notebook that called `ray.init` first. It saves each search Ray's start and stop, and the
    start of workers that import torch. `--num-cpus` does not resize it; every test on it runs
    at most 2 trials at a time anyway.
    """
    _start_shared_ray()
    yield


@pytest.fixture
def ray_shutdown():
    """For a test that needs a Ray runtime of its own: none before it (a shared one is stopped),
    and the one it started stopped after it."""
    import ray

    if ray.is_initialized():
        ray.shutdown()
    yield
    if ray.is_initialized():
        ray.shutdown()


@dataclass
class FinishedSearch:
    """A search that has ended: its saved settings, its MLflow store and what it printed."""

    settings: object  # tuner.settings.SearchSettings
    uri: str
    root: Path  # the folder holding its results, MLflow store and artifacts
    out: str


def run_finished_search(root: Path, uri: str, name: str, experiment: str, *extra: str) -> FinishedSearch:
    from tuner.cli import main
    from tuner.settings import SearchSettings

    argv = ["search", "--num-cpus", "2", "--results-dir", str(root / "results"), "--tracking-uri", uri,
            "--experiment", experiment, "--name", name, *extra]
    printed = StringIO()
    with redirect_stdout(printed):
        rc = main(argv)
    assert rc == 0, printed.getvalue()[-3000:]
    return FinishedSearch(SearchSettings.load(root / "results" / name), uri, root, printed.getvalue())


FINISHED_TRIALS, FINISHED_EPOCHS = 8, 4


@pytest.fixture(scope="session")
def finished_search(tmp_path_factory, _shared_ray_session):
    """One real search (the `all` space, 8 trials of 4 epochs, ASHA, sqlite MLflow store, the best
    model registered), run once per pytest run, for the tests that only read a search: the
    end-to-end checks, compare and export-best (test_search.py), the Optuna dashboard
    (test_dashboard.py), the MLflow dataset and trial table (test_mlflow_features.py).
    A test that uses it must not change it."""
    root = tmp_path_factory.mktemp("finished-search")
    _start_shared_ray()
    return run_finished_search(
        root, f"sqlite:///{root / 'mlflow.db'}", "e2e", "test-e2e", "--space", "all",
        "--num-samples", str(FINISHED_TRIALS), "--epochs", str(FINISHED_EPOCHS), "--hidden", "32",
        "--grace-period", "1", "--reduction-factor", "2", "--register-model", "mixtune-e2e-best",
    )


@pytest.fixture(scope="session")
def server_search(tmp_path_factory, mlflow_server, _shared_ray_session):
    """One real search (the `icm` preset, 3 trials of 2 epochs) logged to the session's real
    `mlflow server`, for the tests that only read it (test_search.py, the browser test of
    test_mlflow_features.py)."""
    root = tmp_path_factory.mktemp("server-search")
    _start_shared_ray()
    return run_finished_search(
        root, mlflow_server, "over-http", "mixtune-tests", "--space", "icm", "--num-samples", "3",
        "--max-concurrent", "2", "--epochs", "2", "--hidden", "16", "--grace-period", "2",
    )
