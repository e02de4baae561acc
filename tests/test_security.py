"""Security: loopback by default, safe loaders, no secrets in MLflow, no path escapes; reproducibility.

The end-to-end checks (a real search's MLflow params and tags hold no secret from the
environment) are in test_resume.py, which runs real drivers with secrets in their environment.
"""

from __future__ import annotations

import ast
import os
from pathlib import Path

import pytest
import torch

os.environ["RAY_AUTH_MODE"] = "disabled"

from tuner import settings as search_settings  # noqa: E402

from tuner.execution import assembly  # noqa: E402

from tuner.execution import execute  # noqa: E402

from tuner.tracking import callback as tracking  # noqa: E402
from tuner.errors import UserError  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
SHIPPED = ["tuner", "trainables", "search_spaces"]  # the packages pyproject installs


def shipped_sources() -> list[Path]:
    return sorted(p for pkg in SHIPPED for p in (ROOT / pkg).rglob("*.py"))


def calls(path: Path):
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute):
            owner = node.func.value.id if isinstance(node.func.value, ast.Name) else None
            yield owner, node.func.attr, node


def test_yaml_is_only_loaded_safely():
    bad = [f"{p.relative_to(ROOT)}:{n.lineno}" for p in shipped_sources() for owner, attr, n in calls(p)
           if owner == "yaml" and attr in ("load", "load_all", "unsafe_load", "full_load")]
    assert not bad, f"use yaml.safe_load: {bad}"


def test_torch_load_is_weights_only():
    bad = []
    for p in shipped_sources():
        for owner, attr, n in calls(p):
            if owner == "torch" and attr == "load":
                kw = {k.arg: k.value for k in n.keywords}
                value = kw.get("weights_only")
                if not (isinstance(value, ast.Constant) and value.value is True):
                    bad.append(f"{p.relative_to(ROOT)}:{n.lineno}")
    assert not bad, f"torch.load without weights_only=True: {bad}"


def test_checkpoint_loader_refuses_code(tmp_path):
    """A checkpoint holding a pickled object (code on load) is refused, not executed."""
    from ray import tune

    from trainables.trainable import CHECKPOINT_FILE, load_state

    class Evil:
        def __reduce__(self):
            return (os.system, (f"touch {tmp_path / 'pwned'}",))

    (tmp_path / "ckpt").mkdir()
    torch.save({"epoch": 1, "x": Evil()}, tmp_path / "ckpt" / CHECKPOINT_FILE)
    with pytest.raises(Exception, match="(?i)weights_only|unsupported|global"):
        load_state(tune.Checkpoint.from_directory(str(tmp_path / "ckpt")))
    assert not (tmp_path / "pwned").exists()


def test_ray_starts_without_dashboard(monkeypatch):
    import ray

    seen = {}
    monkeypatch.setattr(ray, "is_initialized", lambda: False)
    monkeypatch.setattr(ray, "init", lambda **kw: seen.update(kw))
    assembly.start_ray(search_settings.SearchSettings(name="x", space="icm", base={}, num_cpus=1))
    assert seen["include_dashboard"] is False
    assert "dashboard_host" not in seen  # never 0.0.0.0


def test_printed_mlflow_ui_binds_loopback(capsys, tmp_path):
    from tuner.report.summary_text import print_outcome

    settings = search_settings.SearchSettings(name="x", space="icm", base={"labels": "complementary"},
                                              results_dir=str(tmp_path), tracking_uri="sqlite:////tmp/m.db",
                                              metric="val_scel", mode="min")
    print_outcome(settings, execute.SearchOutcome(folder=tmp_path, best=None, trials=[], seconds=1.0))
    out = capsys.readouterr().out
    assert "--host 127.0.0.1" in out and "0.0.0.0" not in out


@pytest.mark.parametrize("uri,shown", [
    ("http://alice:s3cret@mlflow.example:5000", "http://mlflow.example:5000"),
    ("postgresql://bob:pw@db/mlflow", "postgresql://db/mlflow"),
    ("ray://carol:tok@head:10001", "ray://head:10001"),
    ("sqlite:////tmp/mlflow.db", "sqlite:////tmp/mlflow.db"),
])
def test_redact_uri(uri, shown):
    assert tracking.redact_uri(uri) == shown


def test_search_params_carry_no_credentials(tmp_path):
    """Parent-run params and tags never hold a URI's user:password (address, storage path)."""
    logged = {}

    class Client:
        def log_batch(self, run_id, params=()):
            logged.update({p.key: p.value for p in params})

        def log_dict(self, *a, **k):
            pass

        def set_tag(self, run_id, key, value):
            logged[key] = value

    settings = search_settings.SearchSettings(
        name="x", space="icm", base={"epochs": 2, "labels": "complementary"}, metric="val_scel", mode="min", results_dir=str(tmp_path), parent_run_id="r",
        address="ray://carol:tok@head:10001", storage_path="s3://AKIA:s3cret@bucket/runs",
        tracking_uri="http://alice:pw@host:5000")
    execute.log_search_params(Client(), settings)
    blob = repr(logged)
    assert "tok" not in blob and "s3cret" not in blob and "alice" not in blob and "pw@" not in blob
    assert logged["search.address"] == "ray://head:10001"


@pytest.mark.parametrize("name", ["../../etc", "..", "a/b", "/abs", "", ".hidden", "x" * 201, "a\nb"])
def test_search_names_cannot_escape_the_results_folder(name):
    with pytest.raises(UserError, match="search name"):
        search_settings.check_name(name)


@pytest.mark.parametrize("name", ["icm-digits-complementary-20260101-120000", "run_1", "a.b+c=d"])
def test_ordinary_search_names_pass(name):
    search_settings.check_name(name)


def test_resume_rejects_a_state_file_that_points_elsewhere(tmp_path):
    """A tampered mixtune.json cannot redirect where resume writes."""
    folder = tmp_path / "results" / "mine"
    folder.mkdir(parents=True)
    (folder / search_settings.STATE_FILE).write_text('{"name": "other", "space": "icm", "base": {}}')
    with pytest.raises(search_settings.SearchError, match="names search 'other'"):
        search_settings.SearchSettings.load(folder)
    (folder / search_settings.STATE_FILE).write_text('{"name": "mine", "space": "icm", "base": {}, '
                                            '"results_dir": "/etc"}')
    assert search_settings.SearchSettings.load(folder).folder == folder.resolve()


def test_same_config_and_seed_give_identical_metrics_on_cpu():
    from trainables.core.config import TrainConfig
    from trainables.core.data import load_dataset
    from trainables.core.fit import fit

    cfg = TrainConfig(method="icm", k=5, epochs=2, device="cpu", num_threads=1, seed=3, cache_dir=None)
    data = load_dataset(cfg)
    a = fit(cfg, data).history
    b = fit(cfg, data).history
    drop = ("epoch_time", "samples_per_s")
    assert [{k: v for k, v in h.items() if k not in drop} for h in a] == \
           [{k: v for k, v in h.items() if k not in drop} for h in b]
    c = fit(cfg.replace(seed=4), data).history
    assert a[-1]["train_loss"] != c[-1]["train_loss"]


def test_trial_seed_is_reported_and_logged():
    """The trainable reports the trial's seed; the MLflow callback logs it as a param of every trial run."""
    src = (ROOT / "trainables" / "trainable.py").read_text()
    assert '"seed": cfg.seed' in src
    from trainables.core.config import TrainConfig

    assert "seed" in TrainConfig().to_dict()  # params of a trial run are its whole TrainConfig
