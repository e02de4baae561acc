"""A small real search on every dataset layout: torchvision's roots (idx, CIFAR-10, CIFAR-100 /
CIFAR-20, SVHN), an image folder with class subfolders and one with a CSV of complementary labels.

One Ray runtime serves the whole module (a search joins the runtime it finds). The files are
the small ones `test_datasets_torchvision.py` and `test_folder.py` write; the CIFAR and SVHN
md5 workaround is theirs too (the expected md5s become those of the written files, so
torchvision's check and parser both run). The driver loads the data; trials get it through
Ray's object store.
"""

from __future__ import annotations

import optuna
import pytest
import yaml
from mlflow.tracking import MlflowClient

from tests.test_datasets_torchvision import official_md5, write_layout  # noqa: F401  (official_md5: a fixture)
from tests.test_folder import csv_folder, image_folder
from tuner.cli import main
from tuner.settings import SearchSettings

pytestmark = pytest.mark.slow

SAMPLES = 2


def search(tmp_path, dataset, root, *extra):
    name = f"s-{dataset}"
    argv = ["search", "--space", "icm", "--dataset", dataset, "--data-dir", str(root), "--val-fraction", "0.2",
            "--num-samples", str(SAMPLES), "--max-concurrent", "1", "--epochs", "2", "--model", "mlp", "--hidden", "32",
            "--num-cpus", "1", "--grace-period", "1", "--reduction-factor", "2",
            "--results-dir", str(tmp_path / "results"), "--tracking-uri", f"sqlite:///{tmp_path / 'mlflow.db'}",
            "--experiment", f"datasets-{dataset}", "--name", name, *extra]
    assert main(argv) == 0
    settings = SearchSettings.load(tmp_path / "results" / name)
    study = optuna.load_study(study_name=settings.study_name, storage=settings.study_storage)
    assert len(study.trials) == SAMPLES and all(t.value is not None for t in study.trials)
    client = MlflowClient(f"sqlite:///{tmp_path / 'mlflow.db'}")
    runs = client.search_runs([settings.experiment_id],
                              filter_string=f"tags.`mixtune.search` = '{name}' and tags.`mixtune.role` = 'trial'")
    assert len(runs) == SAMPLES
    assert {r.data.params["dataset"] for r in runs} == {dataset} and {r.data.tags["dataset"] for r in runs} == {dataset}
    best = yaml.safe_load((settings.folder / "best_config.yaml").read_text())
    assert best["dataset"] == dataset and best["data_dir"] == str(root)
    return settings, runs


def test_search_on_torchvision_layout(tmp_path, official_md5, shared_ray):  # noqa: F811
    """One search on a torchvision-layout root (CIFAR-100 with its own labels, selecting on val_acc): every
    layout's loader is unit-tested and trained end to end by `mixtune train` in test_datasets_torchvision.py,
    and a search reads a root through the same loader, so seven searches would test the same path seven times."""
    dataset = "cifar100"
    root = tmp_path / "data"
    write_layout(dataset, root, official_md5)
    # 100 classes need 2 x 100 validation rows: half of the 400 written
    settings, _ = search(tmp_path, dataset, root, "--labels", "ordinary", "--val-fraction", "0.5")
    assert settings.metric == "val_acc"  # ordinary labels select on the validation accuracy


def test_search_on_image_folder(tmp_path, shared_ray):
    root = tmp_path / "pets"
    image_folder(root, n=20)
    settings, runs = search(tmp_path, "folder", root, "--cache-dir", str(tmp_path / "cache"))
    assert settings.base["labels"] == "complementary"
    assert len(list((tmp_path / "cache" / "folders").glob("*.pt"))) == 1  # decoded once, for every trial


def test_search_on_csv_of_complementary_labels(tmp_path, shared_ray):
    root = tmp_path / "cll"
    csv_folder(root, n=60)
    settings, runs = search(tmp_path, "folder", root, "--labels", "given", "--cache-dir", str(tmp_path / "cache"))
    assert settings.metric == "val_scel_ts" and settings.base["labels"] == "given"
    assert all("test_acc" in r.data.metrics for r in runs)  # test/ holds true labels: reported, not selected on
