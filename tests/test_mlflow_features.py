"""MLflow's own features, used (issue 15, item 4): run names that say what a trial is, the data
as an MLflow dataset with a content digest, the trial table on the parent run, and a printed
link that opens this search's runs in MLflow 3's UI (checked in a real headless browser).

The fast tests check the pieces in process (a sqlite store, no Ray). The slow ones read real
searches: the session's search on digits beside one on another split of it (sqlite), and the
session's search against a real `mlflow server`, whose printed link Debian's `chromium` loads
(conftest.py's `finished_search` and `server_search`). Without chromium the browser test is
skipped, with the install command as its reason, unless MIXTUNE_REQUIRE_BROWSER is set
(`.ci/run` sets it and installs chromium), where a missing browser fails it.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import urllib.parse
from pathlib import Path

import pytest
from fault_tools import search_runs

from trainables.core.config import TrainConfig
from trainables.core.data import load_dataset
from trainables.core.split import split_and_label
from tuner.tracking import mlflow_meta
from tuner.tracking import callback as tracking
from tuner.tracking.mlflow_meta import dataset_record, describe_data, run_name, runs_link, trial_table
from tuner.settings import SearchSettings

DIGITS_SEARCHED = {"method": "icm", "k": 45, "alpha": 0.2626, "loss": "fwd", "mix_level": "manifold",
                   "lr": 0.00172, "weight_decay": 6.9e-5}


# ----------------------------------------------------------------------------- run names
def test_run_name_says_trial_method_and_main_values():
    """The distinguishing part first (issue 21): MLflow's runs table cuts long names."""
    assert run_name("icm", DIGITS_SEARCHED, "4e1b720d") == "4e1b720d icm k=45 α=0.26 manifold fwd"
    assert run_name("icm", dict(reversed(DIGITS_SEARCHED.items())), "4e1b720d") == "4e1b720d icm k=45 α=0.26 manifold fwd"
    assert run_name("multimix", {"K": 3, "alpha": 1.0, "mix_level": "cutmix", "lr": 0.01}, "a1") == \
        "a1 multimix K=3 α=1 cutmix"
    assert run_name("infinite_class", {"alpha": 0.5, "contrastive_weight": 0.25, "contrastive_balance": 0.5},
                    "b2") == "b2 infinite_class α=0.5 cw=0.25 cb=0.5"
    # only the optimiser searched: its values are the name; fields that are not TrainConfig's are not
    assert run_name("icm", {"lr": 0.0012, "weight_decay": 1e-5, "tune_extra": 3}, "c3") == "c3 icm lr=0.0012 wd=1e-05"
    long = run_name("icm", {f: "x" * 30 for f in ("loss", "mix_level", "cluster_features", "optimizer")}, "d4")
    assert len(long) <= mlflow_meta.NAME_LIMIT and long.startswith("d4 icm ")


# ----------------------------------------------------------------------------- the dataset
def data_of(**overrides) -> tuple[TrainConfig, dict]:
    cfg = TrainConfig(**overrides)
    dataset = load_dataset(cfg)
    split = split_and_label(cfg, dataset)
    return cfg, describe_data(cfg, dataset, len(split.train_index), len(split.val_index))


def test_digest_follows_the_data_and_its_labels():
    cfg, data = data_of()
    digest = dataset_record(data, cfg.to_dict())["digest"]
    again_cfg, again = data_of(seed=7, method="mixup")  # a training setting: the same data
    assert dataset_record(again, again_cfg.to_dict())["digest"] == digest
    others = [data_of(train_fraction=0.7), data_of(labels="ordinary"), data_of(data_seed=1),
              data_of(val_fraction=0.2), data_of(cl_type="multiple", num_cl=2)]
    digests = {dataset_record(d, c.to_dict())["digest"] for c, d in others}
    assert len(digests) == len(others) and digest not in digests
    rec = dataset_record(data, cfg.to_dict())
    assert rec["name"] == "digits" and len(rec["digest"]) == 10
    assert rec["profile"]["rows"] == {"train": 1294, "validation": 144, "test": 359}
    assert rec["profile"]["labels"] == "complementary" and rec["profile"]["classes"] == 10


def test_dataset_is_an_mlflow_dataset(tmp_path):
    import mlflow.data
    from mlflow.types.schema import Schema

    from tuner.tracking.mlflow_dataset import dataset_input

    cfg, data = data_of()
    entity = dataset_input(dataset_record(data, cfg.to_dict())).dataset
    assert mlflow.data.get_source(entity).to_dict() == {"tags": {"mlflow.source.name": "sklearn.datasets.load_digits"}}
    spec = json.loads(entity.schema)["mlflow_tensorspec"]
    assert Schema.from_json(spec["features"]).inputs[0].shape == (-1, 1, 8, 8)
    assert Schema.from_json(spec["targets"]).inputs[0].shape == (-1, 10)
    assert json.loads(entity.profile)["fingerprint"] == data["fingerprint"]
    npz = dict(data, name="npz:mine.npz", source={"uri": str(tmp_path / "mine.npz")})
    assert mlflow.data.get_source(dataset_input(dataset_record(npz, cfg.to_dict())).dataset).uri == \
        str(tmp_path / "mine.npz")


def writer_settings(tmp_path) -> tuple[object, SearchSettings]:
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    client = tracking.client(uri)
    exp = tracking.experiment_id(client, "writer")
    parent = client.create_run(exp, run_name="w", tags={tracking.SEARCH_TAG: "w", tracking.ROLE_TAG: "search"}).info.run_id
    cfg, data = data_of()
    settings = SearchSettings(name="w", space="icm", base=cfg.to_dict(), metric="val_scel", mode="min",
                              tracking_uri=uri, experiment_id=exp, parent_run_id=parent,
                              results_dir=str(tmp_path), data=data)
    return client, settings


def test_names_and_datasets_sent_twice_change_nothing(tmp_path):
    """The new ops are outbox ops like the others: a repeat after an outage adds nothing."""
    client, settings = writer_settings(tmp_path)
    record = dataset_record(settings.data, settings.base)
    tags = {"mlflow.parentRunId": settings.parent_run_id, tracking.TRIAL_TAG: "t1", tracking.SEARCH_TAG: "w",
            tracking.ROLE_TAG: "trial"}
    ops = [{"op": "dataset", "dataset": record},
           {"op": "trial", "trial": "t1", "name": "icm k=4 t1", "tags": tags, "params": {"k": "4"}, "searched": "k"},
           {"op": "dataset", "trial": "t1", "dataset": record}]
    for writer in (tracking.Writer(settings), tracking.Writer(settings)):
        for op in ops + ops:
            json.dumps(op)  # what the outbox file holds
            writer(op)
    _, (parent,), (trial,) = search_runs(settings.tracking_uri, "w", "writer")
    assert trial.info.run_name == "icm k=4 t1"
    for run in (parent, trial):
        (inp,) = client.get_run(run.info.run_id).inputs.dataset_inputs
        assert (inp.dataset.name, inp.dataset.digest) == ("digits", record["digest"])
        assert [(t.key, t.value) for t in inp.tags] == [("mlflow.data.context", "training")]


def test_an_old_trial_op_without_a_name_is_named_by_its_trial_id(tmp_path):
    client, settings = writer_settings(tmp_path)
    tags = {"mlflow.parentRunId": settings.parent_run_id, tracking.TRIAL_TAG: "t9", tracking.SEARCH_TAG: "w",
            tracking.ROLE_TAG: "trial"}
    tracking.Writer(settings)({"op": "trial", "trial": "t9", "tags": tags, "params": {"k": "4"}, "searched": "k"})
    _, _, (trial,) = search_runs(settings.tracking_uri, "w", "writer")
    assert trial.info.run_name == "t9"


# ----------------------------------------------------------------------------- the trial table
def test_trial_table_rows_best_first():
    base = TrainConfig(epochs=4).to_dict()
    rows = [
        {"trial_id": "a", "config": {"method": "icm", "k": 5, "alpha": 0.3}, "error": None,
         "metrics": {"val_scel_ts": 2.1, "test_acc": 0.8, "epoch": 4}},
        {"trial_id": "b", "config": {"method": "mixup", "alpha": 0.9}, "error": None,
         "metrics": {"val_scel_ts": 2.0, "test_acc": 0.7, "epoch": 2}},
        {"trial_id": "c", "config": {"method": "icm", "k": 9, "alpha": 1.5}, "error": "ValueError: nan loss",
         "metrics": {"epoch": 1}},
    ]
    table = trial_table(rows, base, ["val_scel_ts"], ["min"], {"a": ("run-a", "icm k=5 α=0.3 a")})
    assert list(table)[:7] == ["trial_id", "run_name", "run_id", "status", "epochs", "val_scel_ts", "test_acc"]
    assert list(table)[7:] == ["method", "k", "alpha"]
    assert table["trial_id"] == ["b", "a", "c"]  # the best first, a failed trial last
    assert table["status"] == ["STOPPED_EARLY", "COMPLETED", "FAILED"]
    assert table["run_name"] == ["b mixup α=0.9", "icm k=5 α=0.3 a", "c icm k=9 α=1.5"]
    assert table["run_id"] == [None, "run-a", None] and table["k"] == [None, 5, 9]
    assert table["val_scel_ts"] == [2.0, 2.1, None] and table["epochs"] == [2, 4, 1]


# ----------------------------------------------------------------------------- the link
def test_runs_link_opens_the_runs_view_of_this_search():
    link = runs_link("http://h:5000/", "7", "s-1", "val_acc,val_ece", "max,min")
    head, query = link.split("?", 1)
    assert head == "http://h:5000/#/experiments/7/runs"
    # MLflow ignores a shared view when the URL also filters or sorts: the view holds those
    assert urllib.parse.parse_qs(query) == {"workflowType": ["machine_learning"],
                                            "viewStateShareKey": [mlflow_meta.view_key("s-1")]}
    assert mlflow_meta.runs_view("s-1", "val_acc,val_ece", "max,min", ["lr", "alpha", "method"]) == {
        "searchFilter": "tags.`mixtune.search` = 's-1'", "orderByKey": "metrics.`val_acc`", "orderByAsc": False,
        "selectedColumns": ["metrics.`val_acc`", "metrics.`val_ece`", "metrics.`test_acc`", "params.`method`",
                            "params.`alpha`", "params.`lr`", "attributes.`Dataset`"]}
    assert mlflow_meta.runs_view("s", "val_scel_ts", "min", [])["orderByAsc"] is True


def test_ui_lines_per_store():
    s = SearchSettings(name="s", space="icm", base={}, metric="val_scel_ts", mode="min", experiment_id="3",
                       tracking_uri="sqlite:////tmp/m.db")
    command, link = tracking.ui_lines(s)
    assert command.startswith("MLflow UI:    mlflow ui --backend-store-uri sqlite:////tmp/m.db --host 127.0.0.1")
    assert link.startswith("MLflow runs:  http://127.0.0.1:5000/#/experiments/3/runs?workflowType=machine_learning&")
    s.tracking_uri = "https://user:secret@mlflow.example:8443/"
    (line,) = tracking.ui_lines(s)
    assert line.startswith("MLflow runs:  https://mlflow.example:8443/#/experiments/3/runs?") and "secret" not in line
    s.tracking_uri = "databricks"
    assert tracking.ui_lines(s) == ["MLflow UI:    databricks  (experiment 'mixtune')"]


# ----------------------------------------------------------------------------- real searches
def search(tmp_path, uri: str, name: str, *extra: str) -> SearchSettings:
    from tuner.cli import main

    argv = ["search", "--space", "all", "--num-samples", "3", "--epochs", "2", "--hidden", "16",
            "--num-cpus", "2", "--max-concurrent", "2", "--grace-period", "2",
            "--results-dir", str(tmp_path / "results"), "--tracking-uri", uri, "--name", name, *extra]
    assert main(argv) == 0
    return SearchSettings.load(tmp_path / "results" / name)


def check_search_runs(client, settings: SearchSettings, parent, trials) -> str:
    """Names, the dataset on every run, the trial table; returns the search's digest."""
    expected = dataset_record(settings.data, settings.base)["digest"]
    assert len(trials) == settings.num_samples
    for run in (parent, *trials):
        (inp,) = client.get_run(run.info.run_id).inputs.dataset_inputs
        assert (inp.dataset.name, inp.dataset.digest) == ("digits", expected)
    ray_configs = {}
    for path in settings.folder.glob("trial_*/params.json"):
        ray_configs[path.parent.name.removeprefix("trial_")] = json.loads(path.read_text())
    for run in trials:
        tid = run.data.tags[tracking.TRIAL_TAG]
        assert run.info.run_name == mlflow_meta.trial_run_name(settings.base, ray_configs[tid], tid)
        assert run.info.run_name.startswith(f"{tid} {run.data.params['method']}")
    assert json.loads(parent.data.tags["mlflow.loggedArtifacts"]) == [{"path": "trials.json", "type": "table"}]
    table = json.loads(Path(client.download_artifacts(parent.info.run_id, "trials.json")).read_text())
    rows = [dict(zip(table["columns"], r)) for r in table["data"]]
    by_run = {r.info.run_id: r for r in trials}
    assert sorted(r["run_id"] for r in rows) == sorted(by_run)
    for row in rows:
        run = by_run[row["run_id"]]
        assert row["trial_id"] == run.data.tags[tracking.TRIAL_TAG] and row["run_name"] == run.info.run_name
        assert row["status"] == run.data.tags["state"]
        assert row["epochs"] == len(client.get_metric_history(run.info.run_id, "val_scel_ts"))  # ASHA may stop it
        assert row["val_scel_ts"] == pytest.approx(run.data.metrics["val_scel_ts"])
        assert row["test_acc"] == pytest.approx(run.data.metrics["test_acc"])
        assert row["method"] == run.data.params["method"]
    values = [r["val_scel_ts"] for r in rows]
    assert values == sorted(values)  # the best first: the search minimises it
    return expected


@pytest.mark.slow
def test_searches_on_different_data_log_different_datasets(finished_search, tmp_path, shared_ray):
    digests = []
    settings = finished_search.settings  # the session's search on digits
    client, (parent,), trials = search_runs(finished_search.uri, settings.name, settings.experiment)
    assert parent.info.run_name == settings.name
    digests.append(check_search_runs(client, settings, parent, trials))
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"  # the same data with another split of it
    settings = search(tmp_path, uri, "data-b", "--train-fraction", "0.7")
    client, (parent,), trials = search_runs(uri, "data-b")
    assert parent.info.run_name == "data-b"
    digests.append(check_search_runs(client, settings, parent, trials))
    assert digests[0] != digests[1]


# ----------------------------------------------------------------------------- the browser
BROWSERS = ("chromium", "chromium-browser", "google-chrome")
INSTALL = "apt-get update && apt-get install -y chromium"


def browser() -> str:
    """Debian's chromium (or another Chrome) on PATH; skipped without one unless CI requires it."""
    found = next((shutil.which(b) for b in BROWSERS if shutil.which(b)), None)
    if found:
        return found
    if os.environ.get("MIXTUNE_REQUIRE_BROWSER"):
        pytest.fail(f"no headless browser ({', '.join(BROWSERS)}) on PATH; install one: {INSTALL}")
    pytest.skip(f"no headless browser on PATH (install Debian's chromium: {INSTALL})")


def rendered(url: str, profile: Path, budget_ms: int) -> str:
    """The DOM after MLflow's React app has rendered `url`, in a fresh browser profile.

    A fresh profile: the UI remembers the last workflow type in local storage. The virtual
    time budget lets the app's fetches finish before the DOM is dumped.
    """
    cmd = [browser(), "--headless", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
           f"--user-data-dir={profile}", f"--virtual-time-budget={budget_ms}", "--window-size=3200,1000",
           "--dump-dom", url]
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=180)
    assert done.returncode == 0, done.stderr[-2000:]
    return done.stdout


def wait_rendered(url: str, tmp_path: Path, want: list[str]) -> str:
    """The DOM once every string of `want` is in it, with longer budgets for a slow machine."""
    dom = ""
    for i, budget in enumerate((20_000, 60_000, 120_000)):
        dom = rendered(url, tmp_path / f"profile-{i}-{budget}", budget)
        if all(w in dom for w in want):
            break
    return dom


@pytest.mark.slow
def test_printed_link_opens_the_search_runs_in_a_browser(server_search, mlflow_server, tmp_path):
    browser()  # skip (or fail in CI) without a browser
    settings = server_search.settings
    name = settings.name
    (line,) = [ln for ln in server_search.out.splitlines() if ln.startswith("MLflow runs:")]
    link = line.split()[2]
    assert link == runs_link(mlflow_server, settings.experiment_id, name, "val_scel_ts", "min")
    client, (parent,), trials = search_runs(mlflow_server, name, settings.experiment)
    digest = check_search_runs(client, settings, parent, trials)

    names = [parent.info.run_name, *(r.info.run_name for r in trials)]
    # the columns of the search's view (issue 21): its metric, test_acc, every searched parameter
    searched = sorted({p for r in trials for p in r.data.tags["mixtune.searched_params"].split(",")})
    assert {"method", "alpha", "lr"} <= set(searched)
    columns = [f'col-id="{c}"' for c in ("metrics.`val_scel_ts`", "metrics.`test_acc`",
                                          *(f"params.`{p}`" for p in searched))]
    dom = wait_rendered(link, tmp_path, names + columns)
    missing = [n for n in names if n not in dom]
    assert not missing, f"the runs table lacks {missing}: {re.sub(r'<[^>]+>', ' ', dom)[-3000:]}"
    assert digest in dom  # the runs table's Dataset column: digits (digest)
    missing = [c for c in columns if c not in dom]
    assert not missing, f"the runs table lacks the columns {missing}"
    assert "weight_decay" in searched and 'col-id="params.`hidden`"' not in dom  # searched ones, not all 131

    # without workflowType MLflow 3 opens the experiment on its GenAI overview: no run is listed
    plain = rendered(f"{mlflow_server}/#/experiments/{settings.experiment_id}", tmp_path / "profile-plain", 20_000)
    assert "Traces" in plain or "traces" in plain
    assert not [n for n in names if n in plain]
