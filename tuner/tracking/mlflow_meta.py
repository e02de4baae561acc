"""What MLflow shows of a search besides its numbers: run names, the dataset, the trial table, the link.

MLflow's UI lists runs by name, tells datasets apart by name and digest, shows a run's
tables in its artifact and compare views, and opens an experiment on whatever view its
URL (or the browser's last choice) asks for. A search fills each of these in, so that the
UI alone says what each run is, on what data, and how the trials compare:

- `run_name`: a trial's run is named after its method and its main searched values, then
  its trial id (the one the progress lines, `compare` and `export-best --trial` use), not
  one of MLflow's random names;
- `describe_data` / `dataset_record`: the data every run of the search used, as the fields
  of an MLflow dataset (`tuner/tracking/mlflow_dataset.py` makes it one). Its digest is a content
  hash: the core's fingerprint of the arrays (`trainables/core/data.py`) plus the settings
  that make the labels and splits a user has, so runs on other data (another file, split,
  label kind, label draw) have another digest, and runs on the same data the same one;
- `trial_table`: one row per trial, logged on the parent run as an MLflow table;
- `runs_link` / `runs_view`: the UI's URL of this search's runs. MLflow 3 opens an
  experiment on its GenAI overview (traces) unless the URL says
  `workflowType=machine_learning`, and shows the runs tab only under `/runs`. Which columns
  the runs table shows is not a URL parameter: MLflow keeps it in the browser, or, for a
  shared view, in an experiment tag `mlflow.sharedViewState.<key>` that the URL names with
  `viewStateShareKey=<key>` (MLflow 3.17's UI: `useSharedExperimentViewState`; it ignores
  the shared view when the URL also carries a filter or sort). The view (`runs_view`)
  filters to the search, sorts by its metric, best first (a sort other than by date lists
  nested runs flat, so every trial shows without expanding its parent), and shows the
  selection metric(s), the test accuracy and the searched parameters as columns; the
  tuner writes it as that tag (`compare.save_runs_view`) before it prints the link.

Pure functions of plain values: no MLflow import here (the CLI starts without it).
"""

from __future__ import annotations

import hashlib
import json
import math
import urllib.parse
from pathlib import Path
from typing import TYPE_CHECKING, Any

from trainables.core.config import TrainConfig

if TYPE_CHECKING:
    from trainables.core.data import Dataset

# the tags that find a search's runs (tracking.py re-exports them)
TRIAL_TAG = "mixtune.trial_id"
SEARCH_TAG = "mixtune.search"
ROLE_TAG = "mixtune.role"

TABLE_FILE = "trials.json"  # the parent run's trial table
NAME_LIMIT = 100  # characters of a run name; MLflow allows more, the runs table shows fewer

# ----------------------------------------------------------------------------- run names
SHORT_KEYS = {"alpha": "α", "contrastive_weight": "cw", "contrastive_balance": "cb", "weight_decay": "wd"}
# choices whose value says what it is ("fwd", "manifold"): shown without their key
BARE_KEYS = {"loss", "mix_level", "cluster_features", "optimizer", "schedule", "model", "cl_type"}
# searched by every preset: left to the run's params unless nothing else was searched
GENERIC_KEYS = ("lr", "weight_decay")
# the methods' own parameters first (as the README's method table lists them), then TrainConfig's order
FIRST_KEYS = ("method", "k", "K", "alpha", "mix_level", "contrastive_weight", "contrastive_balance", "loss")
FIELD_ORDER = {name: i for i, name in enumerate((*FIRST_KEYS, *(f for f in TrainConfig.__dataclass_fields__
                                                                if f not in FIRST_KEYS)))}


def _value(key: str, v: Any) -> str:
    if isinstance(v, bool):
        return key if v else f"no_{key}"
    if isinstance(v, float):
        text = f"{v:.2g}"
    else:
        text = str(v)
    if key in BARE_KEYS and isinstance(v, str):
        return text
    return f"{SHORT_KEYS.get(key, key)}={text}"


def run_name(method: str, searched: dict[str, Any], trial_id: str) -> str:
    """`4fd5e482 icm k=45 α=0.26 fwd`: the trial id, the method, its main searched values.

    The part that tells runs apart comes first, since MLflow's runs table cuts long names:
    the trial id (unique; the one the progress lines, `compare` and `export-best --trial`
    use), then the method and its values. Deterministic in its inputs, so the summary's
    trial table names a run as the callback did. Values in TrainConfig's field order; the
    learning rate and weight decay only when nothing else was searched; the method's own
    parameters first (FIRST_KEYS); longer than NAME_LIMIT: the last values are left out.
    """
    keys = sorted((k for k in searched if k in FIELD_ORDER and k != "method"), key=FIELD_ORDER.__getitem__)
    main = [k for k in keys if k not in GENERIC_KEYS] or keys
    parts = [_value(k, searched[k]) for k in main]
    while parts and len(" ".join([trial_id, method, *parts])) > NAME_LIMIT:
        parts.pop()
    return " ".join([trial_id, method, *parts])[:NAME_LIMIT]


def trial_run_name(base: dict[str, Any], config: dict[str, Any], trial_id: str) -> str:
    """The run name of a trial of a search, from the search's base config and the trial's searched values."""
    return run_name(str(config.get("method", base.get("method", "?"))), config, trial_id)


# ----------------------------------------------------------------------------- the dataset
# the settings that make the data a run learns from, beyond the arrays: its labels and splits
DIGEST_FIELDS = ("labels", "val_fraction", "data_seed", "imbalance_ratio")
GENERATED_FIELDS = ("cl_type", "num_cl", "cl_noise")  # only for generated complementary labels
CODE_SOURCES = {"digits": "sklearn.datasets.load_digits"}


def data_settings(values: dict[str, Any]) -> dict[str, Any]:
    """The data-defining settings of a config (a TrainConfig's dict), in a fixed order."""
    fields = DIGEST_FIELDS + (GENERATED_FIELDS if values.get("labels") == "complementary" else ())
    return {f: values.get(f) for f in fields}


def dataset_name(cfg: TrainConfig) -> str:
    """`digits`, `mnist`, or for the user's own files the dataset kind and the file's name (`npz:my_cl.npz`)."""
    if cfg.dataset in ("npz", "folder") and cfg.data_dir:
        return f"{cfg.dataset}:{Path(cfg.data_dir).name}"
    return cfg.dataset


def describe_data(cfg: TrainConfig, dataset: Dataset, n_train: int, n_val: int) -> dict[str, Any]:
    """The checked dataset of a search, as plain JSON values (saved in its state file).

    `dataset` is the core's loaded `Dataset`: its fingerprint hashes the arrays as read.
    """
    n_test = 0 if dataset.x_test is None else len(dataset.x_test)
    source = ({"code": CODE_SOURCES[cfg.dataset]} if cfg.dataset in CODE_SOURCES
              else {"uri": str(Path(cfg.data_dir).resolve()) if cfg.data_dir else cfg.dataset})
    return {
        "name": dataset_name(cfg),
        "source": source,
        "fingerprint": dataset.fingerprint,
        "shape": [int(s) for s in dataset.in_shape],
        "classes": int(dataset.num_classes),
        "rows": {"train": int(n_train), "validation": int(n_val), "test": int(n_test)},
        "given_labels": dataset.cl_train is not None,
        "test_labels": dataset.has_test,
    }


def data_digest(fingerprint: str, values: dict[str, Any]) -> str:
    """10 hex digits (MLflow's advice: at most 10) of sha256 over the arrays' fingerprint and the
    labels' and splits' settings."""
    text = json.dumps({"fingerprint": fingerprint, **data_settings(values)}, sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:10]


def dataset_record(data: dict[str, Any], values: dict[str, Any]) -> dict[str, Any]:
    """What a run logs as its dataset (an outbox op's JSON): name, digest, source, schema and profile.

    `data` is `describe_data`'s; `values` the run's config (a TrainConfig's dict), whose
    label and split settings are part of the digest and the profile.
    """
    classes = data["classes"]
    labels = values.get("labels")
    targets = {"dtype": "int64", "shape": [-1]} if labels == "ordinary" else {"dtype": "float32",
                                                                             "shape": [-1, classes]}
    profile = {"rows": data["rows"], "classes": classes, "labels": labels,
               "targets": "class indices" if labels == "ordinary" else "complementary-label rows (sum to 1)",
               "given_labels": data["given_labels"], "test_labels": data["test_labels"],
               "fingerprint": data["fingerprint"], **data_settings(values)}
    return {
        "name": data["name"],
        "digest": data_digest(data["fingerprint"], values),
        "source": data["source"],
        "features": {"dtype": "float32", "shape": [-1, *data["shape"]]},
        "targets": targets,
        "profile": profile,
    }


# ----------------------------------------------------------------------------- the trial table
def finite_number(v: Any) -> float | None:
    """v as a float when it is a finite int or float (not a bool), else None: a metric a table or rule can use."""
    return float(v) if isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v) else None


def trial_status(row: dict[str, Any], epochs: int) -> str:
    """COMPLETED, STOPPED_EARLY (by ASHA) or FAILED: the state tag the trial's run carries."""
    if row["error"] is not None:
        return "FAILED"
    epoch = row["metrics"].get("epoch")
    return "STOPPED_EARLY" if epoch is not None and epoch < epochs else "COMPLETED"


def trial_table(rows: list[dict[str, Any]], base: dict[str, Any], metrics: list[str], modes: list[str],
                runs: dict[str, tuple[str, str]]) -> dict[str, list]:
    """Columns of the parent run's trial table: one row per trial, the best first by the first metric.

    rows: the summary's trial rows (trial_id, config, metrics, error); runs: trial id ->
    (run id, run name) of the trials MLflow has. Searched values are columns of their own
    (empty where a conditional parameter was not drawn).
    """
    epochs = int(base["epochs"])
    shown = [*metrics, *(["test_acc"] if "test_acc" not in metrics and any("test_acc" in r["metrics"] for r in rows)
                         else [])]
    params = sorted({k for r in rows for k in r["config"]}, key=lambda k: (FIELD_ORDER.get(k, len(FIELD_ORDER)), k))
    sign = -1.0 if modes and modes[0] == "max" else 1.0

    def order(r: dict[str, Any]) -> tuple[bool, float]:
        v = finite_number(r["metrics"].get(metrics[0])) if metrics else None
        return (v is None or r["error"] is not None, sign * v if v is not None else 0.0)

    table: dict[str, list] = {c: [] for c in ("trial_id", "run_name", "run_id", "status", "epochs", *shown, *params)}
    for r in sorted(rows, key=order):
        tid = r["trial_id"]
        run_id, name = runs.get(tid, (None, trial_run_name(base, r["config"], tid)))
        epoch = r["metrics"].get("epoch")
        table["trial_id"].append(tid)
        table["run_name"].append(name)
        table["run_id"].append(run_id)
        table["status"].append(trial_status(r, epochs))
        table["epochs"].append(None if epoch is None else int(epoch))
        for m in shown:
            table[m].append(finite_number(r["metrics"].get(m)))
        for p in params:
            v = r["config"].get(p)
            table[p].append(v if v is None or isinstance(v, (int, float, str, bool)) else str(v))
    return table


# ----------------------------------------------------------------------------- the link
LOCAL_UI = "http://127.0.0.1:5000"  # where `mlflow ui` serves by default


VIEW_TAG = "mlflow.sharedViewState."  # MLflow's experiment tag of a shared runs view, + its key
VIEW_FIXED_COLUMNS = ("attributes.`Dataset`",)  # of MLflow's default columns, the one a search needs


def column(kind: str, name: str) -> str:
    """A runs-table column as MLflow's UI names it (`makeCanonicalSortKey`): metrics.`val_acc`."""
    return f"{kind}.`{name}`"


def view_key(search: str) -> str:
    """The shared view's key: tag keys take fewer characters than search names (no + or =)."""
    return "mixtune-" + hashlib.sha256(search.encode()).hexdigest()[:16]


def runs_view(search: str, metric: str, mode: str, params: list[str]) -> dict[str, Any]:
    """The runs table of a search, as MLflow's shared view state: filter, sort (best first), columns.

    Columns: the selection metric(s), test_acc, the searched parameters (TrainConfig's
    order, the method's own first), then the dataset (name and digest).
    """
    metrics = metric.split(",") if metric else []
    shown = [*metrics, *(["test_acc"] if "test_acc" not in metrics else [])]
    ordered = sorted(dict.fromkeys(params), key=lambda k: (FIELD_ORDER.get(k, len(FIELD_ORDER)), k))
    return {
        "searchFilter": f"tags.`{SEARCH_TAG}` = '{search}'",
        "orderByKey": column("metrics", metrics[0]) if metrics else "attributes.start_time",
        "orderByAsc": bool(metrics) and mode.split(",")[0] == "min",
        "selectedColumns": [*(column("metrics", m) for m in shown), *(column("params", p) for p in ordered),
                            *VIEW_FIXED_COLUMNS],
    }


def runs_link(ui: str, experiment_id: str, search: str, metric: str = "", mode: str = "") -> str:
    """The MLflow UI's runs table of the experiment in the search's shared view (`runs_view`).

    The view itself is the experiment tag VIEW_TAG + view_key(search); metric and mode are
    kept for callers' sake (the view holds them).
    """
    query = urllib.parse.urlencode({
        "workflowType": "machine_learning",  # MLflow 3: not the GenAI overview
        "viewStateShareKey": view_key(search),
    }, quote_via=urllib.parse.quote)
    return f"{ui.rstrip('/')}/#/experiments/{experiment_id}/runs?{query}"
