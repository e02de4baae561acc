"""The Optuna dashboard a finished search points to: `mixtune[dashboard]` installs it, and the
line the summary prints starts it. The slow test takes the session's finished search
(conftest.py), starts optuna-dashboard on loopback with the very command the summary printed,
and reads the study back over its HTTP API (`/api/studies`, `/api/studies/<id>`, the routes its
web page uses), comparing it with the study Optuna stored.
"""

from __future__ import annotations

import json
import os
import shlex
import subprocess
import sys
import urllib.request

import optuna
import pytest

from tests.conftest import free_port, wait_http
from tuner.report import summary_text


def test_line_when_installed():
    line = summary_text.dashboard_line("sqlite:////x/optuna.db")
    assert line == "Optuna study: optuna-dashboard sqlite:////x/optuna.db  (then open http://127.0.0.1:8080)"
    line = summary_text.dashboard_line("sqlite:////x/optuna.db", 3)  # the study itself, by its id
    assert line.endswith("(then open http://127.0.0.1:8080/dashboard/studies/3)")


def test_line_names_the_install_step_when_missing(monkeypatch, tmp_path):
    # a Python whose environment has no optuna-dashboard: nothing on PATH, nothing beside it
    monkeypatch.setattr(summary_text.shutil, "which", lambda name: None)
    monkeypatch.setattr(sys, "executable", str(tmp_path / "bin" / "python"))
    line = summary_text.dashboard_line("sqlite:////x/optuna.db")
    assert line == ("Optuna study: optuna-dashboard sqlite:////x/optuna.db"
                    "  (not installed: pip install 'mixtune[dashboard]' first)")
    # a virtualenv used without activating it: the executable beside its Python is printed
    (tmp_path / "bin").mkdir()
    (tmp_path / "bin" / "optuna-dashboard").write_text("#!/bin/sh\n")
    assert summary_text.dashboard_line("s").startswith(f"Optuna study: {tmp_path / 'bin' / 'optuna-dashboard'} s  ")


def get_json(url: str):
    with urllib.request.urlopen(url, timeout=10) as r:
        assert r.status == 200
        return json.loads(r.read())


@pytest.mark.slow
def test_printed_command_serves_the_finished_study(finished_search, tmp_path):
    settings = finished_search.settings
    printed = [line for line in finished_search.out.splitlines() if line.startswith("Optuna study: ")]
    assert len(printed) == 1 and "(then open http://127.0.0.1:8080/dashboard/studies/" in printed[0]
    page = printed[0].split("(then open http://127.0.0.1:8080")[1].rstrip(")")
    command = shlex.split(printed[0].removeprefix("Optuna study: ").split("  (")[0])
    assert command == ["optuna-dashboard", settings.study_storage]

    port = free_port()  # the printed command on its default host (127.0.0.1), on a free port
    log = open(tmp_path / "dashboard.log", "w")
    proc = subprocess.Popen([*command, "--port", str(port)], stdout=log, stderr=subprocess.STDOUT,
                            start_new_session=True)
    base = f"http://127.0.0.1:{port}"
    try:
        wait_http(f"{base}/api/studies", timeout=60, proc=proc)
        stored = optuna.load_study(study_name=settings.study_name, storage=settings.study_storage)
        summaries = get_json(f"{base}/api/studies")["study_summaries"]
        (summary,) = [s for s in summaries if s["study_name"] == settings.study_name]
        assert summary["directions"] == [stored.direction.name.lower()]
        assert page == f"/dashboard/studies/{summary['study_id']}"  # the printed link opens this study
        detail = get_json(f"{base}/api/studies/{summary['study_id']}")
        assert detail["name"] == settings.study_name and len(detail["trials"]) == len(stored.trials) == settings.num_samples
        assert detail["objective_names"] == ["val_scel_ts"]  # not "Objective 0"
        ray_ids = {r.name.removeprefix("trial_") for r in settings.folder.glob("trial_*")}
        served_ids = {next(a["value"] for a in t["user_attrs"] if a["key"] == "ray_trial_id") for t in detail["trials"]}
        assert served_ids == ray_ids  # each Optuna trial names the Ray trial the terminal and MLflow show
        for served, trial in zip(sorted(detail["trials"], key=lambda t: t["number"]), stored.trials):
            assert served["state"] == trial.state.name.capitalize()
            assert {p["name"]: p["param_external_value"] for p in served["params"]} == \
                   {k: str(v) for k, v in trial.params.items()}
            if trial.values is not None:
                assert served["values"] == pytest.approx(trial.values)
        (best,) = detail["best_trials"]
        assert best["number"] == stored.best_trial.number and best["values"] == pytest.approx([stored.best_value])
        with urllib.request.urlopen(f"{base}/dashboard", timeout=10) as r:  # the page a browser opens
            assert r.status == 200 and b"<html" in r.read().lower()
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, 9)
            proc.wait()
        log.close()
