"""Issue 21: defects a new user meets (items 5-8, 10-12), each checked with real files and the real CLI."""

from __future__ import annotations

import pickle

import optuna
import pytest

from trainables.core.config import TrainConfig
from tuner.cli import build_parser, main
from tuner.settings import SearchSettings
from tuner.space import SpaceError, build_space, pinned_values, with_flags
from tuner.warmstart import space_distributions


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
    with pytest.raises(SpaceError, match=r"^--method mixup contradicts space icm, which fixes method=icm"):
        build_space(settings_for("icm", {"method": "mixup"}), n_train=1000)
    everything = {"k": 10, "alpha": 0.5, "loss": "fwd", "lr": 1e-3, "weight_decay": 1e-5}
    with pytest.raises(SpaceError, match=r"fix every parameter space icm searches: nothing is left to search"):
        build_space(settings_for("icm", everything), n_train=1000)


def test_cli_pins_flags_and_says_so_in_help(capsys):
    with pytest.raises(SystemExit):
        build_parser().parse_args(["search", "--help"])
    assert "is fixed: the space no longer searches it" in " ".join(capsys.readouterr().out.split())
