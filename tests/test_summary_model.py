"""The search summary against a real sqlite MLflow store: one logged model however often the
summary op is sent, a parent run never left RUNNING, and a best model logged without any MLflow
serving-input validation (which, on a GPU machine, loads the CPU-saved model on the GPU and
prints a warning with a JSON dump).
"""

from __future__ import annotations

import logging
from pathlib import Path

import pytest
import torch
from ray import tune

from trainables.core.config import TrainConfig
from trainables.core.models import build_model
from trainables.trainable import CHECKPOINT_FILE
from tuner.tracking import callback as tracking
from tuner.settings import SearchSettings

IN_SHAPE = (1, 8, 8)


def _search(tmp_path: Path, register: str | None = None):
    """A parent run, two trial rows and the best trial's real checkpoint (a tiny MLP on 8x8 inputs)."""
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    client = tracking.client(uri)
    exp = tracking.experiment_id(client, "summary", tracking.artifact_location(uri))
    parent = client.create_run(exp, tags={tracking.SEARCH_TAG: "s", tracking.ROLE_TAG: "search"}).info.run_id
    cfg = TrainConfig(model="mlp", hidden=8, epochs=1).to_dict()
    settings = SearchSettings(name="s", space="icm", base=cfg, metric="val_acc", mode="max", tracking_uri=uri,
                              experiment_id=exp, parent_run_id=parent, results_dir=str(tmp_path / "results"),
                              register_model=register)
    settings.folder.mkdir(parents=True)
    torch.manual_seed(0)
    model = build_model("mlp", IN_SHAPE, 10, 8)
    ckpt = tmp_path / "ckpt"
    ckpt.mkdir()
    torch.save({"model": model.state_dict(), "in_shape": list(IN_SHAPE), "num_classes": 10}, ckpt / CHECKPOINT_FILE)
    rows = [{"trial_id": t, "config": {"lr": lr}, "metrics": {"val_acc": acc, "epoch": 1.0}, "error": None,
             "checkpoint": tune.Checkpoint.from_directory(str(ckpt)) if t == "a" else None, "path": str(tmp_path)}
            for t, lr, acc in (("a", 0.1, 0.9), ("b", 0.01, 0.5))]
    best = {**rows[0], "train_config": cfg}
    return client, settings, rows, best, model


def _models(client, settings):
    return client.search_logged_models(experiment_ids=[settings.experiment_id],
                                       filter_string=f"source_run_id = '{settings.parent_run_id}'")


@pytest.mark.slow
def test_the_summary_sent_twice_logs_one_model_and_one_version(tmp_path):
    """Issue 21.3: a retry of the summary op (after an outage, or by `mixtune sync`) changes nothing."""
    from tuner.report.summary import log_summary

    client, settings, rows, best, _ = _search(tmp_path, register="summary-best")
    for _ in range(3):
        log_summary(client, settings, rows, best, 1.5)
    run = client.get_run(settings.parent_run_id)
    assert run.info.status == "FINISHED"
    assert run.data.metrics["best_val_acc"] == 0.9 and run.data.tags["best_trial_id"] == "a"
    assert len(_models(client, settings)) == 1
    versions = client.search_model_versions("name = 'summary-best'")
    assert [str(v.version) for v in versions] == ["1"] and versions[0].run_id == settings.parent_run_id
    table = client.load_table(settings.experiment_id, artifact_file="trials.json", run_ids=[settings.parent_run_id])
    assert sorted(table["trial_id"]) == ["a", "b"]  # MLflow appends a table logged again: it was not


@pytest.mark.slow
def test_a_summary_that_fails_leaves_the_parent_ended(tmp_path):
    """Issue 21.3: an error that is not an outage (a checkpoint gone) ends the parent run, not RUNNING."""
    import shutil

    from tuner.report.summary import log_summary

    client, settings, rows, best, _ = _search(tmp_path)
    shutil.rmtree(tmp_path / "ckpt")
    with pytest.raises(Exception):
        log_summary(client, settings, rows, best, 1.5)
    run = client.get_run(settings.parent_run_id)
    assert run.info.status == "FINISHED"  # the search did finish; the model is what is missing
    assert "summary_error" in run.data.tags and run.data.metrics["best_val_acc"] == 0.9


@pytest.mark.slow
def test_the_best_model_is_logged_without_serving_validation(tmp_path, monkeypatch, capfd, caplog):
    """Issue 21.14: MLflow's serving-input check loads the model on the GPU when there is one, where a
    model saved from CPU tensors cannot go. Here `meta` stands for that other device: before the fix
    MLflow printed 'Failed to validate serving input example' and the JSON of the example."""
    import mlflow.pytorch

    from tuner.report.summary import log_model

    monkeypatch.setenv("MLFLOW_DEFAULT_PREDICTION_DEVICE", "meta")
    client, settings, rows, best, model = _search(tmp_path)
    caplog.set_level(logging.DEBUG, logger="mlflow")
    log_model(settings, best)
    out, err = capfd.readouterr()
    said = out + err + caplog.text
    assert "serving input" not in said and "inputs" not in said and "device" not in said, said
    assert not [r for r in caplog.records if r.name.startswith("mlflow") and r.levelno >= logging.WARNING]
    (logged,) = _models(client, settings)
    loaded = mlflow.pytorch.load_model(f"models:/{logged.model_id}")
    x = torch.randn(3, *IN_SHAPE)
    with torch.no_grad():
        assert torch.allclose(loaded(x), model.eval()(x), atol=1e-6)
    assert logged.tags.get("mixtune.device") == "cpu"
