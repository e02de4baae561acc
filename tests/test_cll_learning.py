"""Every complementary-label loss learns: the real `fit` on digits with uniform single CLs.

Setting (the issue's): digits, labels=complementary, cl_type=uniform (one CL per example,
drawn uniformly from the 9 other classes), method=none, the default MLP (BatchNorm),
Adam, batch 256, cosine schedule, 40 epochs, CPU, one thread; seeds 0, 1, 2.

What is asserted, and why these bounds:

* chance is 10% (10 balanced classes). A loss whose estimator or gradient has the wrong
  sign learns to predict the complementary labels and lands *below* chance: URE-GA with
  the old batch-mean partial risks gave 0.5-6% test accuracy here.
* per loss: the mean test accuracy of the three seeds (the digits test split, 359 rows,
  after the last epoch -- what the CLL papers and libcll report, there on MNIST's 10k test
  set) exceeds a bound, and every seed exceeds 15% (1.5x chance).
* each bound is at least twice chance and about 3 standard deviations of a 3-seed mean
  (std over 5 seeds / sqrt(3), ~2.7 points) below the 3-seed mean measured with the
  default 10% validation split (1294 training rows; fit skips the 14-row last slice, which
  under BatchNorm had cost the URE losses ~40 points). Measured 3-seed means (lr 1e-3):
  scl_nl 85.9, scl_exp 85.7, fwd 85.9, pc 46.6, ure_tnn 72.7, ure_ga 65.6 (5-seed std
  3.4-4.9 points); ure_ga at lr 1e-4: test 39.3 / 52.9, train 40.6 / 51.0 with 1294 / 1438
  rows before the tail skip (before the estimator fix: 0.5-1.9 test, 0.7 train).

The tests use only fields of TrainConfig that do not depend on how many training rows
there are; nothing here assumes a row count.
"""

from __future__ import annotations

import statistics

import pytest
import torch

from trainables.core.config import TrainConfig
from trainables.core.data import load_dataset
from trainables.core.fit import fit, prepare

CHANCE = 0.10
SEEDS = (0, 1, 2)
EVERY_SEED = 0.15  # each seed alone: 1.5x chance

# loss -> (lr, bound on the 3-seed mean test accuracy); see the module docstring
BOUNDS = {
    "scl_nl": (1e-3, 0.75),
    "scl_exp": (1e-3, 0.75),
    "fwd": (1e-3, 0.75),
    "pc": (1e-3, 0.35),
    "ure_tnn": (1e-3, 0.60),
    "ure_ga": (1e-3, 0.55),
}


def config(loss: str, lr: float, seed: int) -> TrainConfig:
    return TrainConfig(
        dataset="digits",
        labels="complementary",
        cl_type="uniform",
        method="none",
        loss=loss,
        epochs=40,
        lr=lr,
        seed=seed,
        device="cpu",
        precision="fp32",
        num_threads=1,
    )


@pytest.fixture(scope="module")
def digits():
    return load_dataset(config("scl_nl", 1e-3, 0))


def test_bounds_cover_every_cll_loss():
    from trainables.core.losses import LOSSES

    assert set(BOUNDS) == set(LOSSES) - {"ce"}
    assert all(bound >= 2 * CHANCE for _, bound in BOUNDS.values())


@pytest.mark.parametrize("loss", sorted(BOUNDS))
def test_cll_loss_learns_well_above_chance(digits, loss):
    lr, bound = BOUNDS[loss]
    accs = [fit(config(loss, lr, seed), digits).final["test_acc"] for seed in SEEDS]
    assert statistics.mean(accs) > bound, f"{loss}: test accuracies {accs}, bound {bound} on the mean"
    assert min(accs) > EVERY_SEED, f"{loss}: test accuracies {accs}, every seed must exceed {EVERY_SEED}"


@torch.no_grad()
def _train_accuracy(model: torch.nn.Module, x: torch.Tensor, y: torch.Tensor) -> float:
    model.eval()
    return (model(x).argmax(1) == y).float().mean().item()


def test_ure_ga_does_not_learn_the_complementary_labels_at_lr_1e_4(digits):
    # The issue: lr 1e-4, 40 epochs gave 0.8% test and 0.7% training accuracy -- the model
    # predicted the complementary labels. Training accuracy is on the true labels of the
    # exact rows fit trained on (prepare's TrainData, passed to fit).
    train, test = [], []
    for seed in SEEDS:
        cfg = config("ure_ga", 1e-4, seed)
        data = prepare(cfg, digits, torch.device("cpu"))
        res = fit(cfg, data)
        train.append(_train_accuracy(res.model, data.x, data.y))
        test.append(res.final["test_acc"])
    assert min(train) > EVERY_SEED and statistics.mean(train) > 0.25, f"training accuracies {train}"
    assert min(test) > EVERY_SEED and statistics.mean(test) > 0.25, f"test accuracies {test}"
