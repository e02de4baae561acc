"""The paper profile's sections: the main table at converged budgets, and the open questions.

`main_section`: none / mixup / ICM with each of the profile's CLL losses on every dataset,
mean ± std over seeds, the learning curves behind it (so a reader sees the final epoch has
stopped moving), a budget check at twice the epochs, the training-free noise of the pairs,
and each CLL loss without mixing beside what the field reports.

`open_section`: the questions the short budget left open: ICM with several complementary
labels per example, ICM on low-capacity models (with a smaller alpha and a larger k), and
Multi-Mix's K at a budget where K = 1 has converged.

Gaps and verdicts as in `suites.py`: 'holds' beyond two standard errors over seeds.
"""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # files only, no display
import matplotlib.pyplot as plt  # noqa: E402

from trainables.core.config import COMPLEMENTARY_LOSSES  # noqa: E402

from .runner import Runner, mean_std, pm  # noqa: E402
from .suites import CLL_METHODS, Section, Table, _errorbar, _gap, noise_and_purity  # noqa: E402

# What the field reports for each CLL loss on MNIST with an MLP. Every figure is None: the
# sources below were searched (their repositories' READMEs and docs, and the stored web
# pages, which hold only the papers' openings) and no table of results could be read, so
# none is quoted from memory. The settings are read from the sources' own code.
LITERATURE_SETTINGS = (
    "libcll (Ye et al. 2024, arXiv 2411.12276; github.com/ntucllab/libcll, `libcll/configs/base.yaml`, "
    "`scripts/uniform.sh`): the 60k MNIST training set, an MLP with one hidden layer of 256 units, Adam, batch 256, "
    "300 epochs, the learning rate picked from {1e-3, 5e-4, 1e-4, 5e-5, 1e-5} on a 10% validation split, then 4 "
    "seeds. Ishida et al. 2019 (arXiv 1810.04327; github.com/takashiishida/comp, `demo.py`): 60k MNIST, an MLP "
    "with one hidden layer of 500 units, Adam lr 5e-5, weight decay 1e-4, batch 256, 300 epochs."
)
LITERATURE: dict[str, tuple[float | None, str]] = {
    "scl_nl": (None, "libcll (SCL-NL); Chou et al. 2020 (arXiv 2007.02235)"),
    "scl_exp": (None, "libcll (SCL-EXP); Chou et al. 2020"),
    "fwd": (None, "libcll (FWD); Yu et al. 2018 (arXiv 1711.09535); Ishida et al. 2019 (`forward`)"),
    "ure_ga": (None, "libcll (URE-GA); Ishida et al. 2019 (`ga`)"),
    "ure_tnn": (None, "libcll (URE-TNN); Ishida et al. 2019 (`nn`, max operator)"),
    "pc": (None, "libcll (PC); Ishida et al. 2017 (arXiv 1705.07541, `pc`)"),
}


def _last_quarter(curves: list[list[float]]) -> float:
    """Mean over seeds of (final-epoch value − value at 3/4 of the epochs): how much the end still moves."""
    moves = []
    for c in curves:
        q = max(0, round(0.75 * len(c)) - 1)
        moves.append(c[-1] - c[q])
    return mean_std(moves)[0]


def _curves(r: Runner, ds: str, metric: str = "test_acc", **changes) -> list[list[float]]:
    return [r.curve(r.seeded(ds, s, **changes), metric) for s in r.profile.seeds]


def _plot_curves(ax, curves: list[list[float]], label: str) -> None:
    n = min(len(c) for c in curves)
    stats = [mean_std([c[i] for c in curves]) for i in range(n)]
    xs = list(range(1, n + 1))
    mean = [m * 100 for m, _ in stats]
    ax.plot(xs, mean, label=label)
    ax.fill_between(xs, [m - s * 100 for m, (_, s) in zip(mean, stats)], [m + s * 100 for m, (_, s) in zip(mean, stats)], alpha=0.2)


# ----------------------------------------------------------------------------- main table
def main_section(r: Runner, out: Path) -> Section:
    p = r.profile
    seeds_note = (
        "each seed s sets both the training seed and data_seed = s (a new validation split and new complementary "
        "labels), so the spread includes the draw of the labels"
        if p.vary_data_seed
        else "data_seed 0 throughout: the spread is the training seed's alone"
    )
    sec = Section(
        "Main table: none / mixup / ICM at converged budgets",
        f"Uniform single complementary labels; losses {', '.join(p.losses)}; MLP {p.hidden}-{p.hidden} (BatchNorm), "
        f"Adam lr {p.lr:g}, weight decay {p.weight_decay:g}, batch {p.batch_size}, cosine schedule; mixup and ICM "
        f"alpha {p.alpha:g}; ICM k={p.k} on {p.cluster_features} features; epochs {p.cll_epochs}; seeds "
        f"{list(p.seeds)} ({seeds_note}); 10% of the training rows held out as the validation split (unused here); "
        "final-epoch test accuracy (%).",
    )
    acc: dict[tuple[str, str, str], list[float]] = {}
    curves: dict[tuple[str, str, str], list[list[float]]] = {}
    for ds in p.datasets:
        for loss in p.losses:
            for m in CLL_METHODS:
                acc[ds, loss, m] = r.seeds(ds, method=m, loss=loss)
                curves[ds, loss, m] = _curves(r, ds, method=m, loss=loss)
    rows = []
    for ds in p.datasets:
        for loss in p.losses:
            a = [acc[ds, loss, m] for m in CLL_METHODS]
            moved = " / ".join(f"{_last_quarter(curves[ds, loss, m]) * 100:+.1f}" for m in CLL_METHODS)
            rows.append([ds, loss, *(pm(v) for v in a), _gap(a[2], a[1]), _gap(a[2], a[0]), _gap(a[1], a[0]), moved])
    sec.tables.append(Table(
        "Test accuracy (%), mean ± std over seeds; gaps in points with the verdict; the last column is how much the "
        "mean test accuracy still moved over the last quarter of the epochs (none / mixup / icm, points)",
        ["dataset", "loss", "none", "mixup", "icm", "icm − mixup", "icm − none", "mixup − none", "last-quarter move"],
        rows,
    ))  # fmt: skip

    # the learning curves of the main table
    fig, axes = plt.subplots(len(p.datasets), len(p.losses), figsize=(4.6 * len(p.losses), 3.4 * len(p.datasets)), squeeze=False)
    for i, ds in enumerate(p.datasets):
        for j, loss in enumerate(p.losses):
            ax = axes[i][j]
            for m in CLL_METHODS:
                _plot_curves(ax, curves[ds, loss, m], m)
            ax.set_title(f"{ds}, {loss}")
            ax.set_xlabel("epoch")
            ax.set_ylabel("test accuracy (%)")
            ax.grid(alpha=0.3)
            ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(out / "paper_curves.png", dpi=110)
    plt.close(fig)
    sec.figures.append("paper_curves.png")

    # budget check: the first loss at twice the epochs (seed 0 only; its own cosine schedule)
    first = p.losses[0]
    rows = []
    for ds in p.datasets:
        E = p.cll_epochs[ds]
        row = [ds, first, f"{E} → {2 * E}"]
        for m in CLL_METHODS:
            a = r.run(r.seeded(ds, p.seeds[0], method=m, loss=first))["test_acc"]
            b = r.run(r.seeded(ds, p.seeds[0], method=m, loss=first, epochs=2 * E))["test_acc"]
            row.append(f"{a * 100:.1f} → {b * 100:.1f} ({(b - a) * 100:+.1f})")
        rows.append(row)
    sec.tables.append(Table(
        f"Budget check: test accuracy (%) at the profile's epochs and at twice as many (each with its own cosine "
        f"schedule), seed {p.seeds[0]} only",
        ["dataset", "loss", "epochs", *CLL_METHODS], rows,
    ))  # fmt: skip

    # the mechanism, without training: how often pairs are noisy, at the main table's k
    rows = []
    for ds in p.datasets:
        v = [noise_and_purity(r, ds, p.cluster_features, p.k, s) for s in p.seeds]
        rows.append([ds, str(p.k), pm([d["random_pair"] for d in v]), pm([d["icm_pair"] for d in v]), pm([d["purity"] for d in v])])
    sec.tables.append(Table(
        "Complementary-label noise of the mixing pairs (%, the ICM paper's pair condition ybar_i = y_j or ybar_j = "
        f"y_i) over the training rows, and cluster purity (%), at k={p.k} on {p.cluster_features} features",
        ["dataset", "k", "random pairs (mixup)", "intra-cluster pairs (ICM)", "purity"], rows,
    ))  # fmt: skip

    # each CLL loss without mixing, beside the field's figures
    per_loss: dict[tuple[str, str], list[float]] = {}
    for ds in p.datasets:
        for loss in COMPLEMENTARY_LOSSES:
            per_loss[ds, loss] = r.seeds(ds, method="none", loss=loss)
    rows = []
    for loss in COMPLEMENTARY_LOSSES:
        figure, source = LITERATURE[loss]
        rows.append([
            loss, *(pm(per_loss[ds, loss]) for ds in p.datasets),
            "not retrieved" if figure is None else f"{figure:.1f}", source,
        ])  # fmt: skip
    sec.tables.append(Table(
        "Each CLL loss without mixing: test accuracy (%), mean ± std over seeds, beside the figure the field reports "
        "for MNIST with an MLP",
        ["loss", *p.datasets, "field (MNIST, MLP)", "source"], rows,
    ))  # fmt: skip

    for ds in p.datasets:
        for loss in p.losses:
            a = {m: acc[ds, loss, m] for m in CLL_METHODS}
            sec.claims.append(("mixup hurts CLL (points lost to mixup)", f"{ds}, {loss}", _gap(a["none"], a["mixup"])))
            sec.claims.append(("ICM beats mixup", f"{ds}, {loss}", _gap(a["icm"], a["mixup"])))
            sec.claims.append(("ICM beats no mixup", f"{ds}, {loss}", _gap(a["icm"], a["none"])))
            best = max(CLL_METHODS, key=lambda m: mean_std(a[m])[0])
            order = " > ".join(sorted(CLL_METHODS, key=lambda m: -mean_std(a[m])[0]))
            sec.reading.append(
                f"**{ds}, {loss}**: order by mean {order}; ICM − none {_gap(a['icm'], a['none'])}, ICM − mixup "
                f"{_gap(a['icm'], a['mixup'])}, mixup − none {_gap(a['mixup'], a['none'])} points. The paper's ordering "
                f"ICM > none > mixup {_ordering(a)}; the best method here is {best}."
            )
    sec.reading.append(
        "Field figures: " + LITERATURE_SETTINGS + " No figure of theirs is quoted: none could be read from the "
        "sources reachable here. Their training sets are 7.5x larger and they train 300 epochs, so their numbers "
        "would not be comparable one to one anyway."
    )
    return sec


def _ordering(a: dict[str, list[float]]) -> str:
    from .runner import compare

    _, w1 = compare(a["icm"], a["none"])
    _, w2 = compare(a["none"], a["mixup"])
    if w1 == "better" and w2 == "better":
        return "holds (both gaps beyond 2 SE)"
    if w1 in ("better", "better?") and w2 in ("better", "better?"):
        return "holds by the means but not beyond 2 SE in both gaps"
    return "does not hold"


# ----------------------------------------------------------------------------- open questions
def open_section(r: Runner, out: Path) -> Section:
    p = r.profile
    sec = Section(
        "Open questions at the converged budget",
        f"As in the main table (SCL-NL, MLP {p.hidden}-{p.hidden}, alpha {p.alpha:g}, ICM k={p.k} on "
        f"{p.cluster_features} features, epochs {p.cll_epochs}, seeds {list(p.seeds)}) unless a row says otherwise.",
    )
    loss = p.losses[0]
    # (a) several complementary labels per example
    multi: dict[tuple[str, int, str], list[float]] = {}
    for ds in p.datasets:
        for n in p.num_cls:
            for m in CLL_METHODS:
                kw = dict(method=m, loss=loss) if n == 1 else dict(method=m, loss=loss, cl_type="multiple", num_cl=n)
                multi[ds, n, m] = r.seeds(ds, **kw)
    rows = []
    for ds in p.datasets:
        for n in p.num_cls:
            a = [multi[ds, n, m] for m in CLL_METHODS]
            rows.append([ds, str(n), *(pm(v) for v in a), _gap(a[2], a[1]), _gap(a[2], a[0])])
            if n > 1:
                sec.claims.append(("ICM beats no mixup with several CLs", f"{ds}, num_cl={n}", _gap(a[2], a[0])))
                sec.claims.append(("ICM beats mixup with several CLs", f"{ds}, num_cl={n}", _gap(a[2], a[1])))
    sec.tables.append(Table(
        f"Several complementary labels per example (cl_type multiple, num_cl of the 9 wrong classes; {loss}): test "
        "accuracy (%)",
        ["dataset", "num_cl", "none", "mixup", "icm", "icm − mixup", "icm − none"], rows,
    ))  # fmt: skip

    # (b) low-capacity models
    variants = [("none", {"method": "none"}), ("mixup", {"method": "mixup"}), (f"icm", {"method": "icm"})]
    variants += [(f"icm α={a:g}", {"method": "icm", "alpha": a}) for a in p.low_alphas]
    variants += [(f"icm k={k}", {"method": "icm", "k": k}) for k in p.low_ks]
    low: dict[tuple[str, int, str], list[float]] = {}
    for ds in p.datasets:
        for width in (*p.narrow_hidden, p.hidden):
            for name, kw in variants:
                low[ds, width, name] = r.seeds(ds, loss=loss, hidden=width, **kw)
    rows = []
    for ds in p.datasets:
        for width in (*p.narrow_hidden, p.hidden):
            cells = [pm(low[ds, width, name]) for name, _ in variants]
            icms = [name for name, _ in variants if name.startswith("icm")]
            best = max(icms, key=lambda name: mean_std(low[ds, width, name])[0])
            gap_icm = _gap(low[ds, width, "icm"], low[ds, width, "none"])
            gap_best = _gap(low[ds, width, best], low[ds, width, "none"])
            rows.append([ds, f"MLP {width}-{width}", *cells, gap_icm, f"{best}: {gap_best}"])
            if width != p.hidden:
                sec.claims.append((f"low capacity: ICM beats no mixup", f"{ds}, MLP {width}-{width}", gap_icm))
                sec.claims.append((f"low capacity: the best ICM variant ({best}) beats no mixup", f"{ds}, MLP {width}-{width}", gap_best))
    sec.tables.append(Table(
        f"Low-capacity models ({loss}): test accuracy (%); the last columns compare ICM at the main table's settings, "
        "and the best ICM variant by mean, with no mixup (the best variant is picked by its test mean, so its gap is "
        "optimistic)",
        ["dataset", "model", *(name for name, _ in variants), "icm − none", "best icm variant − none"], rows,
    ))  # fmt: skip
    sec.reading.append(
        "A linear model is not in the model table (`trainables/core/models.py`), so the low-capacity rows use narrow "
        "MLPs. The change that would add one is a model-table entry: a `Linear` MixNet (Flatten + one nn.Linear, one "
        "block, num_mix_layers=1, so only input mixing) registered as `linear` in `MODELS` and in "
        "`config.MODELS`; it is not made here (the core belongs to another engineer)."
    )

    # (c) Multi-Mix K at a converged budget
    acc: dict[tuple[str, int], list[float]] = {}
    ece: dict[tuple[str, int], list[float]] = {}
    k_curves: dict[tuple[str, int], list[list[float]]] = {}
    none_acc, none_ece = {}, {}
    for ds in p.datasets:
        none_acc[ds] = r.seeds(ds, labels="ordinary", method="none")
        none_ece[ds] = r.seeds(ds, "test_ece", labels="ordinary", method="none")
        for K in p.Ks:
            kw = dict(labels="ordinary", method="multimix", K=K)
            acc[ds, K] = r.seeds(ds, **kw)
            ece[ds, K] = r.seeds(ds, "test_ece", **kw)
            k_curves[ds, K] = _curves(r, ds, **kw)
    K1 = min(p.Ks)
    rows = []
    for ds in p.datasets:
        rows.append([ds, "none", pm(none_acc[ds]), pm(none_ece[ds]), "–", "–", "–"])
        for K in p.Ks:
            g_acc = "–" if K == K1 else _gap(acc[ds, K], acc[ds, K1])
            g_ece = "–" if K == K1 else _gap(ece[ds, K1], ece[ds, K]).replace("holds", "lower ECE")
            rows.append([ds, str(K), pm(acc[ds, K]), pm(ece[ds, K]), g_acc, g_ece, f"{_last_quarter(k_curves[ds, K]) * 100:+.1f}"])
            if K != K1:
                sec.claims.append((f"Multi-Mix K={K} beats K={K1} in accuracy", ds, _gap(acc[ds, K], acc[ds, K1])))
                sec.claims.append((f"Multi-Mix K={K} beats K={K1} in calibration (ECE points saved)", ds, _gap(ece[ds, K1], ece[ds, K])))
    sec.tables.append(Table(
        f"Multi-Mix (ordinary labels, cross-entropy, input mixing, alpha {p.alpha:g}, epochs {p.ord_epochs}): test "
        f"accuracy and ECE (%, 15 bins); gaps vs K={K1} (ECE gap = ECE(K={K1}) − ECE(K), positive = better "
        "calibrated); the last column is how much the mean test accuracy moved over the last quarter of the epochs",
        ["dataset", "K", "test acc", "ECE", f"acc gain vs K={K1}", f"ECE gain vs K={K1}", "last-quarter move"], rows,
    ))  # fmt: skip
    fig, axes = plt.subplots(1, 3, figsize=(13, 3.6))
    for ds in p.datasets:
        _errorbar(axes[0], list(p.Ks), [acc[ds, K] for K in p.Ks], ds)
        _errorbar(axes[1], list(p.Ks), [ece[ds, K] for K in p.Ks], ds)
        for K in (K1, max(p.Ks)):
            _plot_curves(axes[2], k_curves[ds, K], f"{ds} K={K}")
    for ax, ylabel in zip(axes[:2], ("test accuracy (%)", "ECE (%)")):
        ax.set_xlabel("K (interpolations per pair)")
        ax.set_ylabel(ylabel)
        ax.set_xticks(list(p.Ks))
    axes[2].set_xlabel("epoch")
    axes[2].set_ylabel("test accuracy (%)")
    axes[2].set_title("learning curves")
    for ax in axes:
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(out / "paper_multimix.png", dpi=110)
    plt.close(fig)
    sec.figures.append("paper_multimix.png")

    for ds in p.datasets:
        n_hi = max(p.num_cls)
        sec.reading.append(
            f"**{ds}, several CLs**: at num_cl={n_hi}, ICM − none {_gap(multi[ds, n_hi, 'icm'], multi[ds, n_hi, 'none'])}, "
            f"ICM − mixup {_gap(multi[ds, n_hi, 'icm'], multi[ds, n_hi, 'mixup'])} points."
        )
        for width in p.narrow_hidden:
            sec.reading.append(
                f"**{ds}, MLP {width}-{width}**: ICM − none {_gap(low[ds, width, 'icm'], low[ds, width, 'none'])}; "
                + "; ".join(
                    f"{name} − none {_gap(low[ds, width, name], low[ds, width, 'none'])}"
                    for name, _ in variants[3:]
                )
                + f" (at width {p.hidden}: ICM − none {_gap(low[ds, p.hidden, 'icm'], low[ds, p.hidden, 'none'])})."
            )
        K_hi = max(p.Ks)
        sec.reading.append(
            f"**{ds}, Multi-Mix**: K={K_hi} − K={K1} {_gap(acc[ds, K_hi], acc[ds, K1])} accuracy points, ECE K={K1} − "
            f"K={K_hi} {_gap(ece[ds, K1], ece[ds, K_hi])} (positive = K>1 better calibrated); mixing vs none: K={K1} − "
            f"none {_gap(acc[ds, K1], none_acc[ds])}. K multiplies the mixed rows per step (and the cost) by K."
        )
    return sec
