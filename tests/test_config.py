import pytest
import yaml

from trainables.core.config import METHODS, ConfigError, TrainConfig


def test_defaults_are_valid_and_roundtrip_yaml(tmp_path):
    cfg = TrainConfig(method="icm", k=7, alpha=0.5)
    path = cfg.to_yaml(tmp_path / "c.yaml")
    assert TrainConfig.from_yaml(path) == cfg
    assert yaml.safe_load(path.read_text())["k"] == 7


def test_ints_become_floats_and_integral_floats_ints():
    cfg = TrainConfig.from_dict({"alpha": 1, "k": 5.0})
    assert isinstance(cfg.alpha, float) and cfg.alpha == 1.0
    assert isinstance(cfg.k, int) and cfg.k == 5


@pytest.mark.parametrize(
    "values, needle",
    [
        ({"k": 0}, "k=0"),
        ({"K": 0}, "K=0"),
        ({"alpha": 0.0}, "alpha"),
        ({"alpha": -1.0}, "alpha"),
        ({"alpha": float("nan")}, "alpha"),
        ({"contrastive_weight": 1.5}, "contrastive_weight"),
        ({"contrastive_balance": -0.1}, "contrastive_balance"),
        ({"method": "cutout"}, "method='cutout'"),
        ({"dataset": "imagenet"}, "dataset"),
        ({"loss": "ce"}, "does not apply to labels=complementary"),
        ({"labels": "ordinary", "loss": "scl_nl"}, "does not apply"),
        ({"K": 3, "method": "mixup"}, "Multi-Mix"),
        ({"lr": 0.0}, "lr"),
        ({"epochs": 0}, "epochs"),
        ({"k": "ten"}, "must be of type int"),
        ({"augment": "yes"}, "must be of type bool"),
        ({"k": 2.5}, "must be of type int"),
        ({"cl_noise": 1.0}, "cl_noise"),
        ({"num_cl": 3}, "cl_type=multiple"),
        ({"dataset": "mnist"}, "data_dir"),
        ({"device": "tpu"}, "device"),
        ({"method": "infinite_class", "mix_level": "cutmix"}, "mixes inputs only"),
    ],
)
def test_bad_values_raise_one_line_naming_the_field(values, needle):
    with pytest.raises(ConfigError) as e:
        TrainConfig.from_dict(values)
    msg = str(e.value)
    assert needle in msg and "\n" not in msg


def test_unknown_keys_are_named(tmp_path):
    with pytest.raises(ConfigError, match="unknown key.*bogus"):
        TrainConfig.from_dict({"bogus": 1, "k": 3})


def test_malformed_yaml_and_missing_file(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("k: [1, 2\nalpha: 1\n")
    with pytest.raises(ConfigError, match="malformed YAML"):
        TrainConfig.from_yaml(bad)
    with pytest.raises(ConfigError, match="cannot read config"):
        TrainConfig.from_yaml(tmp_path / "missing.yaml")
    notmap = tmp_path / "list.yaml"
    notmap.write_text("- 1\n- 2\n")
    with pytest.raises(ConfigError, match="expected a mapping"):
        TrainConfig.from_yaml(notmap)


def test_yaml_tags_are_not_executed(tmp_path):
    evil = tmp_path / "evil.yaml"
    evil.write_text("k: !!python/object/apply:os.system ['echo hacked']\n")
    with pytest.raises(ConfigError, match="malformed YAML"):
        TrainConfig.from_yaml(evil)


def test_every_method_is_constructible():
    for m, spec in METHODS.items():
        cfg = TrainConfig(method=m, K=3 if spec.multi else 1)
        assert cfg.method_spec is spec


def test_written_configs_are_readable_by_others_but_search_state_is_private(tmp_path):
    import os
    import stat

    from trainables.core.files import write_text_atomic

    old = os.umask(0o022)
    try:
        shared = TrainConfig().to_yaml(tmp_path / "c.yaml")
        private = write_text_atomic(tmp_path / "s.json", "{}", private=True)
    finally:
        os.umask(old)
    assert stat.S_IMODE(shared.stat().st_mode) == 0o644
    assert stat.S_IMODE(private.stat().st_mode) == 0o600
