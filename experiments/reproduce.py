"""Regenerate docs/results.md and its plots: `python -m experiments.reproduce [--profile P] [--out DIR]`.

Profiles: `paper` (the default: converged budgets, every method tuned alike, the open
questions; about 45 minutes on an idle 2-core machine as two parallel parts), `full` (every
section of the three papers at a short budget, about 10 minutes), `quick` (a smoke test,
well under a minute; `--quick` is short for `--profile quick`). Runs every experiment
in-process on the CPU (small MLPs, one thread), then writes the report: settings, tables of
mean ± std over seeds, PNG plots, and a reading of each claim. The raw final metrics of every
run (and the curves the plots draw) go to results.json next to it.

The section between the selection markers of an existing results.md (written by
`python -m experiments.selection`) is carried over into the new report.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import platform
import shutil
import sys
import tempfile
import time
from pathlib import Path

import torch

from trainables.core.files import write_text_atomic

from .paper import main_section, open_section
from .runner import PROFILES, Profile, Runner
from .suites import Section, features_section, icm_section, infinite_section, multimix_section
from .tuned import tuned_section

SUITES = {
    "icm": icm_section,
    "features": features_section,
    "multimix": multimix_section,
    "infinite": infinite_section,
    "main": main_section,
    "tuned": tuned_section,
    "open": open_section,
}
SELECTION_START, SELECTION_END = "<!-- selection:start -->", "<!-- selection:end -->"

# Context the numbers cannot give: why a claim may fail at this data size. Kept next to the
# code that produces the numbers so the report is regenerated whole.
CONTEXT = {
    "icm": (
        "(Written for the full profile.) Scale matters here. The ICM paper trains for hundreds of epochs on the 60k "
        "MNIST training set and clusters SimSiam embeddings; here an MLP sees 8k MNIST (1.4k digits) images for a few "
        "epochs. The noise measurements need no training and reproduce the paper's mechanism: random pairs are noisy "
        "about 19% of the time with one CL per example (2 · 9/10 · 1/9), intra-cluster pairs less, falling with k as "
        "clusters get purer. How much of that noise ICM removes depends on purity: PCA/raw k-means at k=10 is only "
        "~63% pure on MNIST, so ICM pairs keep about half of mixup's noise and ICM does not beat training without "
        "mixing; at k=50 (purity ~84%) it catches up with it on MNIST and clearly beats both on digits, whose clusters "
        "are purer. Seed-to-seed spread on MNIST (±2-4 points at 8 epochs) is as large as most gaps, so only gaps "
        "beyond two standard errors are called. With several CLs per example the supervision is already strong and "
        "unmixed training is best; mixing (random or intra-cluster) costs about a point, because random-pair noise "
        "grows with m (≈ 1 − (1 − m/9)² for a pair of different classes) and k=10 clusters cut it by less than half."
    ),
    "features": (
        "(Written for the full profile.) The ICM paper clusters SimSiam features trained for hundreds of epochs. The "
        "encoder here trains for a few epochs (EncoderSettings.epochs) on a few thousand images so that the whole "
        "reproduction fits a 2-core machine; on MNIST its k-means clusters are less pure than raw or PCA pixels, "
        "while on 8x8 digits the three are alike. ICM accuracy follows purity only loosely at k=10: the seed spread "
        "is as large as the differences. A longer-trained encoder (more epochs, a GPU) is the obvious next step; the "
        "cache key covers the encoder settings, so changing them re-trains and re-clusters."
    ),
    "multimix": (
        "(Written for the full profile.) Multi-Mix's gains are reported on CIFAR/Tiny-ImageNet-scale CNNs trained to "
        "convergence. Here an MLP on MNIST reaches ~94% in 5 epochs: K>1 gives a small but consistent accuracy gain "
        "(it also multiplies the mixed examples per step by K, so at a fixed epoch count it is partly longer "
        "training), but no calibration gain. Mixup itself (K=1) raises ECE over no mixing at this short training: "
        "its soft targets make the model under-confident, and more interpolations of the same pairs do not change that."
    ),
    "infinite": (
        "(Written for the full profile.) Infinite Class Mixup's paper reports its largest gains on long-tailed data, "
        "and that reproduces clearly here: on long-tailed (ratio 10) training sets the dual-contrastive loss beats "
        "mixup cross-entropy by several points, increasing steadily with the weight. On balanced data accuracy is "
        "flat (within half a point), but calibration improves steadily with the weight: the column direction "
        "contrasts each mixed classifier against the batch, which counters mixup CE's under-confidence."
    ),
}


KEPT_SECTIONS = ((SELECTION_START, SELECTION_END),  # experiments/selection.py's
                 ("<!-- icm-protocol:start -->", "<!-- icm-protocol:end -->"))  # experiments/icm_protocol.py's


def selection_block(old: str) -> str | None:
    """The sections other commands write into results.md (markers included), or None: kept as they are."""
    blocks = []
    for start, end in KEPT_SECTIONS:
        if start in old and end in old:
            blocks.append(start + old.split(start, 1)[1].split(end, 1)[0] + end)
    return "\n\n".join(blocks) or None


def command_line(profile: Profile, only: list[str] | None) -> str:
    flags = "" if profile.name == "paper" else f" --profile {profile.name}"
    return "python -m experiments.reproduce" + flags + (f" --only {' '.join(only)}" if only else "")


def render(
    profile: Profile,
    sections: list[tuple[str, Section]],
    timings: dict[str, float],
    total: float,
    runner: Runner,
    only: list[str] | None = None,
    machine: str = "",
) -> str:
    compute = sum(r["final"]["seconds"] for r in runner.runs)
    p = profile
    lines = [
        "# mixtune: reproducing the three methods' claims",
        "",
        f"Generated by `{command_line(profile, only)}`; do not edit by hand (the command rewrites this file, "
        "results.json and the PNGs next to it, keeping only the selection section below, which "
        "`python -m experiments.selection` writes).",
        "",
        "## Settings",
        "",
        f"- profile: **{p.name}**; datasets {', '.join(p.datasets)} (mnist = the real 10k MNIST test set, "
        "split 80/20 stratified by train_fraction into 8000 train / 2000 test; digits = scikit-learn's 1797 8x8 "
        "digits, split 80/20); 10% of the training rows are the validation split (val_fraction 0.1), drawn by data_seed;",
        f"- seeds {list(p.seeds)}"
        + (" (each sets the training seed and data_seed alike)" if p.vary_data_seed else " (training seed; data_seed 0)")
        + "; each number is the final-epoch test metric, mean ± sample std over seeds;",
        f"- model: MLP {p.hidden}-{p.hidden} (BatchNorm, ReLU) unless a table says otherwise; Adam lr {p.lr:g}, weight "
        f"decay {p.weight_decay:g}, batch {p.batch_size}, cosine schedule; alpha {p.alpha:g}; ICM k={p.k} on "
        f"{p.cluster_features} features; CPU, fp32, {p.threads} thread(s);",
        f"- epochs: complementary labels {p.cll_epochs}, ordinary labels {p.ord_epochs};",
        f"- {len(runner.runs)} training runs taking {compute / 60:.1f} min of training time in all "
        f"({runner.loaded} loaded from the run store of earlier invocations, e.g. parallel `--only`/`--datasets` "
        "parts; results.json has each run's seconds); this invocation's wall time "
        f"{total / 60:.1f} min ({', '.join(f'{k} {v / 60:.1f} min' for k, v in timings.items())}), including "
        f"clustering, the encoder and the training-free noise measurements; torch {torch.__version__}, "
        f"python {platform.python_version()}; machine: {machine or platform.machine()};",
        "- verdicts: a gap *holds* when it exceeds two standard errors over seeds, is a *tie* inside that band and is "
        "*reversed* beyond it the other way (with one seed there are no error bars and the verdict is marked '?').",
        "",
    ]
    lines += [
        "## Summary: each claim, the gap in points (mean over seeds) and the verdict",
        "",
        "| claim | setting | gap (verdict) |",
        "|---|---|---|",
    ]
    lines += [f"| {c} | {where} | {gap} |" for _, sec in sections for c, where, gap in sec.claims]
    lines.append("")
    for name, sec in sections:
        lines += [f"## {sec.title}", "", sec.settings, ""]
        for t in sec.tables:
            lines += [f"**{t.caption}**", "", "| " + " | ".join(t.header) + " |", "|" + "---|" * len(t.header)]
            lines += ["| " + " | ".join(row) + " |" for row in t.rows]
            lines.append("")
        for fig in sec.figures:
            lines += [f"![{fig}]({fig})", ""]
        lines += ["**Reading.**", ""]
        lines += [f"- {text}" for text in sec.reading]
        if name in CONTEXT:
            lines += ["", f"*Why it may differ from the paper at this size.* {CONTEXT[name]}", ""]
        lines.append("")
    return "\n".join(lines)


def machine_line() -> str:
    """CPU model, core count and the 1-minute load when the report is written (the runs share the machine)."""
    model = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    try:
        load = f", load average {os.getloadavg()[0]:.1f} at the end"
    except OSError:
        load = ""
    return f"{model}, {os.cpu_count()} cores{load}"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m experiments.reproduce", description=__doc__.splitlines()[0])
    parser.add_argument("--profile", choices=list(PROFILES), default="paper", help="paper (default), full or quick")
    parser.add_argument("--quick", action="store_true", help="short for --profile quick: digits, 1 seed, few epochs (a smoke test)")
    parser.add_argument("--out", default="docs", help="directory for results.md, results.json and the PNGs (default docs)")
    parser.add_argument("--mnist-dir", default="../shared/data/mnist", help="folder with t10k-*-ubyte[.gz]")
    parser.add_argument("--cache-dir", default=None, help="clustering/encoder/run-store cache (default $MIXTUNE_CACHE or ~/.cache/mixtune)")
    parser.add_argument("--threads", type=int, default=1, help="torch CPU threads per run (default 1)")
    parser.add_argument("--datasets", nargs="+", choices=["digits", "mnist"], help="restrict to these datasets (to split a run into parallel parts)")
    parser.add_argument("--fresh", action="store_true", help="retrain every run instead of loading stored metrics")
    parser.add_argument("--only", nargs="+", choices=list(SUITES), help="run only these suites (the report then has only them)")
    parser.add_argument("--no-report", action="store_true", help="train and store the runs only (a parallel part); write nothing to --out")
    args = parser.parse_args(argv)

    torch.set_num_threads(args.threads)  # also for clustering and the encoder, which run before fit sets it
    make = PROFILES["quick" if args.quick else args.profile]
    profile = dataclasses.replace(make(args.mnist_dir, args.cache_dir, args.threads), reuse_runs=not args.fresh)
    if args.datasets:
        profile = dataclasses.replace(profile, datasets=tuple(d for d in profile.datasets if d in args.datasets))
    if "mnist" in profile.datasets and not Path(args.mnist_dir).is_dir():
        parser.error(f"--mnist-dir {args.mnist_dir} is not a directory (the {profile.name} profile needs the MNIST t10k files)")
    chosen = args.only or list(profile.suites)
    out = Path(args.out)
    # a part run without a report still draws its plots: into a scratch folder, not over the report's
    figures = Path(tempfile.mkdtemp(prefix="reproduce-part-")) if args.no_report else out
    figures.mkdir(parents=True, exist_ok=True)
    runner = Runner(profile)
    sections, timings = [], {}
    start = time.perf_counter()
    for name in chosen:
        t0 = time.perf_counter()
        print(f"[reproduce] {name} ...", file=sys.stderr, flush=True)
        sections.append((name, SUITES[name](runner, figures)))
        timings[name] = time.perf_counter() - t0
        print(f"[reproduce] {name} done in {timings[name]:.0f}s ({len(runner.runs)} runs so far)", file=sys.stderr, flush=True)
    total = time.perf_counter() - start
    if args.no_report:
        shutil.rmtree(figures, ignore_errors=True)
        print(f"[reproduce] stored {len(runner.runs)} runs ({total / 60:.1f} min); no report written", file=sys.stderr)
        return 0
    text = render(profile, sections, timings, total, runner, args.only, machine_line())
    old = (out / "results.md").read_text() if (out / "results.md").exists() else ""
    kept = selection_block(old)
    if kept:
        text = text.rstrip() + "\n\n" + kept + "\n"
    write_text_atomic(out / "results.md", text)
    blob = {"profile": profile.describe(), "seconds": total, "machine": machine_line(), "runs": runner.runs}
    write_text_atomic(out / "results.json", json.dumps(blob, default=str))
    print(f"[reproduce] wrote {out / 'results.md'} ({total / 60:.1f} min)", file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
