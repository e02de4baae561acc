"""The search's record in Optuna and the search-quality benchmark's own rules.

* A trial ASHA stopped is PRUNED in the study, with its value at every epoch it ran (the last
  one included) and that last value as its own; a trial that ran every epoch is COMPLETE with
  every epoch's value; each Optuna trial names its Ray trial; the objective is named.
* Start-up trials are sized to the budget unless given.
* The benchmark selects the way mixtune does, from validation values only: permuting the test
  accuracies among trials changes no strategy's selection.
"""

from __future__ import annotations

import importlib.util
import json
import random
import sys
from pathlib import Path

import optuna
import pytest

from tuner.cli import main
from tuner.settings import SearchSettings, startup_for

ROOT = Path(__file__).resolve().parents[1]


def load_bench():
    spec = importlib.util.spec_from_file_location("bench_search_quality", ROOT / "bench" / "search_quality.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


def test_startup_trials_sized_to_the_budget():
    assert [startup_for(n) for n in (1, 8, 16, 32, 40, 64, 500)] == [3, 3, 4, 8, 10, 10, 10]
    s = SearchSettings(name="x", space="icm", base={"epochs": 5}, num_samples=16)
    assert s.n_startup == 4
    s.startup_trials = 0  # given: taken as it is
    assert s.n_startup == 0


def test_sampler_uses_the_sized_startup(tmp_path):
    from tuner.search.searcher import make_sampler

    s = SearchSettings(name="x", space="icm", base={"epochs": 5}, num_samples=16, results_dir=str(tmp_path))
    tpe = make_sampler(s)
    assert isinstance(tpe, optuna.samplers.TPESampler) and tpe._n_startup_trials == 4 and tpe._constant_liar
    s.sampler, s.startup_trials = "gp", 6
    assert isinstance(make_sampler(s), optuna.samplers.GPSampler)
    s.sampler = "random"
    assert isinstance(make_sampler(s), optuna.samplers.RandomSampler)


def test_bad_sampler_or_scheduler_is_one_line(tmp_path, capsys):
    base = ["search", "--results-dir", str(tmp_path), "--tracking-uri", f"sqlite:///{tmp_path / 'm.db'}"]
    assert main([*base, "--startup-trials", "-1"]) != 0
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "startup_trials=-1" in err[0]
    assert not list(tmp_path.glob("*/mixtune.json"))  # nothing created


@pytest.mark.slow
def test_stopped_trials_are_pruned_with_every_epoch(tmp_path, shared_ray):
    name, epochs = "pruned", 4
    argv = ["search", "--space", "icm", "--num-samples", "6", "--max-concurrent", "2", "--epochs", str(epochs),
            "--hidden", "16", "--num-cpus", "2", "--grace-period", "1", "--reduction-factor", "2",
            "--results-dir", str(tmp_path / "results"), "--tracking-uri", f"sqlite:///{tmp_path / 'mlflow.db'}",
            "--experiment", "test-pruned", "--name", name]
    assert main(argv) == 0
    settings = SearchSettings.load(tmp_path / "results" / name)
    study = optuna.load_study(study_name=settings.study_name, storage=settings.study_storage)
    assert study.metric_names == [settings.metric]
    states = set()
    for trial in study.trials:
        ray_id = trial.user_attrs["ray_trial_id"]
        lines = (settings.folder / f"trial_{ray_id}" / "result.json").read_text().splitlines()
        ran = {int(r["epoch"]): r[settings.metric] for r in map(json.loads, lines)}
        last = max(ran)
        assert trial.intermediate_values == pytest.approx(ran)  # every epoch, the last one included
        if last < epochs:
            assert trial.state == optuna.trial.TrialState.PRUNED
        else:
            assert trial.state == optuna.trial.TrialState.COMPLETE
        assert trial.value == pytest.approx(ran[last])
        states.add(trial.state)
    # grace 1, factor 2: ASHA stops some of 6 trials and lets the best run on
    assert states == {optuna.trial.TrialState.PRUNED, optuna.trial.TrialState.COMPLETE}


def synthetic_record(seed: int, n: int = 12, epochs: int = 6) -> dict:
    rng = random.Random(seed)
    trials = []
    for i in range(n):
        level = rng.uniform(1.5, 2.3)
        val = [2.3 - (2.3 - level) * (e + 1) / epochs for e in range(epochs)]
        trials.append({"id": f"t{i}", "config": {}, "end": i, "val": val,
                       "test": [rng.uniform(0.1, 0.9) for _ in range(epochs)]})
    return {"strategy": "pool", "dataset": "d", "space": "s", "seed": seed, "trials": trials,
            "metric": "val_scel_ts", "mode": "min", "epochs": epochs, "wall": 0.0, "num_samples": n}


def selected_ids(bench, record: dict) -> list:
    out = []
    for strategy in ("random_noes", "random_asha"):
        trials = bench.trials_of(strategy, record)
        for k in range(1, len(trials) + 1):
            chosen = bench.select(trials[:k], record["metric"], record["mode"], record["epochs"])
            out.append(chosen["id"])
    return out


def test_no_strategy_selection_reads_test_accuracy():
    bench = load_bench()
    record = synthetic_record(0)
    before = selected_ids(bench, record)
    permuted = json.loads(json.dumps(record))
    tests = [t["test"] for t in permuted["trials"]]
    random.Random(1).shuffle(tests)
    for t, acc in zip(permuted["trials"], tests):
        t["test"] = acc
    assert selected_ids(bench, permuted) == before
    # and the selection is the validation metric's best among the trials that ran every epoch
    trials = bench.trials_of("random_asha", record)
    chosen = bench.select(trials, "val_scel_ts", "min", 6)
    full = [t for t in trials if t["epochs"] == 6]
    assert chosen["id"] == min(full, key=lambda t: t["val"][-1])["id"]
    assert any(t["epochs"] < 6 for t in trials)  # ASHA's replay did stop some


def test_anytime_counts_trial_epochs():
    bench = load_bench()
    record = synthetic_record(3, n=10, epochs=20)
    points = bench.anytime(bench.trials_of("random_noes", record), "val_scel_ts", "min", 20, budgets=(40, 100, 200, 400))
    assert [p and p["trials"] for p in points] == [2, 5, 10, None]  # 400 is past the 10 trials' 200
    assert all(p["best_run"] >= p["selected"] for p in points if p)
