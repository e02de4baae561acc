"""Issue 21: defects a new user meets (items 5-8, 10-12), each checked with real files and the real CLI."""

from __future__ import annotations

import pickle
from types import SimpleNamespace

import optuna
import pytest

from trainables.core.config import TrainConfig
from tuner.cli import build_parser, main
from tuner.settings import SearchSettings
from tuner.search.space import SpaceError, build_space, pinned_values, with_flags
from tuner.search.warmstart import space_distributions


# ----------------------------------------------------------------------------- item 6: flags beside a space
def settings_for(space: str, given: dict, doc=None, **base) -> SearchSettings:
    cfg = TrainConfig(**{**base, **given}).to_dict()
    return SearchSettings(name="pin", space=space, base=cfg, space_doc=with_flags(doc, space, given))


def test_a_flag_fixes_what_the_space_searches():
    settings = settings_for("icm", {"alpha": 0.5, "epochs": 3})
    space = build_space(settings, n_train=1000)
    assert pinned_values(settings) == {"alpha": 0.5}  # epochs is not searched: not pinned
    dists, fixed = space_distributions(space)
    assert "alpha" not in dists and {"k", "loss", "lr"} <= set(dists)
    assert fixed["alpha"] == [0.5]  # every trial runs with the given value
    study = optuna.create_study()
    for _ in range(5):
        t = study.ask()
        assert space(t)["alpha"] == 0.5 and "alpha" not in t.params
        study.tell(t, 0.0)
    assert pickle.loads(pickle.dumps(space))(study.ask())["alpha"] == 0.5  # Ray snapshots the searcher
    again = SearchSettings(**{**settings.__dict__})  # a resume rebuilds it from the saved state
    assert "alpha" not in space_distributions(build_space(again, n_train=1000))[0]


def test_a_flag_steers_a_conditional_space():
    settings = settings_for("all", {"method": "multimix"})
    dists, fixed = space_distributions(build_space(settings, n_train=1000))
    assert fixed["method"] == ["multimix"] and "k" not in dists and "K" in dists


def test_a_yaml_space_is_pinned_too(tmp_path):
    doc = {"params": {"alpha": {"low": 0.2, "high": 2.0}, "lr": {"low": 1e-4, "high": 1e-2, "log": True}},
           "fixed": {"loss": "fwd"}}
    settings = settings_for(str(tmp_path / "s.yaml"), {"lr": 0.003}, doc)
    dists, fixed = space_distributions(build_space(settings, n_train=500))
    assert set(dists) == {"alpha"} and fixed["lr"] == [0.003]
    bad = settings_for(str(tmp_path / "s.yaml"), {"loss": "pc"}, doc)
    with pytest.raises(SpaceError, match=r"^--loss pc contradicts space .*s.yaml, which fixes loss=fwd"):
        build_space(bad, n_train=500)


def test_a_flag_against_the_space_or_leaving_nothing_is_refused():
    with pytest.raises(SpaceError, match=r"^--method mixup contradicts space icm, which searches method among "
                                          r"icm, icm_share_labels_in_batch; pick one of them"):
        build_space(settings_for("icm", {"method": "mixup"}), n_train=1000)
    with pytest.raises(SpaceError, match=r"^--method icm contradicts space multimix, which fixes method=multimix"):
        build_space(settings_for("multimix", {"method": "icm"}), n_train=1000)
    everything = {"method": "icm", "k": 10, "alpha": 0.5, "loss": "fwd", "lr": 1e-3, "weight_decay": 1e-5}
    with pytest.raises(SpaceError, match=r"fix every parameter space icm searches: nothing is left to search"):
        build_space(settings_for("icm", everything), n_train=1000)


def test_cli_pins_flags_and_says_so_in_help(capsys):
    with pytest.raises(SystemExit):
        build_parser().parse_args(["search", "--help"])
    assert "is fixed: the space no longer searches it" in " ".join(capsys.readouterr().out.split())


# ----------------------------------------------------------------------------- item 11: what a stop says
@pytest.mark.slow
def test_interrupt_counts_finished_and_running_apart(tmp_path, ray_shutdown):
    """Tune marks the trials it stops at Ctrl-C TERMINATED; the stop line counts them as running, not finished."""
    import os
    import signal

    import ray
    from ray import tune

    from tuner.report.progress import Progress

    def trainable(config):  # defined here: cloudpickle sends it by value (workers cannot import tests/)
        import time

        from ray import tune

        for epoch in range(1, 30):
            time.sleep(1.5 if config["i"] == 0 else 1.0)
            tune.report({"epoch": epoch, "val_acc": 0.5})
            if config["i"] == 0 and epoch == 2:
                return

    lines: list[str] = []

    def echo(line: str) -> None:
        lines.append(line)
        os.kill(os.getpid(), signal.SIGINT)  # Ctrl-C as the first trial finishes, the other two running

    ray.init(num_cpus=3, include_dashboard=False, log_to_driver=False)
    progress = Progress("val_acc", "max", 5, echo=echo, epochs=29, folder=str(tmp_path))
    tuner = tune.Tuner(trainable, param_space={"i": tune.grid_search([0, 1, 2, 3, 4])},
                       tune_config=tune.TuneConfig(max_concurrent_trials=3),
                       run_config=tune.RunConfig(storage_path=str(tmp_path), callbacks=[progress], verbose=0))
    results = tuner.fit()
    assert len(lines) == 1 and lines[0].startswith("[1/5 done, 2 running]")
    assert results.num_terminated == 3  # what the stop line counted as done before
    assert progress.stop_text() == (" after 1/5 trials finished, 2 running (a resume runs them again from their "
                                    "last checkpoint)")
    from tuner.report.progress import stop_text

    assert stop_text(tmp_path) == progress.stop_text()  # what the driver's stop line reads (tuner/execution/execute.py)
    from tuner.tracking.callback import end_search

    end_search(SimpleNamespace(folder=tmp_path))  # the search's state goes with it
    assert stop_text(tmp_path) is None


# ----------------------------------------------------------------------------- item 7: exported paths
def test_exported_paths_are_absolute(tmp_path, monkeypatch):
    from tuner.report.export import absolute_paths

    data = tmp_path / "work" / "mydigits"
    settings = SearchSettings(name="s", space="icm", base={}, data={"source": {"uri": str(data)}})
    monkeypatch.chdir(tmp_path)  # export-best run from another folder than the search's
    cfg = TrainConfig(dataset="folder", data_dir="mydigits", cache_dir="cache", labels="given")
    out = absolute_paths(cfg, settings)
    assert out.data_dir == str(data)  # where the search found it, not where export-best runs
    assert out.cache_dir == str(tmp_path / "cache")
    assert absolute_paths(out, settings) == out  # absolute paths stay as they are


# ----------------------------------------------------------------------------- item 8: a small validation split
def test_small_validation_split_warns_with_rows_and_advice(tmp_path):
    from tuner.execution.checks import check_search

    def notes(**fields):
        base = TrainConfig(dataset="digits", **fields).to_dict()
        s = SearchSettings(name="v", space="icm", base=base, results_dir=str(tmp_path / "r"),
                           tracking_uri=f"sqlite:///{tmp_path / 'm.db'}")
        return check_search(s).notes

    small = [n for n in notes(train_fraction=0.2) if n.startswith("warning: the validation split")]
    assert small == ["warning: the validation split has only 36 rows (val_fraction=0.1 of 359): too few to tell "
                     "trials apart (one row moves an accuracy by 0.028, and ties are likely); raise --val-fraction "
                     "to 0.28 or more (>= 100 rows)"]
    assert not [n for n in notes(train_fraction=0.2, val_fraction=0.28) if "validation split" in n]
    assert not [n for n in notes() if "validation split" in n]  # 180 rows: no warning
    assert not (tmp_path / "r").exists()  # checks write nothing


def test_selection_metric_has_digits_to_tell_trials_apart():
    from tuner.report.compare import _decimals, _fmt
    from tuner.report.progress import epochs_text
    from tuner.report.selection import with_test

    a, b = with_test({"val_scel_ts": 0.66991}, "val_scel_ts"), with_test({"val_scel_ts": 0.66994}, "val_scel_ts")
    assert a != b and a == "val_scel_ts 0.669910"
    assert _fmt(0.66994, _decimals("val_scel_ts", {"val_scel_ts"})) == "0.669940"
    # item 12: counts are whole numbers, "1 epoch"
    assert _fmt(6.0, _decimals("epoch", {"val_scel_ts"})) == "6"
    assert epochs_text(1) == "after 1 epoch" and epochs_text(3.0) == "after 3 epochs"


# ----------------------------------------------------------------------------- item 12: small things
def test_train_names_test_ece_alike_per_epoch_and_in_its_summary(tmp_path, capsys):
    rc = main(["train", "--dataset", "digits", "--epochs", "1", "--hidden", "16", "--num-threads", "1",
               "--output", str(tmp_path / "out")])
    assert rc == 0
    out = capsys.readouterr().out.splitlines()
    epoch, done = out[0], next(ln for ln in out if ln.startswith("done:"))
    assert " test_ece " in epoch and " ece " not in f" {epoch} "
    assert " test_ece " in done


def test_core_advice_is_given_as_flags(tmp_path, capsys):
    assert main(["train", "--dataset", "clcifar10", "--data-dir", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert "use --labels given" in err and "use labels=given" not in err


def test_help_shows_dashed_flags_and_both_spellings_work(capsys):
    with pytest.raises(SystemExit):
        build_parser().parse_args(["train", "--help"])
    text = capsys.readouterr().out
    assert "--data-dir" in text and "--data_dir" not in text and "--val-fraction" in text
    for spelling in ("--data-dir", "--data_dir"):
        assert vars(build_parser().parse_args(["train", spelling, "x"]))["cfg.data_dir"] == "x"


def test_unknown_space_parameter_lists_the_valid_names(tmp_path, capsys):
    space = tmp_path / "s.yaml"
    space.write_text("params:\n  learnig_rate: {low: 0.001, high: 0.1}\n  lr: {low: 0.001, high: 0.1}\n")
    assert main(["search", "--space", str(space)]) == 2
    err = capsys.readouterr().err.strip()
    assert "\n" not in err and "'learnig_rate' is not a TrainConfig field" in err
    assert "valid names: dataset, data_dir," in err and ", lr, weight_decay," in err


# ----------------------------------------------------------------------------- a real search, as a new user runs it
@pytest.mark.slow
def test_a_search_as_a_new_user_meets_it(tmp_path, monkeypatch, capfd, shared_ray):
    """Items 6, 7, 8 and 12 end to end: a pinned flag, a small validation split, compare, export-best."""
    import json

    import numpy as np
    import yaml
    from sklearn.datasets import load_digits

    work = tmp_path / "work"
    work.mkdir()
    x, y = load_digits(return_X_y=True)
    np.savez(work / "mydigits.npz", x_train=(x[:400] * 16).astype(np.uint8).reshape(-1, 8, 8), y_train=y[:400],
             x_test=(x[1500:] * 16).astype(np.uint8).reshape(-1, 8, 8), y_test=y[1500:])
    monkeypatch.chdir(work)  # the data as a user names it: relative to where the search runs
    argv = ["search", "--space", "icm", "--alpha", "0.5", "--dataset", "npz", "--data-dir", "mydigits.npz",
            "--num-samples", "2", "--epochs", "1", "--hidden", "16", "--num-threads", "1", "--num-cpus", "2",
            "--name", "newuser", "--results-dir", "results", "--tracking-uri", f"sqlite:///{work / 'mlflow.db'}"]
    assert main(argv) == 0
    out = capfd.readouterr().out
    assert "fixed by your flags: alpha=0.5 (space icm searches it; your value holds in every trial)" in out
    assert "warning: the validation split has only 40 rows (val_fraction=0.1 of 400)" in out
    assert "after 1 epoch " in out and "after 1 epochs" not in out
    folder = work / "results" / "newuser"
    configs = [json.loads(p.read_text()) for p in folder.glob("trial_*/params.json")]
    assert len(configs) == 2 and all(c["alpha"] == 0.5 for c in configs)  # the flag held in every trial
    state = SearchSettings.load(folder)
    assert state.space_doc == {"preset": "icm", "pinned": {"alpha": 0.5}}  # a resume pins it again

    assert main(["compare", str(folder)]) == 0
    table = capfd.readouterr().out.splitlines()
    epoch_col = table[0].split().index("epoch")
    assert [row.split()[epoch_col] for row in table[2:4]] == ["1", "1"]  # not 1.0000

    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)
    assert main(["export-best", str(folder), "-o", "best.yaml"]) == 0
    said = capfd.readouterr().out
    import re

    (best,) = re.findall(r"\(best trial (\S+) from MLflow", said)  # it says which trial it wrote
    exported = yaml.safe_load((elsewhere / "best.yaml").read_text())
    trial = json.loads((folder / f"trial_{best}" / "params.json").read_text())
    assert (exported["k"], exported["lr"], exported["loss"]) == (trial["k"], trial["lr"], trial["loss"])
    assert exported["data_dir"] == str(work / "mydigits.npz") and exported["alpha"] == 0.5
    assert main(["train", "--config", "best.yaml", "--epochs", "1", "--quiet", "--output", "retrain"]) == 0
    capfd.readouterr()

    assert main(["export-best", str(folder), "--trial", "zzz", "-o", "x.yaml"]) == 2
    got = capfd.readouterr()
    assert got.out == "" and got.err.count("\n") == 1  # the error first, and nothing else
    assert got.err.startswith("mixtune: error: search newuser has no finished trial 'zzz' (its trials: ")
    assert not (elsewhere / "x.yaml").exists()


# ----------------------------------------------------------------------------- item 13: the README's one-machine cluster
def test_readme_has_a_one_machine_cluster_recipe_that_stops_only_its_own_processes():
    import re
    import subprocess
    from pathlib import Path

    readme = (Path(__file__).resolve().parents[1] / "README.md").read_text()
    part = readme[readme.index("**A cluster on one machine.**"):]
    block = re.search(r"```bash\n(.*?)```", part, re.S).group(1)
    assert subprocess.run(["bash", "-n"], input=block, text=True).returncode == 0  # valid bash
    starts = [ln for ln in block.splitlines() if "ray start --block" in ln]
    assert len(starts) == 2 and all(ln.startswith("setsid ") for ln in starts)  # a session per node
    assert "--head" in starts[0] and "--address 127.0.0.1:6390" in starts[1]
    assert "mixtune search --address 127.0.0.1:6390" in block
    assert "pkill -TERM -s" in block and "pkill -KILL -s" in block  # by session: nothing else is touched
    commands = [ln.split("#")[0] for ln in block.splitlines()]
    assert not [c for c in commands if re.search(r"\bray stop\b", c)]  # which would stop every Ray runtime
