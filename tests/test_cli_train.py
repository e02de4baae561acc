import csv
import json

import pytest
import yaml

from trainables.core.config import TrainConfig
from tuner.cli import main


def test_train_writes_resolved_config_and_results(tmp_path, capsys):
    out = tmp_path / "run"
    rc = main(["train", "--dataset", "digits", "--method", "icm", "--labels", "complementary",
               "--epochs", "3", "--k", "12", "--hidden", "64", "--num-threads", "1", "--output", str(out)])
    assert rc == 0
    printed = capsys.readouterr().out
    assert printed.count("epoch ") == 3 and "done: icm on digits" in printed
    cfg = TrainConfig.from_yaml(out / "config.yaml")
    assert (cfg.method, cfg.k, cfg.epochs) == ("icm", 12, 3)
    rows = list(csv.DictReader((out / "metrics.csv").open()))
    assert [int(r["epoch"]) for r in rows] == [1, 2, 3]
    summary = json.loads((out / "summary.json").read_text())
    assert summary["final"]["epoch"] == 3 and (out / "model.pt").exists()


def test_config_file_then_flags_override(tmp_path):
    src = tmp_path / "c.yaml"
    src.write_text(yaml.safe_dump({"method": "multimix", "K": 3, "epochs": 2, "hidden": 32}))
    out = tmp_path / "run"
    assert main(["train", "--config", str(src), "--K", "2", "--quiet", "--output", str(out)]) == 0
    cfg = TrainConfig.from_yaml(out / "config.yaml")
    assert (cfg.method, cfg.K, cfg.epochs) == ("multimix", 2, 2)


@pytest.mark.parametrize(
    "argv, needle",
    [
        (["--k", "0", "--method", "icm"], "k=0 must be >= 1"),
        (["--alpha", "-1"], "alpha=-1.0"),
        (["--method", "bogus"], "method='bogus'"),
        (["--dataset", "mnist", "--data-dir", "/nonexistent"], "/nonexistent"),
    ],
)
def test_bad_values_exit_2_with_one_line(tmp_path, capsys, argv, needle):
    out = tmp_path / "run"
    rc = main(["train", *argv, "--epochs", "1", "--output", str(out)])
    err = capsys.readouterr().err.strip()
    assert rc == 2
    assert err.startswith("mixtune: error:") and needle in err and "\n" not in err
    assert not out.exists()


def test_diverging_training_is_one_line_exit_1(tmp_path, capsys):
    rc = main(["train", "--lr", "1e30", "--optimizer", "sgd", "--loss", "ure_ga", "--epochs", "1",
               "--output", str(tmp_path / "run")])
    err = capsys.readouterr().err.strip()
    assert rc == 1 and err.startswith("mixtune: error: training diverged") and "\n" not in err
