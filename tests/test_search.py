"""A real search end to end: Ray runtime, Optuna study in sqlite, MLflow (sqlite and server).

The searches are the session's `finished_search` and `server_search` (conftest.py), which other
tests read too; these tests read them and write only under their own tmp_path.
"""

import json

import optuna
import pytest
import torch
from conftest import FINISHED_EPOCHS as EPOCHS
from conftest import FINISHED_TRIALS
from mlflow.tracking import MlflowClient

from trainables.core.config import TrainConfig
from tuner.cli import main

pytestmark = pytest.mark.slow


def runs_of(client, settings, role):
    return client.search_runs(
        [settings.experiment_id],
        filter_string=f"tags.`mixtune.search` = '{settings.name}' and tags.`mixtune.role` = '{role}'",
    )


def test_search_end_to_end_sqlite(finished_search, tmp_path, capsys):
    settings, uri, out = finished_search.settings, finished_search.uri, finished_search.out
    n = FINISHED_TRIALS
    assert f"[{n}/{n} done" in out and "mlflow ui --backend-store-uri" in out
    # the quick start selects on a validation metric from complementary labels, and says so,
    # with the test accuracy of the same trial beside it (a report, not the selection)
    assert "selects on val_scel_ts (min), from the validation split's complementary labels only, no true label read" in out
    assert "best val_scel_ts " in out and "(test_acc " in out

    # the Optuna study holds every trial, with its value
    study = optuna.load_study(study_name=settings.study_name, storage=settings.study_storage)
    assert len(study.trials) == n
    assert all(t.value is not None for t in study.trials)

    # each trial's folder: Tune's result.json and progress.csv, no TensorBoard event files (MLflow
    # is the tracker), at most two checkpoints (num_to_keep), the newest its last epoch's state
    folders = sorted(settings.folder.glob("trial_*"))
    assert len(folders) == n
    for d in folders:
        assert (d / "result.json").is_file() and (d / "progress.csv").is_file()
        assert not list(d.glob("events.out.tfevents*")), d.name
        checkpoints = sorted(d.glob("checkpoint_*"))
        assert 1 <= len(checkpoints) <= 2 and (checkpoints[-1] / "state.pt").is_file(), d.name
        last_epoch = json.loads((d / "result.json").read_text().splitlines()[-1])["epoch"]
        assert torch.load(checkpoints[-1] / "state.pt", weights_only=True)["epoch"] == last_epoch

    # MLflow: one parent run, n nested runs with params and per-epoch metric histories
    client = MlflowClient(uri)
    (parent,) = runs_of(client, settings, "search")
    trials = runs_of(client, settings, "trial")
    assert len(trials) == n
    assert parent.info.status == "FINISHED" and all(r.info.status == "FINISHED" for r in trials)
    for r in trials:
        assert r.data.tags["mlflow.parentRunId"] == parent.info.run_id
        assert r.data.params["dataset"] == "digits" and r.data.params["seed"] == "0"
        assert {"method", "dataset", "labels", "state", "node_id"} <= set(r.data.tags)
        for metric in ("val_scel", "val_ure", "val_acc_est", "test_acc"):
            steps = [m.step for m in client.get_metric_history(r.info.run_id, metric)]
            assert steps == list(range(1, len(steps) + 1)) and 1 <= len(steps) <= EPOCHS
        assert "plots/learning_curve.png" in [a.path for a in client.list_artifacts(r.info.run_id, "plots")]
    states = [r.data.tags["state"] for r in trials]
    assert "STOPPED_EARLY" in states, "ASHA stopped no trial"
    assert "COMPLETED" in states

    # the parent holds the summary: best metric, best config, plots, the best model
    assert parent.data.metrics["trials"] == n and parent.data.tags["selection_metric"] == "val_scel_ts"
    # with a sqlite store, artifacts live beside the database, not in ./mlruns of the cwd
    assert parent.info.artifact_uri.startswith((finished_search.root / "mlartifacts").as_uri())
    artifacts = {a.path for a in client.list_artifacts(parent.info.run_id)}
    assert {"best_config.yaml", "space.yaml", "plots"} <= artifacts
    plots = {a.path for a in client.list_artifacts(parent.info.run_id, "plots")}
    assert {"plots/best_so_far.png", "plots/params_vs_metric.png"} <= plots
    import mlflow

    mlflow.set_tracking_uri(uri)
    models = mlflow.search_logged_models(experiment_ids=[settings.experiment_id], output_format="list")
    assert any(m.source_run_id == parent.info.run_id for m in models)
    (version,) = client.search_model_versions("name = 'mixtune-e2e-best'")
    assert version.run_id == parent.info.run_id

    # the best trial is the completed one with the lowest temperature-scaled validation SCEL, for the summary,
    # compare and export-best alike
    best_run = min((r for r in trials if r.data.tags["state"] == "COMPLETED"),
                   key=lambda r: r.data.metrics["val_scel_ts"])
    assert parent.data.tags["best_trial_id"] == best_run.data.tags["mixtune.trial_id"]
    assert parent.data.metrics["best_val_scel_ts"] == pytest.approx(best_run.data.metrics["val_scel_ts"])

    # compare prints the trials as a table, the selection metric first and best first
    assert main(["compare", str(settings.folder)]) == 0
    table = capsys.readouterr().out
    header = table.splitlines()[0].split()
    assert header[:2] == ["trial", "state"] and "val_scel_ts" in header and "test_acc" in header
    assert header.index("val_scel_ts") < header.index("test_acc")
    first = table.splitlines()[2].split()
    assert float(first[header.index("val_scel_ts")]) == pytest.approx(
        min(r.data.metrics["val_scel_ts"] for r in trials), abs=1e-4)
    assert f"{min(10, n)} of {n} trials" in table and "the search selects on val_scel_ts" in table

    # export-best + train --config reproduce the best trial's metrics exactly (CPU, same seed)
    best_yaml = tmp_path / "best.yaml"
    assert main(["export-best", str(settings.folder), "-o", str(best_yaml)]) == 0
    cfg = TrainConfig.from_yaml(best_yaml)
    assert cfg.method == best_run.data.params["method"]
    assert main(["train", "--config", str(best_yaml), "--quiet", "--output", str(tmp_path / "retrain")]) == 0
    summary = json.loads((tmp_path / "retrain" / "summary.json").read_text())
    assert summary["final"]["test_acc"] == pytest.approx(best_run.data.metrics["test_acc"], abs=1e-9)
    assert summary["final"]["val_scel_ts"] == pytest.approx(best_run.data.metrics["val_scel_ts"], abs=1e-6)
    # the Ray-side export agrees with the MLflow one
    ray_yaml = tmp_path / "best-ray.yaml"
    assert main(["export-best", str(settings.folder), "--source", "ray", "-o", str(ray_yaml)]) == 0
    assert TrainConfig.from_yaml(ray_yaml) == cfg


def test_search_against_mlflow_server(server_search, mlflow_server):
    settings = server_search.settings
    client = MlflowClient(mlflow_server)
    (parent,) = runs_of(client, settings, "search")
    trials = runs_of(client, settings, "trial")
    assert len(trials) == 3
    assert all(r.data.tags["method"] in ("icm", "icm_share_labels_in_batch") and "k" in r.data.params for r in trials)
    assert all(r.data.params["method"] == r.data.tags["method"] for r in trials)  # the variant is a searched value
    assert all(len(client.get_metric_history(r.info.run_id, "train_loss")) >= 1 for r in trials)
    assert "best_config.yaml" in {a.path for a in client.list_artifacts(parent.info.run_id)}
