"""The default end of `mixtune search`: the trials' MLflow runs are sent before the command
returns, the summary (parent run metrics, plots, the best model, its registration) by a
`mixtune sync` of its own, started as the command ends, whose pid and log it prints (issue 26).

The test suite runs every other search with `MIXTUNE_SUMMARY=wait` (conftest.py).
"""

from __future__ import annotations

from contextlib import redirect_stdout
from io import StringIO

import mlflow
import pytest
from fault_tools import search_runs, summary_sender, wait_for_exit

from tuner.cli import main
from tuner.execution.sync import SYNC_LOG
from tuner.tracking.outbox import OUTBOX_FILE, pending

pytestmark = pytest.mark.slow


def test_the_summary_is_sent_in_the_background_and_arrives_whole(tmp_path, shared_ray, monkeypatch):
    monkeypatch.delenv("MIXTUNE_SUMMARY")  # the CLI's default
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    printed = StringIO()
    with redirect_stdout(printed):
        rc = main(["search", "--space", "icm", "--num-samples", "2", "--epochs", "2", "--hidden", "32",
                   "--name", "bg", "--experiment", "bg", "--results-dir", str(tmp_path / "results"),
                   "--tracking-uri", uri, "--register-model", "mixtune-bg-best"])
    out = printed.getvalue()
    assert rc == 0, out[-3000:]
    folder = tmp_path / "results" / "bg"
    pid = summary_sender(out)
    line = next(ln for ln in out.splitlines() if ln.startswith("MLflow:"))
    assert line.endswith(f"sent by pid {pid} (log: {folder / SYNC_LOG}); if it stops: mixtune sync {folder}"), line

    # before the command returned: every trial's run, closed; the search's files; the summary held
    client, parents, trials = search_runs(uri, "bg", experiment="bg")
    assert len(trials) == 2 and all(r.info.status == "FINISHED" for r in trials)
    assert (folder / "finished.json").exists() and (folder / "best_config.yaml").exists()

    wait_for_exit(pid)
    log = (folder / SYNC_LOG).read_text()
    assert "search bg: sent 1 writes; its MLflow runs are complete" in log, log
    assert not (folder / OUTBOX_FILE).exists() and not pending(folder / OUTBOX_FILE)

    # what the summary writes, all there: the parent's status, best metric, config, plots, model
    client, parents, trials = search_runs(uri, "bg", experiment="bg")
    (parent,) = parents
    assert parent.info.status == "FINISHED"
    best = min((r for r in trials if r.data.tags["state"] == "COMPLETED"), key=lambda r: r.data.metrics["val_scel_ts"])
    assert parent.data.tags["best_trial_id"] == best.data.tags["mixtune.trial_id"]
    assert parent.data.metrics["best_val_scel_ts"] == pytest.approx(best.data.metrics["val_scel_ts"])
    assert {"best_config.yaml", "space.yaml", "plots"} <= {a.path for a in client.list_artifacts(parent.info.run_id)}
    plots = {a.path for a in client.list_artifacts(parent.info.run_id, "plots")}
    assert {"plots/best_so_far.png", "plots/params_vs_metric.png"} <= plots
    mlflow.set_tracking_uri(uri)
    models = mlflow.search_logged_models(experiment_ids=[parent.info.experiment_id], output_format="list")
    assert any(m.source_run_id == parent.info.run_id for m in models)
    (version,) = client.search_model_versions("name = 'mixtune-bg-best'")
    assert version.run_id == parent.info.run_id

    # the search is finished and has nothing left to send
    printed = StringIO()
    with redirect_stdout(printed):
        assert main(["resume", str(folder)]) == 0
    assert "has finished (2 trials, 0 failed); nothing to resume" in printed.getvalue()


def test_a_bad_summary_mode_is_one_line_before_anything_starts(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("MIXTUNE_SUMMARY", "later")
    rc = main(["search", "--num-samples", "1", "--results-dir", str(tmp_path / "results"),
               "--tracking-uri", f"sqlite:///{tmp_path / 'mlflow.db'}"])
    err = capsys.readouterr().err
    assert rc == 2 and err.strip().splitlines() == [
        "mixtune: error: $MIXTUNE_SUMMARY='later' is not a summary mode; use one of: wait, background"]
    assert not (tmp_path / "results").exists() and not (tmp_path / "mlflow.db").exists()
