"""Warm-start planning against real files: an earlier search's state and sqlite study, exported configs."""

from __future__ import annotations

import optuna
import pytest

from search_spaces.presets import SpaceContext, get_preset
from trainables.core.config import TrainConfig
from tuner.settings import SearchError, SearchSettings
from tuner.search.warmstart import FROM_BASE, WARM_TAG, apply, plan, space_distributions


def earlier_search(root, name="old", preset="icm", n=5, metric="val_scel_ts", mode="min"):
    """A finished search's folder: mixtune.json and an Optuna study of n COMPLETE trials of the preset."""
    s = SearchSettings(name=name, space=preset, base=TrainConfig().to_dict(), metric=metric, mode=mode,
                       results_dir=str(root))
    s.folder.mkdir(parents=True)
    s.save()
    study = optuna.create_study(study_name=s.study_name, storage=s.study_storage,
                                sampler=optuna.samplers.RandomSampler(seed=1))
    space = get_preset(preset, SpaceContext(max_k=200))
    for i in range(n):
        t = study.ask()
        space(t)
        study.tell(t, 2.0 + i / 10)
    return s, study


def new_settings(root, preset="icm", metric="val_scel_ts", mode="min"):
    return SearchSettings(name="new", space=preset, base=TrainConfig().to_dict(), metric=metric, mode=mode,
                          results_dir=str(root)), get_preset(preset, SpaceContext(max_k=200))


def test_space_distributions_cover_every_branch():
    dists, fixed = space_distributions(get_preset("all", SpaceContext(max_k=200)))
    assert fixed == {}  # `all` suggests the method
    icm_dists, icm_fixed = space_distributions(get_preset("icm", SpaceContext(max_k=200)))
    assert icm_dists["method"].choices == ("icm", "icm_share_labels_in_batch")  # icm: the variant
    # the authors' label sharing lets an anchor draw itself; ICM leaves self pairing to the base config
    assert icm_fixed == {"self_pairing": [True, FROM_BASE]}
    assert {"method", "alpha", "k", "K", "mix_level", "contrastive_weight", "loss", "lr", "weight_decay"} <= set(dists)


def test_prior_trials_enter_the_new_study(tmp_path):
    old, study = earlier_search(tmp_path)
    settings, space = new_settings(tmp_path)
    warm = plan(["old"], settings, space)  # by name under the results folder
    assert len(warm.prior) == 5 and not warm.points
    assert "5 finished trials of old added" in warm.notes[-1]
    settings.folder.mkdir()
    apply(warm, settings)
    new = optuna.load_study(study_name=settings.study_name, storage=settings.study_storage)
    assert [t.params for t in new.trials] == [t.params for t in study.trials]
    assert [t.value for t in new.trials] == [t.value for t in study.trials]
    assert all(t.user_attrs[WARM_TAG].startswith("old#") for t in new.trials)


def test_spaces_that_do_not_share_parameters(tmp_path):
    earlier_search(tmp_path, preset="multimix")  # K, mix_level: not in icm's space
    settings, space = new_settings(tmp_path, preset="icm")
    with pytest.raises(SearchError, match=r"--warm-start old: the spaces do not share K=.*mix_level=.*"
                                          r"use --warm-start-partial"):
        plan(["old"], settings, space)
    warm = plan(["old"], settings, space, partial=True)
    assert len(warm.prior) == 5 and all(set(t.params) == {"alpha", "loss", "lr", "weight_decay"} for t in warm.prior)
    assert any("dropped K, mix_level" in n for n in warm.notes)


def test_other_metric_is_refused(tmp_path):
    earlier_search(tmp_path, metric="val_acc_est", mode="max")
    settings, space = new_settings(tmp_path)
    with pytest.raises(SearchError, match="selected on val_acc_est .max.; this search selects on val_scel_ts"):
        plan(["old"], settings, space)


def test_exported_configs_are_evaluated_first(tmp_path):
    settings, space = new_settings(tmp_path)
    good = TrainConfig(method="icm", k=17, alpha=0.5, loss="fwd", lr=3e-3, weight_decay=1e-5, num_threads=1)
    good.to_yaml(tmp_path / "best.yaml")
    warm = plan([str(tmp_path / "best.yaml")], settings, space)
    assert warm.points == [{"method": "icm", "k": 17, "alpha": 0.5, "loss": "fwd", "lr": 3e-3, "weight_decay": 1e-5}]
    other = good.replace(hidden=64, k=5000)  # a fixed field the space cannot vary, a k outside its range
    other.to_yaml(tmp_path / "other.yaml")
    with pytest.raises(SearchError, match=r"the spaces do not share hidden=64, k=5000 \(outside the new range\)"):
        plan([str(tmp_path / "other.yaml")], settings, space)
    warm = plan([str(tmp_path / "other.yaml")], settings, space, partial=True)
    assert "k" not in warm.points[0] and warm.points[0]["loss"] == "fwd"
    with pytest.raises(SearchError, match="no such config file"):
        plan([str(tmp_path / "nope.yaml")], settings, space)


def checked_data(**fields) -> tuple[dict, dict]:
    """(describe_data's record, the config's dict) of real data, as check_search fills them in."""
    from tests.conftest import MNIST_DIR
    from trainables.core.data import load_dataset
    from trainables.core.split import split_and_label
    from tuner.tracking.mlflow_meta import describe_data

    if fields.get("dataset") == "mnist":
        fields.setdefault("data_dir", str(MNIST_DIR))
    cfg = TrainConfig(**fields)
    data = load_dataset(cfg)
    split = split_and_label(cfg, data)
    return describe_data(cfg, data, len(split.train_index), len(split.val_index)), cfg.to_dict()


def test_earlier_search_on_other_data_is_refused(tmp_path):
    """Issue 21 item 5: a digits search's values are no priors for an MNIST search (or another label draw)."""
    old, _ = earlier_search(tmp_path)
    old.data, old.base = checked_data(dataset="digits")
    old.save()
    settings, space = new_settings(tmp_path)
    settings.data, settings.base = checked_data(dataset="digits")
    assert len(plan(["old"], settings, space).prior) == 5  # the same data: accepted, no note about data
    settings.data, settings.base = checked_data(dataset="mnist")
    with pytest.raises(SearchError, match=r"^--warm-start old: old ran on other data \(digits vs mnist; digest "
                                          r"[0-9a-f]{10} vs [0-9a-f]{10}\): .* give --warm-start-other-data"):
        plan(["old"], settings, space)
    settings.data, settings.base = checked_data(dataset="digits", data_seed=7)  # same arrays, another split
    with pytest.raises(SearchError, match=r"other data \(data_seed=0 vs 7; digest"):
        plan(["old"], settings, space)
    settings.warm_start_other_data = True  # what `--warm-start-other-data` sets
    warm = plan(["old"], settings, space)
    assert len(warm.prior) == 5 and any("used anyway (--warm-start-other-data)" in n for n in warm.notes)


def test_warm_start_other_data_flag_in_help(capsys):
    from tuner.cli import build_parser

    with pytest.raises(SystemExit):
        build_parser().parse_args(["search", "--help"])
    assert "--warm-start-other-data" in capsys.readouterr().out
    args = build_parser().parse_args(["search", "--warm-start", "old", "--warm-start-other-data"])
    assert args.warm_start_other_data is True


def test_pruned_trials_stay_pruned_with_their_epochs(tmp_path):
    """A trial ASHA stopped enters the new study PRUNED, with its value per epoch (TPE ranks it below
    every finished trial), not as a finished trial of its 2-epoch value."""
    old, study = earlier_search(tmp_path, n=3)
    t = study.ask()
    get_preset("icm", SpaceContext(max_k=200))(t)
    t.report(2.30, 1)
    t.report(2.25, 2)
    study.tell(t, state=optuna.trial.TrialState.PRUNED)
    settings, space = new_settings(tmp_path)
    warm = plan(["old"], settings, space)
    settings.folder.mkdir()
    apply(warm, settings)
    new = optuna.load_study(study_name=settings.study_name, storage=settings.study_storage)
    assert [t.state.name for t in new.trials] == ["COMPLETE"] * 3 + ["PRUNED"]
    pruned = new.trials[-1]
    assert pruned.intermediate_values == {1: 2.30, 2: 2.25} and pruned.value == pytest.approx(2.25)
