import pickle

import optuna
import pytest
import yaml

from search_spaces.presets import PRESETS, SpaceContext, get_preset
from search_spaces.yaml_space import SpaceError, space_from_dict
from trainables.core.config import TrainConfig
from tuner.settings import SearchSettings
from tuner.search.space import build_space, dry_run, load_space_file

FIELDS = TrainConfig.__dataclass_fields__


def sample(space, n=60, seed=0):
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=seed))
    out = []
    for _ in range(n):
        t = study.ask()
        fixed = space(t)
        out.append({**t.params, **fixed})
        study.tell(t, 0.0)
    return out


@pytest.mark.parametrize("name", list(PRESETS))
@pytest.mark.parametrize("labels", ["ordinary", "complementary"])
def test_presets_give_valid_configs(name, labels):
    space = get_preset(name, SpaceContext(labels=labels, max_k=200))
    for point in sample(space):
        cfg = TrainConfig.from_dict({"labels": labels, **point})
        assert 0.2 <= cfg.alpha <= 2.0 or cfg.method == "none"
        assert 2 <= cfg.k <= 200 and 1 <= cfg.K <= 10
    assert pickle.loads(pickle.dumps(space))  # Ray snapshots the searcher with pickle


def test_all_preset_is_conditional_per_method():
    points = sample(get_preset("all", SpaceContext(max_k=100)), n=150)
    methods = {p["method"] for p in points}
    assert {"none", "mixup", "icm", "multimix", "infinite_class"} <= methods
    for p in points:
        assert ("k" in p) == (p["method"] in ("icm", "icm_multimix"))
        assert ("K" in p) == (p["method"] in ("multimix", "icm_multimix"))
        assert ("contrastive_weight" in p) == (p["method"] == "infinite_class")
        assert ("alpha" in p) == (p["method"] != "none")
        assert isinstance(p.get("k", 1), int) and isinstance(p.get("K", 1), int)


def test_preset_ranges_and_integer_k_capped_by_training_set():
    points = sample(get_preset("icm", SpaceContext(max_k=30)), n=100)
    assert max(p["k"] for p in points) <= 30
    assert all(p["loss"] in ("scl_nl", "scl_exp", "fwd", "ure_ga", "ure_tnn", "pc") for p in points)


def test_unknown_preset():
    with pytest.raises(ValueError, match="unknown search space preset 'nope'; valid: icm"):
        get_preset("nope", SpaceContext())


GOOD = {
    "params": {
        "method": {"choices": ["mixup", "icm"]},
        "alpha": {"low": 0.2, "high": 2.0, "log": True},
        "k": {"low": 2, "high": 50, "log": True, "when": {"method": "icm"}},
    },
    "fixed": {"loss": "scl_nl", "epochs": 3},
}


def test_yaml_space_roundtrip_and_conditions(tmp_path):
    path = tmp_path / "s.yaml"
    path.write_text(yaml.safe_dump(GOOD, sort_keys=False))
    _, space = load_space_file(path)
    points = sample(pickle.loads(pickle.dumps(space)))
    assert all(("k" in p) == (p["method"] == "icm") for p in points)
    assert all(p["loss"] == "scl_nl" and p["epochs"] == 3 for p in points)
    assert all(isinstance(p.get("k", 2), int) for p in points)


@pytest.mark.parametrize(
    "doc, needle",
    [
        ({"params": {"alpha": {"low": 2.0, "high": 1.0}}}, "empty range"),
        ({"params": {"alpha": {"low": 1.0, "high": 1.0}}}, "empty range"),
        ({"params": {"alpha": {"low": 0.0, "high": 1.0, "log": True}}}, "log range needs low > 0"),
        ({"params": {"method": {"choices": []}}}, "non-empty list"),
        ({"params": {"bogus": {"low": 1, "high": 2}}}, "'bogus' is not a TrainConfig field"),
        ({"params": {"alpha": {"low": 0.1, "hihg": 2}}}, "unknown key(s) hihg"),
        ({"params": {"k": {"low": 2, "high": 9, "when": {"method": "icm"}}}}, "not an earlier parameter"),
        ({"params": {}}, "nothing to search"),
        ({"params": {"alpha": {"low": "a", "high": 2}}}, "must be numbers"),
        ({"parms": {}}, "unknown top-level key"),
        ([1, 2], "a space file is a mapping"),
    ],
)
def test_bad_space_documents(doc, needle):
    with pytest.raises(SpaceError) as e:
        space_from_dict(doc, "s.yaml", allowed=FIELDS)
    assert needle in str(e.value) and "\n" not in str(e.value)


def test_dry_run_rejects_values_the_config_refuses():
    settings = SearchSettings(name="x", space="s.yaml", base=TrainConfig().to_dict())
    space = space_from_dict({"params": {"alpha": {"low": -1.0, "high": 1.0}}}, "s.yaml", FIELDS)
    with pytest.raises(SpaceError, match="alpha=.* must be a finite number > 0"):
        dry_run(space, settings, n_train=1000)
    big_k = space_from_dict({"params": {"k": {"low": 2, "high": 5000}}, "fixed": {"method": "icm"}}, "s.yaml", FIELDS)
    with pytest.raises(SpaceError, match="k goes up to 5000, more than the 1000 training examples"):
        dry_run(big_k, settings, n_train=1000)


def test_malformed_space_yaml(tmp_path):
    path = tmp_path / "bad.yaml"
    path.write_text("params: {alpha: {low: 1\n")
    with pytest.raises(SpaceError, match="malformed YAML"):
        load_space_file(path)


def test_layering_search_spaces_import_nothing_of_ours():
    import subprocess
    import sys

    code = (
        "import sys, search_spaces.presets, search_spaces.yaml_space, trainables.trainable;"
        "print(sorted({m.split('.')[0] for m in sys.modules} & {'tuner', 'trainables'}),"
        " 'tuner' in sys.modules)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "['trainables'] False"


@pytest.mark.parametrize("dataset, offered", [("digits", False), ("mnist", True)])
def test_a_search_offers_cutmix_only_on_images_it_can_cut(dataset, offered, tmp_path):
    """The checked search's space knows the data's image side: 8x8 digits get no CutMix, 28x28 MNIST does."""
    from tests.conftest import MNIST_DIR
    from tuner.execution.checks import check_search

    extra = {"data_dir": str(MNIST_DIR)} if dataset == "mnist" else {}
    base = TrainConfig(dataset=dataset, labels="complementary", epochs=2, **extra).to_dict()
    settings = SearchSettings(name="cut", space="all", base=base, results_dir=str(tmp_path),
                              tracking_uri=f"sqlite:///{tmp_path / 'm.db'}")
    levels = {p.get("mix_level") for p in sample(check_search(settings).space, n=80)}
    assert ("cutmix" in levels) == offered and {"input", "manifold"} <= levels


def test_icm_preset_chooses_between_icm_and_the_authors_label_sharing():
    """issue 22: the label sharing of the ICM authors' code is a choice of the `icm` preset (with self pairing, as
    theirs); `--method icm` pins ICM as the paper describes it, the preset's space before the choice."""
    points = sample(get_preset("icm", SpaceContext(max_k=200)), n=80)
    by_method = {m: [p for p in points if p["method"] == m] for m in ("icm", "icm_share_labels_in_batch")}
    assert all(len(v) > 20 for v in by_method.values())
    assert all(p.get("self_pairing") is True for p in by_method["icm_share_labels_in_batch"])
    assert all("self_pairing" not in p for p in by_method["icm"])
    for p in points:
        TrainConfig.from_dict({"labels": "complementary", **p})  # every point a valid config

    settings = SearchSettings(name="s", space="icm", base=TrainConfig().to_dict(), results_dir="/tmp",
                              space_doc={"preset": "icm", "pinned": {"method": "icm"}})
    pinned = build_space(settings, n_train=1000)
    assert {p["method"] for p in sample(pinned, n=30)} == {"icm"}
    assert all("self_pairing" not in p for p in sample(pinned, n=30))
    assert settings.space_doc == {"preset": "icm", "pinned": {"method": "icm"}}  # a resume pins it again
