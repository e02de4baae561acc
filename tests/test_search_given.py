"""Searches on given complementary labels (no y_train), with and without test labels; and
the proof that a search selects without reading a test label: permuting the test split's
labels changes no trial's validation metrics and not which trial is best.

Real Ray runtime, sqlite MLflow, real files written from digits with three CLs per image.
"""

from __future__ import annotations

import numpy as np
import optuna
import pytest
import yaml
from mlflow.tracking import MlflowClient

from tests.test_given_labels import digits_arrays, three_cls, write
from tuner.cli import main
from tuner.settings import SearchSettings

pytestmark = pytest.mark.slow


def search(tmp_path, npz, name, *extra):
    argv = ["search", "--space", "icm", "--dataset", "npz", "--data-dir", str(npz), "--labels", "given",
            "--num-samples", "4", "--max-concurrent", "1", "--epochs", "3", "--hidden", "32", "--num-cpus", "1",
            "--grace-period", "1", "--reduction-factor", "2", "--results-dir", str(tmp_path / "results"),
            "--tracking-uri", f"sqlite:///{tmp_path / 'mlflow.db'}", "--experiment", "given", "--name", name,
            *extra]
    assert main(argv) == 0
    return SearchSettings.load(tmp_path / "results" / name)


def trials_by_params(settings, uri):
    """{searched params: (state, every val_* metric's full history)} of a search's trial runs."""
    client = MlflowClient(uri)
    runs = client.search_runs([settings.experiment_id],
                              filter_string=f"tags.`mixtune.search` = '{settings.name}' and tags.`mixtune.role` = 'trial'")
    out = {}
    for r in runs:
        searched = r.data.tags["mixtune.searched_params"].split(",")
        key = tuple((p, r.data.params[p]) for p in searched)
        hist = {m: [(x.step, x.value) for x in sorted(client.get_metric_history(r.info.run_id, m), key=lambda x: x.step)]
                for m in r.data.metrics if m.startswith("val_")}
        out[key] = (r.data.tags["state"], hist, r.data.metrics.get("test_acc"))
    return out


def test_permuting_test_labels_changes_no_selection(tmp_path, capsys, shared_ray):
    xtr, ytr, xte, yte = digits_arrays()
    cl = three_cls(ytr)
    perm = np.random.default_rng(1).permutation(len(yte))
    a = write(tmp_path / "a.npz", x_train=xtr, cl_train=cl, x_test=xte, y_test=yte)
    b = write(tmp_path / "b.npz", x_train=xtr, cl_train=cl, x_test=xte, y_test=yte[perm])
    sa = search(tmp_path, a, "true-test")
    out = capsys.readouterr().out
    assert "selects on val_scel_ts (min), from the validation split's complementary labels only, no true label read" in out
    assert "best val_scel_ts " in out and "(test_acc " in out
    sb = search(tmp_path, b, "permuted-test")
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    ta, tb = trials_by_params(sa, uri), trials_by_params(sb, uri)
    assert len(ta) == len(tb) == 4 and set(ta) == set(tb)  # the same configs were proposed
    for key in ta:
        assert ta[key][:2] == tb[key][:2], key  # same ASHA decision, same validation histories
        assert ta[key][1]["val_scel"] and ta[key][1]["val_acc_est"]
    assert any(ta[k][2] != tb[k][2] for k in ta)  # the test metric did see the permutation
    best_a = yaml.safe_load((sa.folder / "best_config.yaml").read_text())
    best_b = yaml.safe_load((sb.folder / "best_config.yaml").read_text())
    best_a.pop("data_dir"), best_b.pop("data_dir")
    assert best_a == best_b
    study = optuna.load_study(study_name=sa.study_name, storage=sa.study_storage)
    assert len(study.trials) == 4 and study.direction == optuna.study.StudyDirection.MINIMIZE


def test_search_train_and_export_without_test_labels(tmp_path, capsys, shared_ray):
    xtr, ytr, *_ = digits_arrays()
    npz = write(tmp_path / "bare.npz", x_train=xtr, cl_train=three_cls(ytr))
    settings = search(tmp_path, npz, "bare")
    out = capsys.readouterr().out
    assert "best val_scel_ts " in out and "test_acc" not in out
    assert settings.metric == "val_scel_ts" and settings.base["labels"] == "given"
    assert main(["compare", str(settings.folder)]) == 0
    table = capsys.readouterr().out
    assert "val_scel" in table.splitlines()[0] and "test_acc" not in table
    best = tmp_path / "best.yaml"
    assert main(["export-best", str(settings.folder), "-o", str(best)]) == 0
    assert main(["train", "--config", str(best), "--quiet", "--output", str(tmp_path / "retrain")]) == 0
    # asking for a metric that needs test labels is refused before anything is written
    assert main(["search", "--dataset", "npz", "--data-dir", str(npz), "--labels", "given", "--metric", "test_acc",
                 "--results-dir", str(tmp_path / "results"), "--name", "refused"]) == 2
    assert not (tmp_path / "results" / "refused").exists()
