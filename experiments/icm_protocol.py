"""ICM and PC as their authors ran them (issue 22): where, if anywhere, Intra-Cluster Mixup beats no mixing.

One command, resumable parts, one section of docs/results.md:

    python -m experiments.icm_protocol                       # every part, then the report
    python -m experiments.icm_protocol --parts authors pc    # some parts (each run is stored once trained)
    python -m experiments.icm_protocol --report-only         # assemble from the stored runs only

Parts (each a list of `fit` runs on the MNIST files, SCL-NL unless said otherwise, uniform single CLs,
k = 50 clusters on raw pixels, alpha 1, seed s = training seed = data_seed, 10% validation split):

* always: purity and anchor-side pair noise of raw, PCA and oracle clusters (no training);
* authors: the authors' setting: MLP 784-500-10 without BatchNorm (`mlp1`), Adam lr 1e-3, weight decay
  1e-5, batch 512, constant lr; arms none, mixup, ICM as today, ICM in-batch (self allowed), the label-
  sharing variants (whole set; in-batch with self, the authors' HEAD `train.py`), and two oracle-cluster
  diagnostics (k-means inside each true class: a bound on what better features could give; never a
  selectable method);
* today: the project's setting (MLP 256-256 with BatchNorm, wd 1e-4, batch 128, cosine) on the same arms;
* cross: the authors' model with today's recipe (which of model / recipe matters);
* ladder: the authors' setting at train_fraction 0.1, 0.2, 0.4 (0.8 is the authors part);
* encoder: the authors' setting with ICM and label sharing on the in-project encoder's clusters;
* pc: PC's learning curve beside SCL-NL (and URE-GA) in four settings, one seed;
* losses: the authors' setting with FWD and SCL-EXP (arms none, mixup, ICM, the authors' label sharing);
* linear: the authors' recipe on a linear model (the authors' third model) on the same four arms;
* digits: the authors' setting on scikit-learn's digits at train_fraction 0.2, 0.4, 0.8 (none, ICM, label
  sharing): the size ladder on a second dataset; and today's setting at 0.8.

Three readings per run: the last epoch; the best epoch on the test set (what the ICM authors report:
the test set doubles as validation; marked as such, never a user's number); the epoch with the lowest
val_scel_ts (selected from the validation split's complementary labels alone). Verdicts use the
project's rule (`experiments.runner.compare`: a gap holds beyond 2 standard errors over seeds).

Runs go into the run store (`<cache>/runs/`, keyed by config and arm) with every per-epoch metric, so
an interrupted invocation resumes and the report can be assembled at any time. One thread, CPU.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import math
import sys
import time
from pathlib import Path
from typing import Any

import torch

from experiments.runner import RUNS_VERSION, compare, data_key, mean_std
from trainables.core.clustering import Clustering, cluster_features, kmeans
from trainables.core.config import TrainConfig, default_cache_dir
from trainables.core.data import Dataset, load_dataset
from trainables.core.files import write_text_atomic
from trainables.core.fit import fit, prepare
from trainables.core.mixing import ClusterIndex

MARK_START, MARK_END = "<!-- icm-protocol:start -->", "<!-- icm-protocol:end -->"
PARTS = ("authors", "today", "pc", "ladder", "encoder", "cross", "losses", "linear", "digits")
CURVE = ("train_loss", "test_acc", "val_scel_ts", "val_acc_est", "noise_rate", "pair_impurity")

# what sets a run apart besides the arm; epochs cut from the authors' 300 (see the report's budget line)
SETTINGS: dict[str, dict[str, Any]] = {
    "authors": dict(model="mlp1", hidden=500, lr=1e-3, weight_decay=1e-5, batch_size=512, schedule="none",
                    epochs=60),
    "today": dict(model="mlp", hidden=256, lr=1e-3, weight_decay=1e-4, batch_size=128, schedule="cosine",
                  epochs=60),
    "cross": dict(model="mlp1", hidden=500, lr=1e-3, weight_decay=1e-4, batch_size=128, schedule="cosine",
                  epochs=60),
    "linear": dict(model="linear", lr=1e-3, weight_decay=1e-5, batch_size=512, schedule="none", epochs=60),
}
SETTING_TEXT = {
    "authors": "MLP 784-500-10 (no BatchNorm), Adam lr 1e-3, wd 1e-5, batch 512, constant lr, 60 epochs",
    "today": "MLP 256-256 (BatchNorm), Adam lr 1e-3, wd 1e-4, batch 128, cosine, 60 epochs",
    "cross": "MLP 784-500-10 (no BatchNorm) with today's recipe (wd 1e-4, batch 128, cosine, 60 epochs)",
    "linear": "linear model 784-10 with the authors' recipe (Adam lr 1e-3, wd 1e-5, batch 512, constant lr, 60 epochs)",
}
# arm -> (config changes, oracle clusters?)
ARMS: dict[str, tuple[dict[str, Any], bool]] = {
    "none": ({"method": "none"}, False),
    "mixup": ({"method": "mixup"}, False),
    "icm": ({"method": "icm"}, False),
    "icm_in_batch": ({"method": "icm_in_batch", "self_pairing": True}, False),
    "share": ({"method": "icm_share_labels"}, False),
    "share_in_batch": ({"method": "icm_share_labels_in_batch", "self_pairing": True}, False),
    "oracle_icm": ({"method": "icm"}, True),
    "oracle_share_in_batch": ({"method": "icm_share_labels_in_batch", "self_pairing": True}, True),
    "icm_encoder": ({"method": "icm", "cluster_features": "encoder"}, False),
    "share_in_batch_encoder": ({"method": "icm_share_labels_in_batch", "self_pairing": True,
                                "cluster_features": "encoder"}, False),
}
ARM_TEXT = {
    "none": "no mixing",
    "mixup": "mixup (random partner)",
    "icm": "ICM as today (whole-set partner, never self, inputs mixed)",
    "icm_in_batch": "ICM, partner inside the batch, self allowed (`icm_in_batch`, `self_pairing`)",
    "share": "label sharing, whole-set partner (`icm_share_labels`)",
    "share_in_batch": "label sharing inside the batch, self allowed: the authors' HEAD train.py (`icm_share_labels_in_batch`)",
    "oracle_icm": "diagnostic: ICM on oracle clusters (k-means inside each true class)",
    "oracle_share_in_batch": "diagnostic: the authors' label sharing on oracle clusters",
    "icm_encoder": "ICM as today on the in-project encoder's clusters (`cluster_features=encoder`)",
    "share_in_batch_encoder": "the authors' label sharing on the in-project encoder's clusters",
}
SETTING_ARMS = {
    "authors": [a for a in ARMS if not a.endswith("_encoder")],
    "encoder": ["none", "mixup", "icm_encoder", "share_in_batch_encoder"],
    "today": ["none", "mixup", "icm", "share_in_batch", "oracle_icm"],
    "cross": ["none", "mixup", "icm", "share_in_batch"],
    "linear": ["none", "mixup", "icm", "share_in_batch"],
}
LADDER = (0.1, 0.2, 0.4)
LADDER_ARMS = ("none", "icm", "share_in_batch")
# the losses part: the authors' setting, SCL-NL's arms with the other two losses the issue names
OTHER_LOSSES = ("fwd", "scl_exp")
LOSS_ARMS = ("none", "mixup", "icm", "share_in_batch")
# the digits ladder: 1,797 images (8x8), so the smallest MNIST fraction (~130 training rows here) is left out
DIGITS_LADDER = (0.2, 0.4, 0.8)
# (setting, train_fraction) of the digits part: the authors' ladder, and today's setting at digits' full size
DIGITS_RUNS = (*(("authors", tf) for tf in DIGITS_LADDER), ("today", 0.8))
# PC's curve: (name, setting changes, losses); one seed, constant lr so one run is the whole curve
PC_SETTINGS: list[tuple[str, dict[str, Any], tuple[str, ...]]] = [
    ("today's MLP (BatchNorm), batch 128, lr 1e-3, wd 1e-4", dict(model="mlp", hidden=256, lr=1e-3, weight_decay=1e-4,
     batch_size=128, schedule="none", epochs=100), ("pc",)),
    ("MLP 784-500-10 (no BN), batch 128, lr 1e-3, wd 1e-4", dict(model="mlp1", hidden=500, lr=1e-3,
     weight_decay=1e-4, batch_size=128, schedule="none", epochs=100), ("pc",)),
    ("MLP 784-500-10, the ICM authors' recipe (batch 512, lr 1e-3, wd 1e-5)", dict(SETTINGS["authors"], epochs=150),
     ("pc",)),
    ("MLP 784-500-10, Ishida et al.'s recipe (batch 256, lr 5e-5, wd 1e-4)", dict(model="mlp1", hidden=500,
     lr=5e-5, weight_decay=1e-4, batch_size=256, schedule="none", epochs=200), ("pc", "scl_nl")),
]
PC_MARKS = (10, 30, 60, 100, 150, 200)
PUBLISHED = ("Ishida et al.'s code as run in github.com/RoyalSkye/ATCL's README (full 60k MNIST, MLP 784-500-10, "
             "Adam lr 5e-5, wd 1e-4, batch 256, 300 epochs; last / best epoch): PC 84.75 / 85.52, URE-GA 93.14, "
             "SCL-NL 93.89, FWD 93.86")


# ----------------------------------------------------------------------------- running
class Protocol:
    def __init__(self, mnist_dir: str, cache_dir: str | None, seeds: tuple[int, ...]):
        self.mnist_dir, self.cache_dir, self.seeds = mnist_dir, cache_dir, seeds
        self._data: dict[tuple[str, float], Dataset] = {}
        self.trained = 0
        self.train_seconds = 0.0

    def config(self, setting: dict[str, Any], arm: str, seed: int, **changes: Any) -> TrainConfig:
        values = dict(dataset="mnist", data_dir=self.mnist_dir, loss="scl_nl", k=50, cluster_features="raw",
                      alpha=1.0, seed=seed, data_seed=seed, device="cpu", num_threads=1, cache_dir=self.cache_dir)
        values.update(setting)
        values.update(ARMS[arm][0])
        values.update(changes)
        return TrainConfig(**values)

    def dataset(self, cfg: TrainConfig) -> Dataset:
        key = (cfg.dataset, cfg.train_fraction)
        if key not in self._data:
            self._data[key] = load_dataset(cfg)
        return self._data[key]

    def _path(self, cfg: TrainConfig, oracle: bool) -> Path:
        root = Path(self.cache_dir) if self.cache_dir else default_cache_dir()
        key = json.dumps({k: v for k, v in cfg.to_dict().items() if k not in ("cache_dir", "data_dir")},
                         sort_keys=True)
        digest = hashlib.sha256(f"runs-v{RUNS_VERSION}|icm-protocol|oracle={oracle}|{key}".encode()).hexdigest()[:32]
        return root / "runs" / f"{digest}.json"

    def stored(self, cfg: TrainConfig, oracle: bool = False) -> dict[str, Any] | None:
        path = self._path(cfg, oracle)
        try:
            return json.loads(path.read_text())
        except (OSError, ValueError):
            return None

    def run(self, cfg: TrainConfig, oracle: bool = False, train: bool = True) -> dict[str, Any] | None:
        """Per-epoch curves of cfg (trained once, then read from the run store); None if absent and train=False."""
        found = self.stored(cfg, oracle)
        if found is not None or not train:
            return found
        t0 = time.perf_counter()
        data = prepare(cfg, self.dataset(cfg), torch.device("cpu"))
        if oracle:
            data.clusters = oracle_clusters(data.x, data.y, cfg.k, cfg.seed)
        result = fit(cfg, data)
        entry = {"curve": {m: [h.get(m, math.nan) for h in result.history] for m in CURVE},
                 "seconds": time.perf_counter() - t0, "oracle": oracle,
                 "config": {k: v for k, v in cfg.to_dict().items() if k not in ("cache_dir", "data_dir")}}
        write_text_atomic(self._path(cfg, oracle), json.dumps(entry))
        self.trained += 1
        self.train_seconds += entry["seconds"]
        acc = entry["curve"]["test_acc"]
        print(f"[run] {cfg.model} {cfg.method} {cfg.resolved_loss} tf={cfg.train_fraction} oracle={oracle} "
              f"seed={cfg.seed}: last {acc[-1]:.3f} best {max(acc):.3f} in {entry['seconds']:.0f}s",
              file=sys.stderr, flush=True)
        return entry

    def encoder_ran(self) -> bool:
        """Some run on the encoder's clusters is stored (so its features are cached too)."""
        return any(self.run(c, o, train=False) for c, o in self.part_runs("encoder") if c.cluster_features == "encoder")

    # the runs of each part, in the order they are trained
    def part_runs(self, part: str) -> list[tuple[TrainConfig, bool]]:
        out: list[tuple[TrainConfig, bool]] = []
        if part in SETTING_ARMS:
            for seed in self.seeds:
                for arm in SETTING_ARMS[part]:
                    out.append((self.config(setting_of(part), arm, seed), ARMS[arm][1]))
        elif part == "ladder":
            for tf in LADDER:
                for seed in self.seeds:
                    for arm in LADDER_ARMS:
                        out.append((self.config(SETTINGS["authors"], arm, seed, **ladder_changes(tf)), False))
        elif part == "losses":
            for loss in OTHER_LOSSES:
                for seed in self.seeds:
                    for arm in LOSS_ARMS:
                        out.append((self.config(SETTINGS["authors"], arm, seed, loss=loss), False))
        elif part == "digits":
            for setting, tf in DIGITS_RUNS:
                for seed in self.seeds:
                    for arm in LADDER_ARMS:
                        out.append((self.config(SETTINGS[setting], arm, seed, **digits_changes(tf)), False))
        elif part == "pc":
            for _, setting, losses in PC_SETTINGS:
                for loss in losses:
                    out.append((self.config(setting, "none", self.seeds[0], loss=loss), False))
        return out


def setting_of(part: str) -> dict[str, Any]:
    """The encoder part and the ladder run in the authors' setting."""
    return SETTINGS.get(part, SETTINGS["authors"])


def ladder_changes(tf: float) -> dict[str, Any]:
    """A smaller training set gets proportionally more epochs: the same number of optimiser steps as at 0.8."""
    if tf == 0.8:
        return {}
    return {"train_fraction": tf, "epochs": int(round(SETTINGS["authors"]["epochs"] * 0.8 / tf))}


def digits_changes(tf: float) -> dict[str, Any]:
    """The digits ladder sees as many examples as the authors' setting on MNIST (60 epochs of ~7,200 rows):
    1,797 * tf * 0.9 training rows, so 334 epochs at 0.8 and 1,336 at 0.2."""
    mnist_rows = 10000 * 0.8 * 0.9
    return {"dataset": "digits", "train_fraction": tf,
            "epochs": int(round(SETTINGS["authors"]["epochs"] * mnist_rows / (1797 * tf * 0.9)))}


def oracle_clusters(x: torch.Tensor, y: torch.Tensor, k: int, seed: int) -> Clustering:
    """k-means inside each true class, about k clusters in all (k * class share each): purity 100%."""
    feats = cluster_features(x, "raw")
    assign = torch.empty(len(y), dtype=torch.long)
    gen = torch.Generator().manual_seed(seed)
    offset = 0
    for c in y.unique().tolist():
        rows = (y == c).nonzero().squeeze(1)
        kc = max(1, min(len(rows), round(k * len(rows) / len(y))))
        assign[rows] = kmeans(feats[rows], kc, gen).assign + offset
        offset += kc
    return Clustering(assign=assign, inertia=0.0, cache_hit=False, seconds=0.0, path=Path("oracle"))


# ----------------------------------------------------------------------------- readings
def readings(entry: dict[str, Any]) -> dict[str, float]:
    """last epoch, best epoch on test (the ICM authors' number), and the lowest-val_scel_ts epoch."""
    acc, val = entry["curve"]["test_acc"], entry["curve"]["val_scel_ts"]
    sel = min(range(len(val)), key=lambda i: (val[i] if math.isfinite(val[i]) else math.inf, i))
    q = max(1, len(acc) // 4)
    return {"last": acc[-1], "best_test": max(acc), "val_selected": acc[sel],
            "move": acc[-1] - acc[-1 - q], "noise": entry["curve"]["noise_rate"][-1]}


READING_TEXT = {"last": "last epoch", "best_test": "best epoch on test (authors' reading)",
                "val_selected": "epoch picked by val_scel_ts"}


def pmv(values: list[float]) -> str:
    if not values:
        return "–"
    m, s = mean_std(values)
    return f"{100 * m:.1f} ± {100 * s:.1f}"


def verdict(a: list[float], b: list[float]) -> str:
    if len(a) != len(b) or not a:
        return "–"
    diff, word = compare(a, b)
    return f"{100 * diff:+.1f} ({word})"


def verdict_cells(a: list[dict[str, float]], b: list[dict[str, float]]) -> str:
    """A verdicts row's three cells: arm a against arm b, last epoch, val-selected, best on test."""
    return " | ".join(verdict([r[k] for r in a], [r[k] for r in b]) for k in ("last", "val_selected", "best_test"))


def last_and_selected(v: list[dict[str, float]]) -> str:
    """A ladder or loss table's cell: last epoch / val-selected."""
    return f"{pmv([r['last'] for r in v])} / {pmv([r['val_selected'] for r in v])}"


# ----------------------------------------------------------------------------- features (no training)
def feature_rows(proto: Protocol, encoder: bool) -> list[str]:
    """encoder: also the in-project encoder's clusters (trains it unless cached, as fit.prepare would)."""
    cfg = proto.config(SETTINGS["authors"], "icm", proto.seeds[0])
    data = prepare(cfg, proto.dataset(cfg), torch.device("cpu"))
    root = Path(proto.cache_dir) if proto.cache_dir else default_cache_dir()
    rows = []
    for name in ("raw", "pca", "encoder", "oracle"):
        if name == "encoder" and not encoder:
            continue
        if name == "oracle":
            assign = oracle_clusters(data.x, data.y, cfg.k, cfg.seed).assign
        else:
            feats = cluster_features(data.x, name, 32, data_key=data_key(proto.dataset(cfg), data.train_index),
                                     cache_dir=root)
            assign = kmeans(feats, cfg.k, torch.Generator().manual_seed(cfg.seed)).assign
        counts = torch.zeros(int(assign.max()) + 1, 10)
        counts.index_put_((assign, data.y), torch.ones(len(assign)), accumulate=True)
        purity = counts.max(1).values.sum().item() / len(assign)
        partner = ClusterIndex(assign).partners(torch.arange(len(assign)), torch.Generator().manual_seed(1))
        # anchor side: the partner's complementary label is the anchor's true class (the shared label is wrong)
        noise = (data.targets[partner].gather(1, data.y[:, None]) > 0).float().mean().item()
        rows.append(f"| {name} | {100 * purity:.1f} | {100 * noise:.1f} |")
    return rows


# ----------------------------------------------------------------------------- report
def render(proto: Protocol, features: list[str] | None) -> str:
    L: list[str] = [MARK_START, "## ICM and PC as their authors ran them (issue 22)", ""]
    L.append("Generated by `python -m experiments.icm_protocol` (section between the icm-protocol markers; "
             "the runs are in the run store, so `--report-only` rebuilds it). MNIST files: the 10k MNIST test "
             "set split 80/20 (train_fraction 0.8: 7,200 training rows after the 10% validation split, 2,000 test "
             "rows); SCL-NL; uniform single complementary labels; k = 50 clusters on raw pixels; alpha 1; seed s "
             f"sets the training seed and data_seed (a fresh CL draw per seed); seeds {list(proto.seeds)}; CPU, "
             "one thread.")
    L.append("")
    L.append("**What was cut** (the issue's full protocol is ~3 h on 2 cores): " + "; ".join(cuts(proto)) + ". "
             "The authors' label sharing gives a self-paired anchor weight 2(1-λ) on its own CL (rows not summing "
             "to 1) and drops an anchor alone in its batch-cluster; here a self pair keeps the anchor's row and a "
             "lone anchor pairs with itself; their one λ per batch is one λ per example here (same distribution).")
    L.append("")
    if features:
        L += ["**Clusters (k = 50, training rows of seed 0): purity and anchor-side pair noise (%, share of "
              "anchors whose same-cluster partner's CL is the anchor's true class)**", "",
              "| features | purity | pair noise |", "|---|---|---|", *features, ""]
    claims: list[str] = []
    for part in ("authors", "encoder", "today", "cross", "linear"):
        table = settings_table(proto, part, claims)
        if table:
            L += table
    L += losses_table(proto, claims)
    L += ladder_table(proto, claims)
    L += digits_table(proto, claims)
    pcl = pc_table(proto)
    if pcl:
        L += pcl
    L += reading(proto)
    if claims:
        L += ["**Verdicts (2-SE rule; gaps in points; last epoch and validation-selected)**", "",
              "| claim | setting | last epoch | val-selected | best on test (authors') |", "|---|---|---|---|---|",
              *claims, ""]
    stored = {}
    for part in PARTS:
        for c, o in proto.part_runs(part):
            e = proto.run(c, o, train=False)
            if e is not None:
                stored[proto._path(c, o)] = e["seconds"]
    L.append(f"Budget: {len(stored)} runs in this section, {sum(stored.values()) / 60:.1f} min of training in all "
             "(wall time of one thread on the shared machine, clustering included); "
             f"{proto.trained} trained by this invocation, the rest read from the run store.")
    L.append(MARK_END)
    return "\n".join(L)


def _seeds_run(proto: Protocol, part: str, arm: str = "none", **changes: Any) -> int:
    return len(_arm_values(proto, part, arm, **changes))


def cuts(proto: Protocol) -> list[str]:
    """What the stored runs leave out of the issue's protocol, computed from the run store."""
    n = len(proto.seeds)
    parts = ", ".join(f"{p} {_seeds_run(proto, p)}" for p in ("authors", "today", "cross", "linear"))
    losses = ", ".join(f"{loss} {_seeds_run(proto, 'authors', loss=loss)}" for loss in OTHER_LOSSES)
    ladder = ", ".join(f"{tf}: {_seeds_run(proto, 'ladder', **ladder_changes(tf))}" for tf in LADDER)
    digits = ", ".join(f"{tf}: {_seeds_run(proto, 'authors', **digits_changes(tf))}" for tf in DIGITS_LADDER)
    out = [f"seeds run of {n}: {parts}; losses {losses}; the MNIST ladder {ladder}; digits {digits}",
           "60 epochs in the authors' setting, not 300 (no mixing plateaus by epoch ~20 at this size: a 150-epoch "
           "seed-0 run stayed within 88.1-88.6 from epoch 11 to 150; the last-quarter move column shows what each "
           "curve still did); the authors re-create Adam every epoch, here it is created once",
           "PCA features in the purity table only (not trained on)",
           "fewer arms outside the authors' setting (today's: none, mixup, icm, the authors' label sharing, oracle "
           "ICM; cross, linear and the other losses: none, mixup, icm, label sharing; the ladders: no mixup)",
           "PC's curve with one seed and 100-200 epochs; URE-GA not rerun in Ishida's recipe"]
    if not proto.encoder_ran():
        out.insert(2, "the in-project encoder's clusters not trained on (its part did not run)")
    return out


def _arm_values(proto: Protocol, part: str, arm: str, **changes: Any) -> list[dict[str, float]]:
    setting = setting_of(part)
    out = []
    for seed in proto.seeds:
        entry = proto.run(proto.config(setting, arm, seed, **changes), ARMS[arm][1], train=False)
        if entry is not None:
            out.append(readings(entry))
    return out


def settings_table(proto: Protocol, part: str, claims: list[str]) -> list[str]:
    if part == "encoder" and not proto.encoder_ran():
        return []  # its none / mixup arms are the authors' part's
    vals = {arm: _arm_values(proto, part, arm) for arm in SETTING_ARMS[part]}
    if not any(vals.values()):
        return []
    L = [f"**{part}: {SETTING_TEXT.get(part, SETTING_TEXT['authors'])}. Test accuracy (%), mean ± std over seeds, three readings**", "",
         "| arm | seeds | last epoch | best epoch on test (authors' reading) | val-selected | last-quarter move | "
         "noise rate |", "|---|---|---|---|---|---|---|"]
    for arm, v in vals.items():
        if not v:
            continue
        L.append(f"| {ARM_TEXT[arm]} | {len(v)} | {pmv([r['last'] for r in v])} | {pmv([r['best_test'] for r in v])}"
                 f" | {pmv([r['val_selected'] for r in v])} | {100 * mean_std([r['move'] for r in v])[0]:+.1f} | "
                 f"{100 * mean_std([r['noise'] for r in v])[0]:.1f} |")
    L.append("")
    for arm in SETTING_ARMS[part]:
        if arm in ("none", "mixup") or not vals[arm]:
            continue
        for other in ("none", "mixup"):
            a, b = vals[arm], vals[other]
            if len(a) == len(b) and a:
                claims.append(f"| {arm} beats {other} | {part} | " + verdict_cells(a, b) + " |")
    return L


def ladder_table(proto: Protocol, claims: list[str]) -> list[str]:
    rows = []
    for tf in (*LADDER, 0.8):
        vals = {arm: _arm_values(proto, "ladder", arm, **ladder_changes(tf)) for arm in LADDER_ARMS}
        if not any(vals.values()):
            continue
        n = int(round(tf * 10000 * 0.9))
        cells = [last_and_selected(vals[a]) for a in LADDER_ARMS]
        epochs = ladder_changes(tf).get("epochs", SETTINGS["authors"]["epochs"])
        rows.append(f"| {tf} (~{n} rows, {epochs} epochs) | " + " | ".join(cells) + " |")
        for arm in ("icm", "share_in_batch"):
            a, b = vals[arm], vals["none"]
            if tf != 0.8 and len(a) == len(b) and a:
                claims.append(f"| {arm} beats none | authors, train_fraction {tf} | " + verdict_cells(a, b) + " |")
    if not rows:
        return []
    return ["**Size ladder, the authors' setting (epochs scaled so every size gets the same optimiser steps): "
            "test accuracy (%) last epoch / val-selected, mean ± std over seeds; the test split is the rest of "
            "the 10k rows (9,000 at 0.1, 2,000 at 0.8)**", "", "| train_fraction | " + " | ".join(LADDER_ARMS) + " |",
            "|---|" + "---|" * len(LADDER_ARMS), *rows, ""]


def losses_table(proto: Protocol, claims: list[str]) -> list[str]:
    """The authors' setting with FWD and SCL-EXP: the same arms as SCL-NL's (its rows are the authors part)."""
    rows = []
    for loss in ("scl_nl", *OTHER_LOSSES):
        vals = {arm: _arm_values(proto, "authors", arm, loss=loss) for arm in LOSS_ARMS}
        if not any(vals.values()):
            continue
        cells = [last_and_selected(vals[a]) for a in LOSS_ARMS]
        rows.append(f"| {loss} | {len(vals['none'])} | " + " | ".join(cells) + " |")
        for arm in ("icm", "share_in_batch"):
            for other in ("none", "mixup"):
                a, b = vals[arm], vals[other]
                if loss != "scl_nl" and len(a) == len(b) and a:
                    claims.append(f"| {arm} beats {other} | authors, {loss} | " + verdict_cells(a, b) + " |")
    if len(rows) < 2:
        return []
    return ["**The CLL loss, the authors' setting: test accuracy (%) last epoch / val-selected, mean ± std over "
            "seeds (scl_nl's row is the authors part)**", "", "| loss | seeds | " + " | ".join(LOSS_ARMS) + " |",
            "|---|---|" + "---|" * len(LOSS_ARMS), *rows, ""]


def digits_table(proto: Protocol, claims: list[str]) -> list[str]:
    rows = []
    for part, tf in DIGITS_RUNS:
        vals = {arm: _arm_values(proto, part, arm, **digits_changes(tf)) for arm in LADDER_ARMS}
        if not any(vals.values()):
            continue
        n = int(round(1797 * tf * 0.9))
        cells = [last_and_selected(vals[a]) for a in LADDER_ARMS]
        which = "" if part == "authors" else ", today's MLP (BatchNorm) and recipe"
        rows.append(f"| {tf} (~{n} rows, {digits_changes(tf)['epochs']} epochs{which}) | " + " | ".join(cells) + " |")
        for arm in ("icm", "share_in_batch"):
            a, b = vals[arm], vals["none"]
            if len(a) == len(b) and a:
                claims.append(f"| {arm} beats none | digits{which}, train_fraction {tf} | " + verdict_cells(a, b) + " |")
    if not rows:
        return []
    return ["**Size ladder on digits (scikit-learn's 1,797 8x8 images), the authors' model and recipe, k = 50: "
            "test accuracy (%) last epoch / val-selected, mean ± std over seeds (the last row: today's setting)**", "",
            "| train_fraction | " + " | ".join(LADDER_ARMS) + " |", "|---|" + "---|" * len(LADDER_ARMS), *rows, ""]


def pc_table(proto: Protocol) -> list[str]:
    rows = []
    for name, setting, losses in PC_SETTINGS:
        for loss in losses:
            entry = proto.run(proto.config(setting, "none", proto.seeds[0], loss=loss), train=False)
            if entry is None:
                continue
            acc, tl = entry["curve"]["test_acc"], entry["curve"]["train_loss"]
            marks = " | ".join(f"{100 * acc[e - 1]:.1f}" if e <= len(acc) else "" for e in PC_MARKS)
            peak = max(range(len(acc)), key=lambda i: acc[i])
            neg = next((i + 1 for i, v in enumerate(tl) if v < 0), None)
            rows.append(f"| {name} | {loss} | {marks} | {100 * acc[peak]:.1f} @ {peak + 1} | {min(tl):.3f} | "
                        f"{neg if neg else 'never'} |")
    if not rows:
        return []
    return ["**PC's learning curve beside the others (seed 0, constant lr, method none): test accuracy (%) at "
            "epoch**", "", "| setting | loss | " + " | ".join(str(e) for e in PC_MARKS) +
            " | best @ epoch | lowest train loss | first epoch with train loss < 0 |",
            "|---|---|" + "---|" * (len(PC_MARKS) + 3), *rows, "",
            f"Published: {PUBLISHED}.", ""]


def reading(proto: Protocol) -> list[str]:
    """The plain-language reading, computed from the stored runs (sentences only for parts that ran)."""
    out: list[str] = []
    variants = ("icm", "icm_in_batch", "share", "share_in_batch", "icm_encoder", "share_in_batch_encoder")
    wins, losses, test_wins = [], [], []
    for part in ("authors", "encoder", "today", "cross", "linear", *[f"ladder {tf}" for tf in LADDER],
                 *[f"losses {loss}" for loss in OTHER_LOSSES], *[f"digits {tf}" for tf in DIGITS_LADDER], "digits 0.8 today"):
        if part.startswith("ladder"):
            tf = float(part.split()[1])
            vals = {a: _arm_values(proto, "ladder", a, **ladder_changes(tf)) for a in LADDER_ARMS}
        elif part.startswith("losses"):
            vals = {a: _arm_values(proto, "authors", a, loss=part.split()[1]) for a in LOSS_ARMS}
        elif part.startswith("digits"):
            setting = "today" if part.endswith("today") else "authors"
            vals = {a: _arm_values(proto, setting, a, **digits_changes(float(part.split()[1]))) for a in LADDER_ARMS}
        else:
            vals = {a: _arm_values(proto, part, a) for a in SETTING_ARMS[part]}
        none = vals.get("none") or []
        for arm, v in vals.items():
            if arm not in variants or not v or len(v) != len(none) or len(v) < 2:
                continue
            for key in ("last", "val_selected"):
                diff, word = compare([r[key] for r in v], [r[key] for r in none])
                item = f"{arm} in {part} ({READING_TEXT[key]}: {100 * diff:+.1f})"
                (wins if word == "better" else losses if word == "worse" else []).append(item)
            diff, word = compare([r["best_test"] for r in v], [r["best_test"] for r in none])
            if word == "better":
                test_wins.append(f"{arm} in {part} ({100 * diff:+.1f})")
    if not wins and not losses and not any(_arm_values(proto, "authors", "none")):
        return []
    out.append("**Reading.**")
    out.append("")
    if wins:
        out.append("- ICM (a variant on clusters a user can compute) beats no mixing beyond 2 SE in: "
                   + "; ".join(wins) + ".")
    else:
        out.append("- **No setting run here reproduces an ICM-over-none gain with clusters a user can compute** "
                   "(raw pixels, and the encoder where its part ran): every variant ties with or loses to no "
                   "mixing on the last-epoch and the validation-selected readings, in every setting that ran; the "
                   "large gains hold against mixup only.")
    if test_wins:
        out.append("- Read as the authors read (best epoch on the test set, not available to a user), ICM beats no "
                   "mixing beyond 2 SE in: " + "; ".join(test_wins) + ".")
    if losses:
        out.append("- Worse than no mixing beyond 2 SE: " + "; ".join(losses) + ".")
    o_share, o_icm = _arm_values(proto, "authors", "oracle_share_in_batch"), _arm_values(proto, "authors", "oracle_icm")
    none, share = _arm_values(proto, "authors", "none"), _arm_values(proto, "authors", "share_in_batch")
    if o_share and len(o_share) == len(none) and len(share) == len(none):
        d_o, w_o = compare([r["last"] for r in o_share], [r["last"] for r in none])
        d_s, _ = compare([r["last"] for r in share], [r["last"] for r in none])
        line = (f"- What explains the reversal is the clusters, not the variant: with oracle clusters (k-means "
                f"inside each true class: purity 100%, no pair noise) the authors' label sharing beats no mixing "
                f"by {100 * d_o:+.1f} points ({w_o}), with raw-pixel clusters (purity ~83%, the features table) it "
                f"is {100 * d_s:+.1f}.")
        if o_icm and len(o_icm) == len(none):
            d_i, w_i = compare([r["last"] for r in o_icm], [r["last"] for r in none])
            line += f" Input-mixing ICM on oracle clusters: {100 * d_i:+.1f} ({w_i})."
        out.append(line + " The authors cluster SimSiam ResNet-18 embeddings (checkpoints not published); "
                   "how close such features come to the oracle bound decides whether ICM helps.")
    trend = []
    for tf in (*LADDER, 0.8):
        n = _arm_values(proto, "ladder", "none", **ladder_changes(tf))
        v = _arm_values(proto, "ladder", "share_in_batch", **ladder_changes(tf))
        if n and len(n) == len(v):
            d, w = compare([r["last"] for r in v], [r["last"] for r in n])
            trend.append((tf, d, w))
    if len(trend) > 1:
        shrinks = trend[0][1] > trend[-1][1]
        out.append("- Size: the authors' label sharing minus no mixing, last epoch, by train_fraction: "
                   + ", ".join(f"{tf}: {100 * d:+.1f} ({w})" for tf, d, w in trend) + (
                       ". Whatever gain there is shows on the smallest sets (where seeds vary most) and shrinks as "
                       "rows are added: the trend gives no sign that more data (the authors' 50k rows, not "
                       "available here) would reverse the verdict with these clusters." if shrinks else
                       ". The gap grows with the training set: more data may favour ICM."))
    dig = []
    for part, tf in DIGITS_RUNS:
        n = _arm_values(proto, part, "none", **digits_changes(tf))
        v = _arm_values(proto, part, "share_in_batch", **digits_changes(tf))
        if n and len(n) == len(v):
            d, w = compare([r["last"] for r in v], [r["last"] for r in n])
            which = " with today's MLP" if part == "today" else ""
            dig.append(f"{tf}{which}: {100 * d:+.1f} ({w})")
    if dig:
        out.append("- Digits (a second dataset, 8x8 images, k = 50 on raw pixels): the authors' label sharing minus no "
                   "mixing, last epoch, by train_fraction: " + ", ".join(dig) + ".")
        out.append("- What a user gets from this: the `icm` preset searches the ICM variant, ICM as the paper "
                   "describes it or the authors' label sharing (`icm_share_labels_in_batch`, self pairing on), so a "
                   "search picks the label sharing where it wins (digits, small sets) and plain ICM or another "
                   "preset's `none` where it does not; the README's method table says where each won here.")
    mix = _arm_values(proto, "authors", "mixup")
    if mix:
        out.append(f"- The reading matters for mixing arms: mixup's best epoch on test ({pmv([r['best_test'] for r in mix])}) "
                   f"is far above its last epoch ({pmv([r['last'] for r in mix])}); the authors' reading (best epoch on "
                   "the test set) flatters noisy, oscillating curves, and a user without true labels gets the "
                   "val-selected column.")
    t_none = _arm_values(proto, "today", "none")
    gaps = {}
    for part in ("authors", "today", "cross"):
        n, v = _arm_values(proto, part, "none"), _arm_values(proto, part, "share_in_batch")
        if n and len(n) == len(v):
            gaps[part] = compare([r["last"] for r in v], [r["last"] for r in n])
    if t_none and none and len(gaps) > 1:
        same = len({d > 0 for d, _ in gaps.values()}) == 1
        out.append(f"- Model and recipe: no mixing reaches {pmv([r['last'] for r in t_none])} with today's MLP "
                   f"(BatchNorm) and {pmv([r['last'] for r in none])} with the authors' MLP and recipe; the authors' "
                   "label sharing minus no mixing (last epoch) is " + ", ".join(
                       f"{100 * d:+.1f} ({w}) in {p}" for p, (d, w) in gaps.items())
                   + ("; the same sign everywhere, so neither the model nor the recipe explains the reversal."
                      if same else "; the sign changes with the setting (see the tables)."))
    pc = []
    for name, setting, losses_ in PC_SETTINGS:
        e = proto.run(proto.config(setting, "none", proto.seeds[0], loss="pc"), train=False)
        if e is None:
            continue
        acc, tl = e["curve"]["test_acc"], e["curve"]["train_loss"]
        peak = max(range(len(acc)), key=lambda i: acc[i])
        neg = next((i + 1 for i, v in enumerate(tl) if v < 0), None)
        pc.append(f"{name}: peak {100 * acc[peak]:.1f} at epoch {peak + 1}, {100 * acc[-1]:.1f} at epoch {len(acc)}, "
                  f"training loss below 0 from epoch {neg}" if neg else
                  f"{name}: peak {100 * acc[peak]:.1f} at epoch {peak + 1}, {100 * acc[-1]:.1f} at epoch {len(acc)}, "
                  "training loss never below 0")
    if pc:
        out.append("- PC: " + "; ".join(pc) + ". Why it unlearns: PC's objective is an unbiased estimate of a "
                   "risk that cannot be negative, yet per example it goes down to -(C-1)(C-2)/2 = -36 (the "
                   "complementary label scored below all nine other classes with a full margin, whichever of them "
                   "wins). Once the training value is below 0 the model is fitting the estimator, not the risk "
                   "(the overfitting Ishida et al. 2019 correct with the non-negative / gradient-ascent URE), and "
                   "at lr 1e-3 it reaches that floor (lowest training loss in the table) on 7,200 rows: every "
                   "training CL is ranked last, which says nothing about the true class among the other nine, and "
                   "test accuracy falls from its peak at epoch 1-3. BatchNorm makes the fall steeper (today's MLP "
                   "ends lowest); Ishida's lr 5e-5 delays it (below 0 later, a later and higher peak) but does not "
                   "stop it. The published 84.75 is on 60k rows, where memorising every CL takes far longer; that "
                   "size is not available here, so the data-size part of the explanation is an inference, not a "
                   "measurement.")
    out.append("")
    return out


def write_section(results_md: Path, section: str) -> None:
    """Replace this protocol's section of results.md (or append it), leaving the rest as it is."""
    text = results_md.read_text() if results_md.exists() else ""
    if MARK_START in text and MARK_END in text:
        head, rest = text.split(MARK_START, 1)
        text = head + section + rest.split(MARK_END, 1)[1]
    else:
        text = text.rstrip() + "\n\n" + section + "\n"
    write_text_atomic(results_md, text)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m experiments.icm_protocol", description=__doc__.split("\n")[0])
    ap.add_argument("--parts", nargs="+", choices=PARTS, default=list(PARTS), help="parts to train (default: all)")
    ap.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2, 3, 4])
    ap.add_argument("--mnist-dir", default="../shared/data/mnist")
    ap.add_argument("--cache-dir", default=None, help="run store and cluster cache (default $MIXTUNE_CACHE or ~/.cache/mixtune)")
    ap.add_argument("--out", default="docs/results.md")
    ap.add_argument("--report-only", action="store_true", help="train nothing; assemble from the stored runs")
    args = ap.parse_args(argv)
    if not Path(args.mnist_dir).is_dir():
        print(f"error: --mnist-dir {args.mnist_dir}: no such folder", file=sys.stderr)
        return 2
    torch.set_num_threads(1)
    proto = Protocol(args.mnist_dir, args.cache_dir, tuple(args.seeds))
    encoder = "encoder" in args.parts and not args.report_only or proto.encoder_ran()
    features = feature_rows(proto, encoder)  # no training (but the encoder's, once): seconds of k-means
    if not args.report_only:
        for part in args.parts:
            for cfg, oracle in proto.part_runs(part):
                proto.run(cfg, oracle)
            write_section(Path(args.out), render(proto, features))  # each part's results as soon as it ends
    write_section(Path(args.out), render(proto, features))
    print(f"wrote {args.out}: {proto.trained} runs trained ({proto.train_seconds / 60:.1f} min)", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
