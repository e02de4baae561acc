"""The experiments: one function per claim, each returning a `Section` of tables, plots and a reading.

Readings are written from the numbers (see `runner.compare`): a claim 'holds' when the gap
exceeds two standard errors over seeds, is a 'tie' inside that band, and is 'reversed'
beyond it the other way. Plots are PNGs written next to the report.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # files only, no display
import matplotlib.pyplot as plt  # noqa: E402
import torch  # noqa: E402

from trainables.core.clustering import cached_clusters  # noqa: E402
from trainables.core.metrics import noise_rate, pair_impurity  # noqa: E402
from trainables.core.mixing import ClusterIndex, mix_targets, random_pairing  # noqa: E402
from trainables.core.split import split_and_label  # noqa: E402

from .runner import Runner, compare, data_key, mean_std, pm  # noqa: E402

CLL_METHODS = ("none", "mixup", "icm")
# FWD is not the second loss: with the uniform transition matrix, -log(sum_j Q_jc p_j) =
# -log((1 - p_c) / (C - 1)), i.e. SCL-NL plus a constant, so it would repeat the SCL-NL row.
LOSSES = ("scl_nl", "ure_tnn")
FEATURES = ("raw", "pca", "encoder")


@dataclass
class Table:
    caption: str
    header: list[str]
    rows: list[list[str]]


@dataclass
class Section:
    title: str
    settings: str
    tables: list[Table] = field(default_factory=list)
    figures: list[str] = field(default_factory=list)
    reading: list[str] = field(default_factory=list)
    claims: list[tuple[str, str, str]] = field(default_factory=list)  # (claim, setting, "gap (verdict)")


def _verdict(word: str) -> str:
    return {"better": "holds", "worse": "reversed", "tie": "tie (within 2 SE)", "better?": "holds? (1 seed)", "worse?": "reversed? (1 seed)"}[word]


def _gap(a: list[float], b: list[float]) -> str:
    diff, word = compare(a, b)
    return f"{diff * 100:+.1f} ({_verdict(word)})"


def _errorbar(ax, xs, runs: list[list[float]], label: str, scale: float = 100.0, **kw) -> None:
    stats = [mean_std(v) for v in runs]
    ax.errorbar(xs, [m * scale for m, _ in stats], yerr=[s * scale for _, s in stats], label=label, capsize=3, marker="o", **kw)


# ----------------------------------------------------------------------------- ICM: noise (no training)
def _noise_rates(targets: torch.Tensor, y: torch.Tensor, partner: torch.Tensor) -> tuple[float, float, float]:
    """(anchor-side noise, the paper's pair noise, pair impurity) of mixing each row with `partner`.

    Anchor side (what fit logs): the mixed complementary vector puts weight on the anchor's
    true class. The paper's condition for a pair (i, j): ybar_i = y_j or ybar_j = y_i.
    """
    lam = torch.full((len(y), 1), 0.5)  # any lambda in (0, 1) gives the same support
    anchor = noise_rate(mix_targets(targets, targets[partner], lam), y)
    rows = torch.arange(len(y))
    pair = ((targets[partner, y] > 0) | (targets[rows, y[partner]] > 0)).float().mean().item()
    return anchor, pair, pair_impurity(y, y[partner])


def noise_and_purity(r: Runner, dataset: str, features: str, k: int, seed: int, num_cl: int = 1) -> dict[str, float]:
    """Noise of random vs intra-cluster pairs over the whole training split, and cluster purity.

    The rows, their complementary labels and the clustering are those `fit` trains the same
    config on: `split_and_label` (seeded by data_seed) and the cluster cache key of the
    training rows (the validation rows never enter).
    """
    cfg = r.seeded(dataset, seed, cl_type="multiple" if num_cl > 1 else "uniform", num_cl=num_cl)
    ds = r.dataset(cfg)
    split = split_and_label(cfg, ds)
    y, targets = split.y_train, split.train_targets  # (N,), (N, C)
    pairing = torch.Generator().manual_seed(seed + 1)
    idx = torch.arange(len(y))  # positions in the training rows, as fit's partners are
    rand = _noise_rates(targets, y, random_pairing(idx, pairing).partner)
    x = ds.x_train[split.train_index]
    cl = cached_clusters(x, data_key(ds, split.train_index), features, k, seed, cfg.pca_dim, r.profile.cache_dir)
    index = ClusterIndex(cl.assign)
    intra = _noise_rates(targets, y, index.partners(idx, pairing))
    counts = torch.zeros(k, ds.num_classes).index_put_((cl.assign, y), torch.ones(len(y)), accumulate=True)
    purity = (counts.max(1).values.sum() / len(y)).item()
    return {
        "random_anchor": rand[0], "random_pair": rand[1], "random_impurity": rand[2],
        "icm_anchor": intra[0], "icm_pair": intra[1], "icm_impurity": intra[2], "purity": purity,
    }  # fmt: skip


# ----------------------------------------------------------------------------- ICM
def icm_section(r: Runner, out: Path) -> Section:
    p = r.profile
    sec = Section(
        "1. Intra-Cluster Mixup for complementary-label learning",
        f"Uniform single complementary labels (cl_type=uniform), SCL-NL unless stated (second loss URE-TNN; FWD "
        f"equals SCL-NL plus a constant under uniform labels, so it would add nothing), MLP {p.hidden}-{p.hidden}, "
        f"Adam lr {p.lr}, batch {p.batch_size}, cosine schedule, alpha {p.alpha:g}, ICM k={p.k} on {p.cluster_features} features; "
        f"epochs {p.cll_epochs}; seeds {list(p.seeds)}; final-epoch test accuracy (%).",
    )
    # main comparison: none / mixup / icm x loss
    acc: dict[tuple[str, str, str], list[float]] = {}
    for ds in p.datasets:
        for loss in LOSSES:
            for m in CLL_METHODS:
                acc[ds, loss, m] = r.seeds(ds, method=m, loss=loss)
    rows = []
    for ds in p.datasets:
        for loss in LOSSES:
            a = [acc[ds, loss, m] for m in CLL_METHODS]
            rows.append([ds, loss, *(pm(v) for v in a), _gap(a[2], a[1]), _gap(a[2], a[0]), _gap(a[1], a[0])])
    sec.tables.append(Table(
        "Test accuracy (%), mean ± std over seeds; gaps in points with the verdict",
        ["dataset", "loss", "none", "mixup", "icm", "icm − mixup", "icm − none", "mixup − none"], rows,
    ))  # fmt: skip

    # noise rate vs k (no training), and accuracy vs k (training)
    noise: dict[tuple[str, int], list[dict[str, float]]] = {}
    for ds in p.datasets:
        for k in p.noise_k:
            noise[ds, k] = [noise_and_purity(r, ds, "pca", k, s) for s in p.seeds]
    acc_k: dict[tuple[str, int], list[float]] = {}
    for ds in p.datasets:
        for k in p.train_k:
            acc_k[ds, k] = r.seeds(ds, method="icm", k=k)
    rows = []
    for ds in p.datasets:
        rnd = [d["random_pair"] for k in p.noise_k for d in noise[ds, k]]
        rnd_a = [d["random_anchor"] for k in p.noise_k for d in noise[ds, k]]
        rows.append([ds, "random (mixup)", pm(rnd), pm(rnd_a), "–", pm(acc[ds, "scl_nl", "mixup"])])
        for k in p.noise_k:
            v = noise[ds, k]
            rows.append([
                ds, f"icm k={k}", pm([d["icm_pair"] for d in v]), pm([d["icm_anchor"] for d in v]),
                pm([d["purity"] for d in v]), pm(acc_k[ds, k]) if (ds, k) in acc_k else "–",
            ])  # fmt: skip
    sec.tables.append(Table(
        "Noise rate (%) of pairs over the whole training set: the paper's pair condition (ybar_i = y_j or ybar_j = y_i) "
        "and the anchor side fit logs (the mixed vector names the anchor's own class); cluster purity (%); "
        "ICM test accuracy (%) with SCL-NL (– = not trained at that k)",
        ["dataset", "pairing", "noise (paper, pair)", "noise (anchor side)", "purity", "test acc"], rows,
    ))  # fmt: skip
    fig, axes = plt.subplots(1, 2, figsize=(10, 3.8))
    for ds in p.datasets:
        ks = list(p.noise_k)
        _errorbar(axes[0], ks, [[d["icm_pair"] for d in noise[ds, k]] for k in ks], f"{ds}: intra-cluster")
        rnd = mean_std([d["random_pair"] for k in ks for d in noise[ds, k]])[0] * 100
        axes[0].axhline(rnd, ls="--", color=axes[0].lines[-1].get_color(), label=f"{ds}: random")
        _errorbar(axes[1], list(p.train_k), [acc_k[ds, k] for k in p.train_k], f"{ds}: icm")
        color = axes[1].lines[-1].get_color()
        axes[1].axhline(mean_std(acc[ds, "scl_nl", "mixup"])[0] * 100, ls="--", color=color, label=f"{ds}: mixup")
        axes[1].axhline(mean_std(acc[ds, "scl_nl", "none"])[0] * 100, ls=":", color=color, label=f"{ds}: none")
    for ax, ylabel, ks in zip(axes, ("pair noise rate (%)", "test accuracy (%)"), (p.noise_k, p.train_k)):
        ax.set_xscale("log")
        ax.set_xticks(list(ks), [str(k) for k in ks])
        ax.minorticks_off()
        ax.set_xlabel("k (clusters)")
        ax.set_ylabel(ylabel)
        ax.legend(fontsize=7)
        ax.grid(alpha=0.3)
    axes[0].set_title("Complementary-label noise of mixing pairs")
    axes[1].set_title("ICM accuracy vs k (SCL-NL)")
    fig.tight_layout()
    fig.savefig(out / "icm_noise_vs_k.png", dpi=110)
    plt.close(fig)
    sec.figures.append("icm_noise_vs_k.png")

    # class-imbalanced training set and several complementary labels per example
    imb: dict[tuple[str, str], list[float]] = {}
    multi: dict[tuple[str, int, str], list[float]] = {}
    for ds in p.datasets:
        for m in CLL_METHODS:
            imb[ds, m] = r.seeds(ds, method=m, imbalance_ratio=p.imbalance)
            for n in p.num_cls:
                multi[ds, n, m] = acc[ds, "scl_nl", m] if n == 1 else r.seeds(ds, method=m, cl_type="multiple", num_cl=n)
    rows = []
    for ds in p.datasets:
        a = [imb[ds, m] for m in CLL_METHODS]
        rows.append([ds, f"imbalance_ratio={p.imbalance:g}", *(pm(v) for v in a), _gap(a[2], a[1]), _gap(a[2], a[0])])
        for n in p.num_cls:
            a = [multi[ds, n, m] for m in CLL_METHODS]
            setting = "uniform, 1 CL" if n == 1 else f"multiple, num_cl={n}"
            rows.append([ds, setting, *(pm(v) for v in a), _gap(a[2], a[1]), _gap(a[2], a[0])])
    sec.tables.append(Table(
        "Class-imbalanced training set (SCL-NL, single CL) and several complementary labels per example (the open "
        "question): test accuracy (%)",
        ["dataset", "setting", "none", "mixup", "icm", "icm − mixup", "icm − none"], rows,
    ))  # fmt: skip
    # noise with several CLs: the mechanism behind the open question
    rows = []
    for ds in p.datasets:
        for n in p.num_cls:
            v = [noise_and_purity(r, ds, "pca", 10, s, num_cl=n) for s in p.seeds]
            rows.append([ds, str(n), pm([d["random_pair"] for d in v]), pm([d["icm_pair"] for d in v])])
    sec.tables.append(Table(
        "Pair noise rate (%) with num_cl complementary labels per example: random vs intra-cluster (k=10) pairs",
        ["dataset", "num_cl", "random", "icm k=10"], rows,
    ))  # fmt: skip

    # claims and reading
    for ds in p.datasets:
        for loss in LOSSES:
            sec.claims.append(("mixup hurts CLL (points lost to mixup)", f"{ds}, {loss}", _gap(acc[ds, loss, "none"], acc[ds, loss, "mixup"])))
            sec.claims.append(("ICM beats mixup", f"{ds}, {loss}", _gap(acc[ds, loss, "icm"], acc[ds, loss, "mixup"])))
            sec.claims.append(("ICM beats no mixup", f"{ds}, {loss}", _gap(acc[ds, loss, "icm"], acc[ds, loss, "none"])))
        best_k = max(p.train_k)
        sec.claims.append((f"ICM at k={best_k} beats mixup", f"{ds}, scl_nl", _gap(acc_k[ds, best_k], acc[ds, "scl_nl", "mixup"])))
        sec.claims.append((f"ICM at k={best_k} beats no mixup", f"{ds}, scl_nl", _gap(acc_k[ds, best_k], acc[ds, "scl_nl", "none"])))
        lo_k, hi_k = min(p.noise_k), max(p.noise_k)
        sec.claims.append((
            "intra-cluster pairs are less noisy than random ones, falling with k (noise points saved)",
            f"{ds}, k={lo_k}→{hi_k}",
            _gap([d["icm_pair"] for d in noise[ds, lo_k]], [d["icm_pair"] for d in noise[ds, hi_k]]),
        ))  # fmt: skip
        sec.claims.append(("ICM beats mixup, class-imbalanced", f"{ds}, ratio {p.imbalance:g}", _gap(imb[ds, "icm"], imb[ds, "mixup"])))
        for n in p.num_cls:
            if n > 1:
                sec.claims.append(("open: ICM beats mixup with several CLs", f"{ds}, num_cl={n}", _gap(multi[ds, n, "icm"], multi[ds, n, "mixup"])))
                sec.claims.append(("open: ICM beats no mixup with several CLs", f"{ds}, num_cl={n}", _gap(multi[ds, n, "icm"], multi[ds, n, "none"])))
    for ds in p.datasets:
        for loss in LOSSES:
            sec.reading.append(
                f"**{ds}, {loss}**: mixup − none {_gap(acc[ds, loss, 'mixup'], acc[ds, loss, 'none'])} points "
                f"(the paper: mixup hurts CLL); ICM − mixup {_gap(acc[ds, loss, 'icm'], acc[ds, loss, 'mixup'])}; "
                f"ICM − none {_gap(acc[ds, loss, 'icm'], acc[ds, loss, 'none'])} (the paper: ICM beats both)."
            )
        k_lo, k_hi = min(p.noise_k), max(p.noise_k)
        lo = mean_std([d["icm_pair"] for d in noise[ds, k_lo]])[0]
        hi = mean_std([d["icm_pair"] for d in noise[ds, k_hi]])[0]
        rnd = mean_std([d["random_pair"] for k in p.noise_k for d in noise[ds, k]])[0]
        sec.reading.append(
            f"**{ds}, noise**: random pairs are noisy in {rnd * 100:.1f}% of cases (≈ 2·(9/10)·(1/9) ≈ 19% expected for "
            f"10 balanced classes); intra-cluster pairs fall from {lo * 100:.1f}% at k={k_lo} to {hi * 100:.1f}% at "
            f"k={k_hi}, because purer clusters pair examples of the same class, whose complementary labels can never "
            "name each other's class."
        )
    return sec


# ----------------------------------------------------------------------------- clustering features
def features_section(r: Runner, out: Path) -> Section:
    p = r.profile
    sec = Section(
        "2. Clustering features: raw pixels vs PCA vs a self-supervised encoder",
        "k-means (k-means++, Lloyd) on L2-normalised features; `encoder` is a 3-layer strided CNN trained with "
        "SimCLR's NT-Xent on the training images only (no labels), cached under the cache directory "
        "(trainables/core/encoder.py, EncoderSettings defaults). ICM with SCL-NL, single uniform CLs, as in section 1.",
    )
    ks = sorted({10, max(p.noise_k)})
    purity: dict[tuple[str, str, int], list[dict[str, float]]] = {}
    acc: dict[tuple[str, str], list[float]] = {}
    for ds in p.datasets:
        for f in FEATURES:
            for k in ks:
                purity[ds, f, k] = [noise_and_purity(r, ds, f, k, s) for s in p.seeds]
            acc[ds, f] = r.seeds(ds, method="icm", k=10, cluster_features=f)
    rows = []
    for ds in p.datasets:
        for f in FEATURES:
            row = [ds, f]
            for k in ks:
                row += [pm([d["purity"] for d in purity[ds, f, k]]), pm([d["icm_pair"] for d in purity[ds, f, k]])]
            rows.append(row + [pm(acc[ds, f])])
    header = ["dataset", "features"]
    for k in ks:
        header += [f"purity k={k}", f"pair noise k={k}"]
    sec.tables.append(Table("Cluster purity (%), intra-cluster pair noise (%) and ICM test accuracy (%, k=10)", header + ["ICM acc"], rows))
    fig, axes = plt.subplots(1, 2, figsize=(9, 3.5))
    width = 0.8 / len(p.datasets)
    for i, ds in enumerate(p.datasets):
        xs = [j + i * width for j in range(len(FEATURES))]
        pur = [mean_std([d["purity"] for d in purity[ds, f, 10]]) for f in FEATURES]
        axes[0].bar(xs, [m * 100 for m, _ in pur], width, yerr=[s * 100 for _, s in pur], capsize=3, label=ds)
        a = [mean_std(acc[ds, f]) for f in FEATURES]
        axes[1].bar(xs, [m * 100 for m, _ in a], width, yerr=[s * 100 for _, s in a], capsize=3, label=ds)
    for ax, title in zip(axes, ("cluster purity, k=10 (%)", "ICM test accuracy, k=10 (%)")):
        ax.set_xticks([j + width * (len(p.datasets) - 1) / 2 for j in range(len(FEATURES))], FEATURES)
        ax.set_title(title)
        ax.legend(fontsize=7)
        ax.grid(alpha=0.3, axis="y")
    axes[1].set_ylim(bottom=max(0, min(mean_std(v)[0] for v in acc.values()) * 100 - 10))
    fig.tight_layout()
    fig.savefig(out / "features.png", dpi=110)
    plt.close(fig)
    sec.figures.append("features.png")
    for ds in p.datasets:
        pur = {f: [d["purity"] for d in purity[ds, f, 10]] for f in FEATURES}
        sec.claims.append(("learned (encoder) features give purer clusters than PCA", f"{ds}, k=10", _gap(pur["encoder"], pur["pca"])))
        sec.claims.append(("learned (encoder) features give better ICM than PCA", f"{ds}, k=10", _gap(acc[ds, "encoder"], acc[ds, "pca"])))
    for ds in p.datasets:
        best_p = max(FEATURES, key=lambda f: mean_std([d["purity"] for d in purity[ds, f, 10]])[0])
        best_a = max(FEATURES, key=lambda f: mean_std(acc[ds, f])[0])
        sec.reading.append(
            f"**{ds}**: purest clusters at k=10 from `{best_p}`; best ICM accuracy from `{best_a}`; encoder vs pca "
            f"accuracy {_gap(acc[ds, 'encoder'], acc[ds, 'pca'])} points, encoder vs raw "
            f"{_gap(acc[ds, 'encoder'], acc[ds, 'raw'])}."
        )
    return sec


# ----------------------------------------------------------------------------- Multi-Mix
def multimix_section(r: Runner, out: Path) -> Section:
    p = r.profile
    sec = Section(
        "3. Multi-Mix: K interpolations per pair",
        f"Ordinary labels, cross-entropy, method multimix (random pairs, K sorted lambdas ~ Beta(1, 1)), input and "
        f"manifold mixup (a random block input of the MLP per step); MLP {p.hidden}-{p.hidden}, epochs {p.ord_epochs}, "
        f"seeds {list(p.seeds)}; final-epoch test accuracy (%) and ECE (%, 15 bins). K=1 is plain mixup.",
    )
    acc: dict[tuple[str, str, int], list[float]] = {}
    ece: dict[tuple[str, str, int], list[float]] = {}
    none_acc, none_ece = {}, {}
    for ds in p.datasets:
        none_acc[ds] = r.seeds(ds, labels="ordinary", method="none")
        none_ece[ds] = r.seeds(ds, "test_ece", labels="ordinary", method="none")
        for level in ("input", "manifold"):
            for K in p.Ks:
                kw = dict(labels="ordinary", method="multimix", K=K, mix_level=level)
                acc[ds, level, K] = r.seeds(ds, **kw)
                ece[ds, level, K] = r.seeds(ds, "test_ece", **kw)
    rows = []
    for ds in p.datasets:
        rows.append([ds, "none", "–", pm(none_acc[ds]), pm(none_ece[ds]), "–", "–"])
        for level in ("input", "manifold"):
            for K in p.Ks:
                a, e = acc[ds, level, K], ece[ds, level, K]
                g_acc = "–" if K == 1 else _gap(a, acc[ds, level, 1])
                g_ece = "–" if K == 1 else _gap(ece[ds, level, 1], e).replace("holds", "lower ECE")
                rows.append([ds, level, str(K), pm(a), pm(e), g_acc, g_ece])
    sec.tables.append(Table(
        "Test accuracy and ECE (%); gaps vs K=1 (ECE gap = ECE(K=1) − ECE(K), positive = better calibrated)",
        ["dataset", "mix level", "K", "test acc", "ECE", "acc gain vs K=1", "ECE gain vs K=1"], rows,
    ))  # fmt: skip
    fig, axes = plt.subplots(1, 2, figsize=(9, 3.5))
    for ds in p.datasets:
        for level in ("input", "manifold"):
            _errorbar(axes[0], list(p.Ks), [acc[ds, level, K] for K in p.Ks], f"{ds} {level}")
            _errorbar(axes[1], list(p.Ks), [ece[ds, level, K] for K in p.Ks], f"{ds} {level}")
    for ax, ylabel in zip(axes, ("test accuracy (%)", "ECE (%)")):
        ax.set_xlabel("K (interpolations per pair)")
        ax.set_ylabel(ylabel)
        ax.set_xticks(list(p.Ks))
        ax.legend(fontsize=7)
        ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(out / "multimix.png", dpi=110)
    plt.close(fig)
    sec.figures.append("multimix.png")
    K_hi = max(p.Ks)
    for ds in p.datasets:
        for level in ("input", "manifold"):
            sec.claims.append((f"K={K_hi} beats K=1 in accuracy", f"{ds}, {level}", _gap(acc[ds, level, K_hi], acc[ds, level, 1])))
            sec.claims.append((f"K={K_hi} beats K=1 in calibration (ECE points saved)", f"{ds}, {level}", _gap(ece[ds, level, 1], ece[ds, level, K_hi])))
    for ds in p.datasets:
        for level in ("input", "manifold"):
            sec.reading.append(
                f"**{ds}, {level}**: accuracy K={K_hi} − K=1 {_gap(acc[ds, level, K_hi], acc[ds, level, 1])} points; "
                f"ECE K=1 − K={K_hi} {_gap(ece[ds, level, 1], ece[ds, level, K_hi])} points (positive = K>1 better "
                "calibrated, the paper's claim)."
            )
    return sec


# ----------------------------------------------------------------------------- Infinite Class Mixup
def infinite_section(r: Runner, out: Path) -> Section:
    p = r.profile
    sec = Section(
        "4. Infinite Class Mixup: dual-contrastive loss vs mixup cross-entropy",
        f"Ordinary labels, method infinite_class (random input mixup, alpha 1); contrastive_weight w mixes the "
        f"dual-contrastive loss (w=1, the paper) with mixup CE (w=0), contrastive_balance 0.5; balanced and "
        f"long-tailed (imbalance_ratio={p.imbalance:g}) training sets, balanced test set; MLP {p.hidden}-{p.hidden}, "
        f"epochs {p.ord_epochs}, seeds {list(p.seeds)}.",
    )
    acc: dict[tuple[str, float, float], list[float]] = {}
    ece: dict[tuple[str, float, float], list[float]] = {}
    for ds in p.datasets:
        for ratio in (1.0, p.imbalance):
            for w in p.weights:
                kw = dict(labels="ordinary", method="infinite_class", contrastive_weight=w, imbalance_ratio=ratio)
                acc[ds, ratio, w] = r.seeds(ds, **kw)
                ece[ds, ratio, w] = r.seeds(ds, "test_ece", **kw)
    rows = []
    for ds in p.datasets:
        for ratio in (1.0, p.imbalance):
            for w in p.weights:
                gap = "–" if w == 0 else _gap(acc[ds, ratio, w], acc[ds, ratio, 0.0])
                rows.append([ds, "balanced" if ratio == 1 else f"long-tailed {ratio:g}", f"{w:g}", pm(acc[ds, ratio, w]), pm(ece[ds, ratio, w]), gap])
    sec.tables.append(Table(
        "Test accuracy and ECE (%) against contrastive_weight (0 = mixup CE, 1 = dual-contrastive only)",
        ["dataset", "training set", "contrastive_weight", "test acc", "ECE", "acc gain vs w=0"], rows,
    ))  # fmt: skip
    fig, axes = plt.subplots(1, 2, figsize=(9, 3.5))
    for ds in p.datasets:
        for ratio in (1.0, p.imbalance):
            name = f"{ds} {'balanced' if ratio == 1 else f'LT {ratio:g}'}"
            _errorbar(axes[0], list(p.weights), [acc[ds, ratio, w] for w in p.weights], name)
            _errorbar(axes[1], list(p.weights), [ece[ds, ratio, w] for w in p.weights], name)
    for ax, ylabel in zip(axes, ("test accuracy (%)", "ECE (%)")):
        ax.set_xlabel("contrastive_weight")
        ax.set_ylabel(ylabel)
        ax.legend(fontsize=7)
        ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(out / "infinite_class.png", dpi=110)
    plt.close(fig)
    sec.figures.append("infinite_class.png")
    for ds in p.datasets:
        for ratio in (1.0, p.imbalance):
            name = "balanced" if ratio == 1 else f"long-tailed ({ratio:g})"
            sec.claims.append(("dual-contrastive beats mixup CE", f"{ds}, {name}", _gap(acc[ds, ratio, 1.0], acc[ds, ratio, 0.0])))
    for ds in p.datasets:
        for ratio in (1.0, p.imbalance):
            name = "balanced" if ratio == 1 else f"long-tailed ({ratio:g})"
            best = max(p.weights, key=lambda w: mean_std(acc[ds, ratio, w])[0])
            sec.reading.append(
                f"**{ds}, {name}**: dual-contrastive (w=1) − mixup CE (w=0) {_gap(acc[ds, ratio, 1.0], acc[ds, ratio, 0.0])} "
                f"accuracy points, ECE w=0 − w=1 {_gap(ece[ds, ratio, 0.0], ece[ds, ratio, 1.0])}; best weight {best:g}."
            )
    return sec
