"""Figure 1: one training epoch of the core (`fit`) vs a typical PyTorch loop, side by side.

    python bench/core_epoch.py                 # CPU: MNIST-shaped MLP, 60k examples (target >= 5x)
    python bench/core_epoch.py --device cuda   # GPU: CIFAR-shaped ResNet-18, 50k synthetic (target >= 4x)

Three sides, same model, same data, same optimiser and batch size, run in alternating rounds
(A B C, then C B A, ...) so that load from other processes hits all of them alike:

- `fit`: the core's whole loop (device-resident data, index-slice batches, bf16 autocast and
  channels_last on CUDA, per-epoch metrics); its training time is taken from its own
  `samples_per_s`, evaluation excluded.
- `typical`: what most PyTorch code does: a Dataset whose `__getitem__` turns one uint8 image
  into a normalised float tensor (and augments it, where asked), a DataLoader that collates
  batches (workers and pinned memory on CUDA), fp32, `loss.item()` every step for the running loss.
- `plain`: the fastest loop we can write by hand on device-resident data (no metrics at all),
  to show how much of the possible speed-up `fit` keeps.

Prints one JSON line: median epoch seconds of each side and the ratios typical/fit, typical/plain.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import as_dataset, emit, machine, median, mnist_like, sync, synthetic_images  # noqa: E402

from trainables.core.config import TrainConfig  # noqa: E402
from trainables.core.fit import _augment, fit, prepare, resolve_device  # noqa: E402
from trainables.core.models import build_model  # noqa: E402


# ----------------------------------------------------------------------------- the typical loop
class ImageDataset(torch.utils.data.Dataset):
    """torchvision-style: uint8 images kept as they are, converted and normalised one at a time.

    `pil=True` follows torchvision's own MNIST/CIFAR10 `__getitem__` and transforms step by step
    (PIL image, ToTensor via a numpy copy, Normalize building its mean/std tensors per call);
    `pil=False` is a leaner tensor-only version of the same work, for a conservative ratio.
    """

    def __init__(self, images, labels, mean, std, augment: bool, pil: bool):
        self.images, self.labels, self.augment, self.pil = images, labels, augment, pil
        self.hwc = np.ascontiguousarray(images.transpose(0, 2, 3, 1))  # how torchvision stores CIFAR
        self.mean_list, self.std_list = mean, std
        self.mean = torch.tensor(mean).view(-1, 1, 1)
        self.std = torch.tensor(std).view(-1, 1, 1)

    def __len__(self) -> int:
        return len(self.images)

    def _to_tensor_pil(self, i: int) -> torch.Tensor:
        from PIL import Image

        a = self.hwc[i]
        img = Image.fromarray(a[:, :, 0] if a.shape[2] == 1 else a)  # Dataset.__getitem__
        arr = np.array(img, np.uint8, copy=True)  # ToTensor
        t = torch.from_numpy(arr).view(img.size[1], img.size[0], len(img.getbands())).permute(2, 0, 1).contiguous()
        return t.float().div(255.0)

    def __getitem__(self, i: int):
        x = self._to_tensor_pil(i) if self.pil else torch.from_numpy(self.images[i]).float().div(255.0)
        if self.augment:  # RandomHorizontalFlip + RandomCrop(padding=4, padding_mode="reflect")
            if torch.rand(()) < 0.5:
                x = x.flip(2)
            x = F.pad(x[None], (4, 4, 4, 4), mode="reflect")[0]
            dy, dx = torch.randint(0, 9, (2,)).tolist()
            x = x[:, dy : dy + self.images.shape[2], dx : dx + self.images.shape[3]]
        if self.pil:  # Normalize, as torchvision writes it
            mean = torch.as_tensor(self.mean_list, dtype=x.dtype)
            std = torch.as_tensor(self.std_list, dtype=x.dtype)
            return x.sub_(mean.view(-1, 1, 1)).div_(std.view(-1, 1, 1)), int(self.labels[i])
        return (x - self.mean) / self.std, int(self.labels[i])


def typical_epoch(model, opt, loader, device) -> float:
    model.train()
    t0 = time.perf_counter()
    running = 0.0
    for x, y in loader:
        x, y = x.to(device, non_blocking=True), y.to(device, non_blocking=True)
        loss = F.cross_entropy(model(x), y)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        running += loss.item()  # the usual running loss: one host sync per step
    sync(device)
    return time.perf_counter() - t0


# ----------------------------------------------------------------------------- the plain fast loop
def plain_epoch(model, opt, x, y, bs, gen, device, bf16, augment) -> float:
    model.train()
    sync(device)
    t0 = time.perf_counter()
    order = torch.randperm(len(x), generator=gen, device=device)
    for i in range(0, len(x), bs):
        idx = order[i : i + bs]
        xb = _augment(x[idx], gen) if augment else x[idx]  # the core's batched flip + crop
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=bf16):
            loss = F.cross_entropy(model(xb).float(), y[idx])
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
    sync(device)
    return time.perf_counter() - t0


def make_opt(model, name, lr):
    if name == "sgd":
        return torch.optim.SGD(model.parameters(), lr=lr, momentum=0.9, nesterov=True, weight_decay=1e-4)
    return torch.optim.Adam(model.parameters(), lr=lr, weight_decay=1e-4)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--device", default="cpu", help="cpu | cuda | auto")
    p.add_argument("--n", type=int, default=None, help="training examples (60000 CPU, 50000 GPU)")
    p.add_argument("--batch-size", type=int, default=None, help="256 on CPU, 512 on GPU")
    p.add_argument("--hidden", type=int, default=256, help="MLP width (TrainConfig's default)")
    p.add_argument("--rounds", type=int, default=None, help="alternating rounds (3 CPU, 2 GPU)")
    p.add_argument("--epochs", type=int, default=None, help="epochs of each side per round (1 CPU, 2 GPU: the first is warm-up)")
    p.add_argument("--threads", type=int, default=1, help="torch CPU threads, the same for every side")
    p.add_argument("--workers", type=int, default=None, help="DataLoader workers of the typical loop (0 CPU, 8 GPU)")
    p.add_argument("--model", default=None, help="mlp (CPU default) | resnet18 (GPU default) | cnn")
    p.add_argument("--compile", action="store_true", help="torch.compile in fit (GPU)")
    p.add_argument("--synthetic", action="store_true", help="CPU: synthetic data instead of MNIST t10k repeated")
    p.add_argument("--smoke", action="store_true", help="tiny sizes: checks the script runs, figures meaningless")
    a = p.parse_args()

    device = resolve_device(a.device)
    cuda = device.type == "cuda"
    torch.set_num_threads(a.threads)
    model_name = a.model or ("resnet18" if cuda else "mlp")
    image = model_name != "mlp"
    n = a.n or (50_000 if image else 60_000)
    bs = a.batch_size or (512 if cuda else 256)
    rounds = a.rounds or (2 if cuda else 3)
    epochs = a.epochs or (2 if cuda else 1)
    workers = a.workers if a.workers is not None else (8 if cuda else 0)
    if a.smoke:
        n, rounds, epochs = (128 if image else 2048), 1, 1
    n_test = max(n // 25, 64)
    shape = (3, 8, 8) if (image and a.smoke and not cuda) else (3, 32, 32)
    if image:
        xs, ys = synthetic_images(n + n_test, shape, 10)
        source = f"synthetic {n}x{shape[0]}x{shape[1]}x{shape[2]}"
    else:
        xs, ys, source = mnist_like(n + n_test, real=not a.synthetic)
    augment = image  # CIFAR-style training flips and crops; MNIST does not
    dataset, mean, std = as_dataset(xs, ys, n_test)
    x_train_u8, y_train = xs[n_test:], ys[n_test:]

    cfg = TrainConfig(
        labels="ordinary", method="none", model=model_name, hidden=a.hidden, epochs=epochs, batch_size=bs,
        optimizer="sgd" if image else "adam", lr=0.05 if image else 1e-3, schedule="none", augment=augment,
        device=str(device), num_threads=a.threads, compile=a.compile,
    )
    data = prepare(cfg, dataset, device)  # labels and tensors on the device once, shared by every round
    in_shape = tuple(dataset.x_train.shape[1:])

    def loader(pil: bool):
        return torch.utils.data.DataLoader(
            ImageDataset(x_train_u8, y_train, mean, std, augment, pil), batch_size=bs, shuffle=True,
            num_workers=workers, pin_memory=cuda, persistent_workers=workers > 0,
        )

    loaders = {True: loader(True), False: loader(False)}

    def run_fit() -> list[float]:
        hist = fit(cfg, data).history
        return [n / h["samples_per_s"] for h in hist]  # training seconds, evaluation excluded

    def run_typical(pil: bool) -> list[float]:
        torch.manual_seed(0)
        model = build_model(model_name, in_shape, 10, a.hidden).to(device)
        opt = make_opt(model, cfg.optimizer, cfg.lr)
        return [typical_epoch(model, opt, loaders[pil], device) for _ in range(epochs)]

    gen = torch.Generator(device=device).manual_seed(0)

    def run_plain() -> list[float]:
        torch.manual_seed(0)
        model = build_model(model_name, in_shape, 10, a.hidden).to(device)
        if cuda and image:
            model = model.to(memory_format=torch.channels_last)
        opt = make_opt(model, cfg.optimizer, cfg.lr)
        return [plain_epoch(model, opt, data.x, data.y, bs, gen, device, cuda, augment) for _ in range(epochs)]

    sides = {
        "fit": run_fit,
        "typical": lambda: run_typical(True),
        "typical_lean": lambda: run_typical(False),
        "plain": run_plain,
    }
    times: dict[str, list[float]] = {k: [] for k in sides}
    first: dict[str, list[float]] = {k: [] for k in sides}
    names = list(sides)
    for r in range(rounds):
        for name in names if r % 2 == 0 else names[::-1]:
            t = sides[name]()
            first[name].append(t[0])
            times[name] += t[1:] if len(t) > 1 else t  # with 2+ epochs, epoch 1 (warm-up) is left out
    med = {k: median(v) for k, v in times.items()}
    target = 4 if cuda else 5
    emit(
        "core_epoch",
        device=device.type,
        model=model_name,
        hidden=a.hidden if model_name == "mlp" else None,
        data=source,
        batch_size=bs,
        threads=a.threads,
        workers=workers,
        augment=augment,
        precision="bf16 autocast (fit, plain) vs fp32 (typical)" if cuda else "fp32 everywhere",
        fit_s=med["fit"],
        typical_s=med["typical"],
        ratio=med["typical"] / med["fit"],
        typical_lean_s=med["typical_lean"],
        ratio_lean=med["typical_lean"] / med["fit"],
        plain_s=med["plain"],
        ratio_plain=med["typical"] / med["plain"],
        fit_keeps=med["plain"] / med["fit"],
        target=f">= {target}x",
        met=med["typical"] / med["fit"] >= target,
        epochs_timed=len(times["fit"]),
        first_epoch_s={k: median(v) for k, v in first.items()},
        smoke=a.smoke,
        machine=machine(device),
    )


if __name__ == "__main__":
    main()
