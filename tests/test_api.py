"""The Python API (`import mixtune`): the README's example run as the README shows it, cheap import, one-line errors."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

import mixtune
from trainables.core.config import TrainConfig

ROOT = Path(__file__).resolve().parents[1]
HEAVY = ("ray", "optuna", "mlflow", "torch", "pandas")


def readme_example() -> str:
    """The Python block between the README's api-example markers."""
    text = (ROOT / "README.md").read_text()
    block = text.split("<!-- api-example:start -->", 1)[1].split("<!-- api-example:end -->", 1)[0]
    return re.search(r"```python\n(.*?)```", block, re.S).group(1)


def test_import_does_no_work():
    """`import mixtune` in a fresh interpreter loads none of the search or training stack."""
    code = ("import sys, mixtune; print(','.join(sorted({m.split('.')[0] for m in sys.modules} & set(sys.argv[1:]))));"
            "print(','.join(n for n in mixtune.__all__ if not hasattr(mixtune, n)))")
    out = subprocess.run([sys.executable, "-c", code, *HEAVY], capture_output=True, text=True, cwd=ROOT, timeout=120)
    assert out.returncode == 0, out.stderr
    loaded, missing = out.stdout.splitlines()
    assert loaded == "", f"import mixtune loaded {loaded}"
    assert missing == "", f"mixtune.__all__ names what it lacks: {missing}"
    assert {"search", "resume", "load", "compare", "export_best", "fit", "TrainConfig", "MixtuneError"} <= set(
        mixtune.__all__)
    assert mixtune.TrainConfig is TrainConfig  # the core's, not a copy


def one_line_error(call, *args, **kwargs) -> str:
    with pytest.raises(mixtune.MixtuneError) as info:
        call(*args, **kwargs)
    message = str(info.value)
    assert message and "\n" not in message
    assert isinstance(info.value, ValueError)  # like every bad-input error of the layers below
    return message


def test_bad_arguments_are_one_line_errors_before_anything_starts(tmp_path):
    where = dict(results_dir=tmp_path / "results", tracking_uri=f"sqlite:///{tmp_path / 'mlflow.db'}")
    assert one_line_error(mixtune.search, "icm", num_sample=4, **where).startswith(
        "unknown argument num_sample (did you mean num_samples?)")
    assert one_line_error(mixtune.search, "icm", sampler="bogus", **where) == "sampler='bogus' is not one of tpe, gp, random"
    assert one_line_error(mixtune.search, "icm", epochs=-1, **where) == "epochs=-1 must be >= 1"
    assert one_line_error(mixtune.search, "icm", num_samples="4", **where) == "num_samples='4' must be int"
    # the layers' messages name flags; here they name the keyword arguments
    message = one_line_error(mixtune.search, "icm", device="cuda", **where)
    assert "gpus_per_trial > 0" in message and "--" not in message
    assert "bogus" in one_line_error(mixtune.search, "bogus", **where)  # an unknown preset
    assert one_line_error(mixtune.search, "icm", config=3, **where).startswith("config must be a TrainConfig")
    assert one_line_error(mixtune.search, "icm", summary="later", **where) == \
        "summary must be one of 'wait', 'background', not 'later'"
    assert one_line_error(mixtune.fit, epochs=0) == "epochs=0 must be >= 1"
    assert one_line_error(mixtune.compare, tmp_path).startswith(f"no search '{tmp_path}' (looked for mixtune.json")
    assert one_line_error(mixtune.load, "nowhere").startswith("no search 'nowhere'")
    assert one_line_error(mixtune.export_best, tmp_path, tmp_path / "b.yaml", source="disk").startswith("source='disk'")
    # nothing was created for a search that was refused
    assert not (tmp_path / "results").exists() and not (tmp_path / "mlflow.db").exists()
    assert "ray" not in sys.modules or not sys.modules["ray"].is_initialized()


def test_flags_in_messages_become_argument_names():
    from mixtune.errors import as_arguments
    from mixtune.options import argument_names

    names = argument_names()
    assert as_arguments("device=cuda needs --gpus-per-trial > 0", names) == "device=cuda needs gpus_per_trial > 0"
    # a command line to run stays whole; a flag the API does not take stays a flag
    assert as_arguments("choose --trial ID (see mixtune compare --pareto)", names) == \
        "choose trial ID (see mixtune compare --pareto)"
    assert as_arguments("--no-such-flag", names) == "--no-such-flag"


def test_every_search_flag_is_a_keyword_argument():
    """A flag `mixtune search` takes and the API lacks would be the CLI and the API drifting apart."""
    from mixtune.options import search_options
    from tuner.cli import build_parser

    flags = set(vars(build_parser().parse_args(["search"]))) - {"command", "func"}  # TrainConfig's are suppressed
    assert flags - set(search_options()) == {"space", "config", "summary"}  # search()'s own parameters


def test_keyword_arguments_build_the_settings_the_flags_build():
    from mixtune.options import build_settings

    settings = build_settings("icm", {"epochs": 3}, dict(search_seed=3, seed=1, alpha=0.5, num_samples=4, num_cpus=2,
                                                         cpus_per_trial=0.5, warm_start=Path("earlier"), name="n"))
    assert (settings.name, settings.space, settings.num_samples, settings.num_cpus) == ("n", "icm", 4, 2)
    assert settings.seed == 3 and settings.base["seed"] == 1  # search_seed is the sampler's, as --search-seed
    assert settings.base["epochs"] == 3 and settings.base["alpha"] == 0.5
    # values given as arguments are pinned (as flags are); config= is the base the space varies
    assert settings.space_doc == {"preset": "icm", "pinned": {"seed": 1, "alpha": 0.5}}
    assert settings.max_concurrent == 4  # the CLI's default: num_cpus / cpus_per_trial
    assert settings.warm_start == ["earlier"] and settings.warm_start_other_data is False
    assert isinstance(settings.cpus_per_trial, float)


@pytest.mark.slow
def test_readme_example(tmp_path, monkeypatch, capsys, ray_shutdown):
    """The README's example, run as it is written (from a fresh folder), then what it promises."""
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)  # the example's MLflow: sqlite in this folder
    names: dict = {}
    exec(compile(readme_example(), "README.md (Python API)", "exec"), names)
    out = capsys.readouterr().out
    result, trials, best, run, table = (names[k] for k in ("result", "trials", "best", "run", "table"))
    import ray

    assert not ray.is_initialized()  # the search started its own runtime (num_cpus=2) and stopped it

    # quiet: only the example's own prints; the CLI's lines are kept in result.messages
    assert "done, " not in out and "finished:" not in out
    assert any(m.startswith("[4/4 done, 0 running]") for m in result.messages)
    assert any(f"search {result.name} finished: 4 trials (0 failed)" in m for m in result.messages)

    # the trials: one row per trial, best (lowest val_scel_ts) first, the searched values as columns
    assert isinstance(result, mixtune.SearchResult) and result.metric == "val_scel_ts" and result.mode == "min"
    assert len(trials) == 4 and trials["trial_id"].is_unique and trials["run_id"].notna().all()
    assert {"trial_id", "run_name", "run_id", "status", "epochs", "val_scel_ts", "test_acc", "val_acc_est",
            "method", "k", "alpha", "loss", "lr", "error"} <= set(trials.columns)
    assert "hidden" not in trials.columns and "epochs" in trials.columns  # fixed values are not searched
    assert set(trials["status"]) <= {"COMPLETED", "STOPPED_EARLY"} and trials["error"].isna().all()
    assert list(trials["val_scel_ts"]) == sorted(trials["val_scel_ts"])
    assert trials["method"].isin(["icm", "icm_share_labels_in_batch"]).all() and trials["epochs"].max() == 2

    # the best config: a TrainConfig with the fixed values, the best row's searched values, the file's content
    top = trials.iloc[0]
    assert isinstance(best, TrainConfig)
    assert (best.dataset, best.hidden, best.epochs, best.method) == ("digits", 16, 2, top["method"])
    assert (best.k, best.loss) == (top["k"], top["loss"]) and best.alpha == pytest.approx(top["alpha"])
    assert result.best_trial == top["trial_id"]
    assert result.best_metrics["val_scel_ts"] == pytest.approx(top["val_scel_ts"])
    assert TrainConfig.from_yaml(result.folder / "best_config.yaml") == best

    # retrained on the CPU with its seed and thread count, the best config gives the trial's numbers again
    assert [h["epoch"] for h in run.history] == [1, 2] and run.config == best
    assert run.final["val_scel_ts"] == pytest.approx(result.best_metrics["val_scel_ts"], rel=1e-5)

    # compare: the same trials from MLflow, in the same order, with typed searched values
    assert list(table["trial"]) == list(trials["trial_id"]) and list(table["run_id"]) == list(trials["run_id"])
    assert set(table["state"]) <= {"COMPLETED", "STOPPED_EARLY"}
    assert table["k"].tolist() == trials["k"].tolist() and table["val_scel_ts"].tolist() == pytest.approx(
        trials["val_scel_ts"].tolist())

    # the exported file is the best config (from MLflow's params), ready for `mixtune train --config`
    assert TrainConfig.from_yaml(tmp_path / "best.yaml") == best

    # the finished search read back: the same result without Ray; resume leaves it as it is
    again = mixtune.load(result.name)  # by name, under the default results folder
    assert again.best_trial == result.best_trial and again.best_config == best
    assert again.trials.equals(trials)
    resumed = mixtune.resume(result.folder, verbose=True)
    assert resumed.best_trial == result.best_trial
    said = capsys.readouterr().out.strip().splitlines()
    assert len(said) == 1 and said[0].startswith(f"search {result.name} has finished (4 trials, 0 failed)")

    # a bad argument on the finished search: one line naming it
    assert one_line_error(mixtune.compare, result, sort="bogus").startswith("sort 'bogus' is not a metric")
    assert one_line_error(mixtune.export_best, result, "x.yaml", trial="nope").startswith(
        f"search {result.name} has no finished trial 'nope'")
    assert not ray.is_initialized()
