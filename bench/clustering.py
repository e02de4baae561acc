"""Figure 3: clustering cost for Intra-Cluster Mixup.

    python bench/clustering.py                 # CPU (torch k-means vs scikit-learn, cache hit)
    python bench/clustering.py --device cuda   # GPU: 60k x 784, k=50, target >= 50x scikit-learn

Two JSON lines:
- `cluster_cache`: a trial's clustering set-up (`prepare` of an ICM config: PCA features,
  k-means, cache write) with an empty cache, then the same for a second trial with the same
  (dataset, features, k): it must be a cache hit that costs (almost) nothing.
- `kmeans_vs_sklearn`: the core's torch k-means (k-means++ seeding, Lloyd, on the device) against
  scikit-learn's `KMeans` (k-means++, one init, Lloyd) on the same L2-normalised raw pixels,
  several seeds each, alternating; median time and inertia of each, their ratios.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import Timer, as_dataset, emit, machine, median, mnist_like  # noqa: E402

from trainables.core.clustering import cluster_features, kmeans  # noqa: E402
from trainables.core.config import TrainConfig  # noqa: E402
from trainables.core.fit import prepare, resolve_device  # noqa: E402


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--device", default="cpu")
    p.add_argument("--n", type=int, default=None, help="rows for k-means vs sklearn (10000 CPU, 60000 GPU)")
    p.add_argument("--k", type=int, default=50)
    p.add_argument("--seeds", type=int, default=3)
    p.add_argument("--threads", type=int, default=None, help="CPU threads for torch and sklearn (default: all)")
    p.add_argument("--smoke", action="store_true")
    a = p.parse_args()
    device = resolve_device(a.device)
    cuda = device.type == "cuda"
    if a.threads:
        torch.set_num_threads(a.threads)
    threads = torch.get_num_threads()
    n = a.n or (60_000 if cuda else 10_000)
    if a.smoke:
        n, a.seeds = 2000, 1

    # ---------------------------------------------------------------- cache: first vs second trial
    xs, ys, source = mnist_like(n + 1000)
    dataset, _, _ = as_dataset(xs, ys, 1000, name="bench-cluster")
    with tempfile.TemporaryDirectory() as cache:
        cfg = TrainConfig(method="icm", k=a.k, cluster_features="pca", device=str(device), cache_dir=cache)
        times, hits, inside = [], [], []
        for _ in range(2):
            with Timer(device) as t:
                data = prepare(cfg, dataset, device)
            times.append(t.seconds)
            hits.append(data.clusters.cache_hit)
            inside.append(data.clusters.seconds)
    emit(
        "cluster_cache",
        data=source,
        n=n,
        k=a.k,
        features="pca 32",
        first_trial_s=times[0],
        second_trial_s=times[1],
        ratio=times[0] / times[1],
        cache_hit=hits,
        clustering_s=inside,  # of the above: k-means + cache write, then the cache load
        met=hits == [False, True],
        device=device.type,
        machine=machine(device),
    )

    # ---------------------------------------------------------------- torch k-means vs scikit-learn
    from sklearn.cluster import KMeans
    from threadpoolctl import threadpool_limits

    feats_cpu = cluster_features(dataset.x_train, "raw")  # (n, 784), L2-normalised, as the core uses
    feats = feats_cpu.to(device)
    x_np = feats_cpu.numpy().astype(np.float32)
    kmeans(feats, a.k, torch.Generator(device=device).manual_seed(99), max_iter=2)  # warm-up (cuBLAS, caches)
    ours_t, ours_i, ours_it, sk_t, sk_i, sk_it = [], [], [], [], [], []
    for s in range(a.seeds):
        for side in ("ours", "sk") if s % 2 == 0 else ("sk", "ours"):
            if side == "ours":
                with Timer(device) as t:
                    res = kmeans(feats, a.k, torch.Generator(device=device).manual_seed(s))
                ours_t.append(t.seconds)
                ours_i.append(res.inertia)
                ours_it.append(res.iterations)
            else:
                with threadpool_limits(threads), Timer() as t:
                    km = KMeans(a.k, init="k-means++", n_init=1, max_iter=100, tol=1e-4,
                                algorithm="lloyd", random_state=s).fit(x_np)
                sk_t.append(t.seconds)
                sk_i.append(float(km.inertia_))
                sk_it.append(int(km.n_iter_))
    rel = median(ours_i) / median(sk_i) - 1
    speed = median(sk_t) / median(ours_t)
    emit(
        "kmeans_vs_sklearn",
        data=f"{source}: raw pixels, L2-normalised, {n}x{feats.shape[1]}",
        k=a.k,
        torch_device=device.type,
        torch_s=median(ours_t),
        sklearn_s=median(sk_t),
        ratio=speed,
        torch_inertia=median(ours_i),
        sklearn_inertia=median(sk_i),
        inertia_rel_diff=rel,
        inertia_met=abs(rel) <= 0.01,
        speed_target=">= 50x on a GPU" if cuda else "reported only on the CPU",
        speed_met=speed >= 50 if cuda else None,
        iterations={"torch": ours_it, "sklearn": sk_it},
        threads=threads,
        seeds=a.seeds,
        smoke=a.smoke,
        machine=machine(device),
    )


if __name__ == "__main__":
    main()
