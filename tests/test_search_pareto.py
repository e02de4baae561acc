"""Multi-objective searches (a Pareto front) and warm-started searches, end to end.

Real Ray runtime, real sqlite MLflow and Optuna stores; digits.
"""

from __future__ import annotations

import json

import optuna
import pytest
import yaml
from fault_tools import summary_sender, wait_for_exit
from mlflow.tracking import MlflowClient

from trainables.core.config import TrainConfig
from tuner.cli import main
from tuner.report.pareto import dominates
from tuner.settings import SearchSettings
from tuner.search.warmstart import WARM_TAG

pytestmark = pytest.mark.slow

EPOCHS = 3


def search(tmp_path, name, *extra):
    argv = ["search", "--num-samples", "6", "--epochs", str(EPOCHS), "--hidden", "32", "--num-cpus", "2",
            "--grace-period", "1", "--reduction-factor", "2", "--results-dir", str(tmp_path / "results"),
            "--tracking-uri", f"sqlite:///{tmp_path / 'mlflow.db'}", "--experiment", "pareto", "--name", name,
            *extra]
    assert main(argv) == 0
    return SearchSettings.load(tmp_path / "results" / name)


def trial_runs(tmp_path, settings):
    client = MlflowClient(f"sqlite:///{tmp_path / 'mlflow.db'}")
    return client, client.search_runs(
        [settings.experiment_id],
        filter_string=f"tags.`mixtune.search` = '{settings.name}' and tags.`mixtune.role` = 'trial'")


def test_two_metric_search_front_compare_and_export(tmp_path, capsys, shared_ray):
    # the summary sent in the background (the CLI's default): rebuilt from Ray's results, front and all
    settings = search(tmp_path, "front", "--space", "multimix", "--labels", "ordinary",
                      "--metric", "val_acc,val_ece", "--summary", "background")
    out = capsys.readouterr().out
    wait_for_exit(summary_sender(out))
    assert settings.metric == "val_acc,val_ece" and settings.mode == "max,min"
    assert "ASHA stops trials on val_acc alone" in out
    assert "selects on the Pareto front of val_acc (max) and val_ece (min)" in out
    assert "Pareto front (" in out and "best config:" not in out

    # the summary's front, checked against the trials' own final values in MLflow
    client, runs = trial_runs(tmp_path, settings)
    full = {r.data.tags["mixtune.trial_id"]: (r.data.metrics["val_acc"], -r.data.metrics["val_ece"])
            for r in runs if r.info.status == "FINISHED" and r.data.metrics.get("epoch") == EPOCHS}
    assert full, "no trial ran every epoch"
    front = json.loads((settings.folder / "pareto_front.json").read_text())
    on = {m["trial_id"] for m in front}
    assert on and on <= set(full)
    for t in on:  # no trial on the front is dominated
        assert not any(dominates(full[o], full[t]) for o in full), t
    for t in set(full) - on:  # every trial off it is dominated
        assert any(dominates(full[o], full[t]) for o in full), t
    for m in front:
        assert (m["metrics"]["val_acc"], -m["metrics"]["val_ece"]) == pytest.approx(full[m["trial_id"]])

    (parent,) = client.search_runs([settings.experiment_id],
                                   filter_string="tags.`mixtune.search` = 'front' and tags.`mixtune.role` = 'search'")
    assert parent.info.status == "FINISHED" and parent.data.metrics["pareto_front_size"] == len(on)
    assert "plots/pareto_front.png" in {a.path for a in client.list_artifacts(parent.info.run_id, "plots")}
    assert set(parent.data.tags["pareto_front"].split(",")) == on

    assert main(["compare", str(settings.folder), "--pareto"]) == 0
    table = capsys.readouterr().out
    shown = {line.split()[0] for line in table.splitlines()[2:] if line and not line.startswith(("Open", " "))
             and line.split()[0] in full}
    assert shown == on and f"of {len(on)} Pareto-front trials" in table

    # export-best refuses to guess; a trial or a rule says which
    best = tmp_path / "best.yaml"
    assert main(["export-best", str(settings.folder), "-o", str(best)]) == 2
    assert "has no single best trial; choose one with --trial ID" in capsys.readouterr().err
    assert not best.exists()
    assert main(["export-best", str(settings.folder), "-o", str(best), "--within", "1.0"]) == 0
    chosen = max(front, key=lambda m: m["metrics"]["val_acc"])  # within 1.0: the whole front
    cfg = TrainConfig.from_yaml(best)
    assert all(getattr(cfg, k) == pytest.approx(v) for k, v in chosen["config"].items())
    some = sorted(full)[0]
    assert main(["export-best", str(settings.folder), "-o", str(best), "--trial", some]) == 0
    run = next(r for r in runs if r.data.tags["mixtune.trial_id"] == some)
    assert TrainConfig.from_yaml(best).lr == pytest.approx(float(run.data.params["lr"]))


def test_warm_start_from_a_search_and_an_exported_config(tmp_path, capsys, shared_ray):
    first = search(tmp_path, "first", "--space", "icm")
    best = tmp_path / "best.yaml"
    assert main(["export-best", str(first.folder), "-o", str(best)]) == 0
    capsys.readouterr()
    second = search(tmp_path, "second", "--space", "icm", "--num-samples", "3", "--warm-start", "first", str(best))
    out = capsys.readouterr().out
    assert "warm start: 6 finished trials of first added to the study as prior observations" in out
    assert "warm start: best.yaml is evaluated first" in out
    assert second.warm_start == ["first", str(best)]

    earlier = optuna.load_study(study_name=first.study_name, storage=first.study_storage)
    study = optuna.load_study(study_name=second.study_name, storage=second.study_storage)
    prior = [t for t in study.trials if WARM_TAG in t.user_attrs]
    finished = (optuna.trial.TrialState.COMPLETE, optuna.trial.TrialState.PRUNED)  # PRUNED: ASHA stopped it
    done_before = [t for t in earlier.trials if t.state in finished]
    assert len(prior) == len(done_before) == 6
    assert sorted(t.params["lr"] for t in prior) == sorted(t.params["lr"] for t in done_before)
    assert sorted(t.state.name for t in prior) == sorted(t.state.name for t in done_before)
    own = [t for t in study.trials if WARM_TAG not in t.user_attrs]
    assert len(own) == 3
    exported = yaml.safe_load(best.read_text())
    first_own = min(own, key=lambda t: t.number)
    for name in ("k", "alpha", "loss", "lr", "weight_decay"):  # the exported config ran first
        assert first_own.params[name] == pytest.approx(exported[name])
    _, runs = trial_runs(tmp_path, second)
    assert len(runs) == 3  # Ray ran only the new search's own trials
