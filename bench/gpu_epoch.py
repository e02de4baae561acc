"""Figure 2: ResNet-18 CIFAR-shaped epoch time on a GPU, and what Multi-Mix K and Infinite Class cost.

    python bench/gpu_epoch.py             # needs CUDA; prints a skip line without it
    python bench/gpu_epoch.py --smoke     # CPU, tiny sizes: checks the script runs (figures meaningless)

Synthetic 50k x 3 x 32 x 32 training set (10k test), resident on the device, through the core's
own `fit` (bf16 autocast, channels_last, index-slice batches, augmentation on the device).
Each setting trains 3 epochs; the figure is the median of epochs 2-3 (epoch 1 carries cuDNN's
algorithm search and, with --compile, the compilation). One JSON line per setting, then a
summary line: the fastest plain epoch against the 1.0 s target on an H200.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import as_dataset, emit, machine, median, synthetic_images  # noqa: E402

from trainables.core.config import TrainConfig  # noqa: E402
from trainables.core.fit import fit, prepare  # noqa: E402

# (label, TrainConfig overrides): plain epochs over batch sizes, then the methods and K
SETTINGS = [
    ("none bs512", dict(batch_size=512)),
    ("none bs1024", dict(batch_size=1024)),
    ("none bs2048", dict(batch_size=2048)),
    ("none bs256", dict(batch_size=256)),
    ("mixup bs512", dict(batch_size=512, method="mixup")),
    ("multimix K=2 bs512", dict(batch_size=512, method="multimix", K=2)),
    ("multimix K=3 bs512", dict(batch_size=512, method="multimix", K=3)),
    ("multimix K=5 bs512", dict(batch_size=512, method="multimix", K=5)),
    ("multimix K=5 bs256", dict(batch_size=256, method="multimix", K=5)),
    ("infinite_class bs512", dict(batch_size=512, method="infinite_class")),
    ("infinite_class bs1024", dict(batch_size=1024, method="infinite_class")),
    ("none bs1024 compile", dict(batch_size=1024, compile=True)),
]


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--n", type=int, default=50_000)
    p.add_argument("--epochs", type=int, default=3)
    p.add_argument("--only", default=None, help="comma-separated labels to run (default all)")
    p.add_argument("--no-compile", action="store_true", help="leave out the torch.compile setting")
    p.add_argument("--smoke", action="store_true", help="CPU, 128 examples of 3x8x8, 2 settings")
    a = p.parse_args()

    cuda = torch.cuda.is_available()
    if not cuda and not a.smoke:
        emit("gpu_epoch", skipped="no CUDA device here; run on a GPU machine (bench/gpu_all.sh)", machine=machine())
        return
    device = torch.device("cuda" if cuda and not a.smoke else "cpu")
    n, shape, epochs = a.n, (3, 32, 32), a.epochs
    settings = SETTINGS
    if a.only:
        keep = {s.strip() for s in a.only.split(",")}
        settings = [s for s in SETTINGS if s[0] in keep]
    if a.no_compile:
        settings = [s for s in settings if not s[1].get("compile")]
    if a.smoke:
        n, shape, epochs = 128, (3, 8, 8), 2
        settings = [("none bs64", dict(batch_size=64)), ("multimix K=3 bs64", dict(batch_size=64, method="multimix", K=3))]
    n_test = 10_000 if not a.smoke else 64
    xs, ys = synthetic_images(n + n_test, shape, 10)
    dataset, _, _ = as_dataset(xs, ys, n_test)
    base = TrainConfig(
        labels="ordinary", model="resnet18", epochs=epochs, optimizer="sgd", lr=0.05, schedule="none",
        augment=True, device=str(device), num_threads=1 if device.type == "cpu" else 0,
    )
    data = prepare(base, dataset, device)  # on the device once, shared by every setting

    rows = {}
    compiled = [s for s in settings if s[1].get("compile")]
    settings = [s for s in settings if not s[1].get("compile")]

    def run(label, over):
        cfg = base.replace(**over)
        t0 = time.perf_counter()
        hist = fit(cfg, data).history
        total = time.perf_counter() - t0
        train = [n / h["samples_per_s"] for h in hist]
        with_eval = [h["epoch_time"] for h in hist]
        steady = train[1:] if len(train) > 1 else train
        rows[label] = median(steady)
        ref = rows.get("none bs512") or rows.get("none bs64")
        emit(
            "gpu_epoch_setting",
            setting=label,
            epoch_s=median(steady),
            epoch_with_eval_s=median(with_eval[1:] if len(with_eval) > 1 else with_eval),
            first_epoch_s=train[0],
            samples_per_s=n / median(steady),
            cost_vs_reference=median(steady) / ref if ref else None,
            reference="none bs512" if not a.smoke else "none bs64",
            fit_total_s=total,
            device=device.type,
            smoke=a.smoke,
        )
        if cuda:
            torch.cuda.empty_cache()

    for label, over in settings:
        run(label, over)
    plain = {k: v for k, v in rows.items() if k.startswith("none")}
    best = min(plain, key=plain.get)
    emit(
        "gpu_epoch",
        model="resnet18",
        data=f"synthetic {n}x{shape[0]}x{shape[1]}x{shape[2]}",
        fastest_plain_setting=best,
        epoch_s=plain[best],
        target_s=1.0,
        met=plain[best] <= 1.0 if device.type == "cuda" else None,
        multimix_k5_epoch_s=rows.get("multimix K=5 bs512"),
        infinite_class_epoch_s=rows.get("infinite_class bs512"),
        smoke=a.smoke,
        machine=machine(device),
    )
    for label, over in compiled:  # last: compiling ResNet-18 takes a minute or so
        run(label, over)


if __name__ == "__main__":
    main()
