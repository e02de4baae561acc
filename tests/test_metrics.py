"""Metrics: hand-computed accuracy, ECE, noise rate and pair impurity; all return python floats."""

from __future__ import annotations

import pytest
import torch

from trainables.core.metrics import (accuracy, expected_calibration_error, impure_pairs, noise_rate, noisy_rows,
                                     pair_impurity)


def rows(confs, labels_pred):
    """(N, 3) probabilities with max `conf` on class `pred` and the rest split evenly."""
    out = []
    for conf, pred in zip(confs, labels_pred):
        r = [(1 - conf) / 2] * 3
        r[pred] = conf
        out.append(r)
    return torch.tensor(out)


def test_accuracy_hand():
    logits = torch.tensor([[2.0, 1.0, 0.0], [0.0, 3.0, 1.0], [1.0, 0.0, 5.0], [4.0, 0.0, 1.0]])
    y = torch.tensor([0, 1, 1, 2])  # argmax 0, 1, 2, 0 -> 2 of 4 right
    got = accuracy(logits, y)
    assert isinstance(got, float) and got == pytest.approx(0.5)


def test_ece_perfectly_calibrated_is_zero():
    # 4 at confidence 0.75 with 3 right, 2 at confidence 1.0 both right
    probs = rows([0.75] * 4 + [1.0] * 2, [0] * 6)
    y = torch.tensor([0, 0, 0, 1, 0, 0])
    got = expected_calibration_error(probs, y)
    assert isinstance(got, float) and got == pytest.approx(0.0, abs=1e-7)


def test_ece_hand_four_samples():
    # confidences (15 bins of width 1/15): 0.9 -> bin 13, 0.82 -> bin 12, 0.61 and 0.64 -> bin 9
    probs = rows([0.9, 0.82, 0.61, 0.64], [0, 0, 0, 0])
    y = torch.tensor([0, 1, 0, 2])  # right, wrong, right, wrong
    # (1/N) sum_bins |sum (correct - conf)| = (|1-0.9| + |0-0.82| + |1-0.61+0-0.64|) / 4
    want = (0.1 + 0.82 + 0.25) / 4
    assert expected_calibration_error(probs, y) == pytest.approx(want, abs=1e-6)
    # one bin: |accuracy - mean confidence| = |0.5 - 0.7425|
    assert expected_calibration_error(probs, y, n_bins=1) == pytest.approx(0.2425, abs=1e-6)
    with pytest.raises(ValueError):
        expected_calibration_error(probs, y, n_bins=0)


def test_noise_rate_hand():
    mixed = torch.tensor(
        [
            [0.0, 0.7, 0.3],  # y=0: no weight on 0 -> clean
            [0.4, 0.6, 0.0],  # y=1: weight on 1 -> noisy (partner's CL is 1, or CL wrong)
            [1.0, 0.0, 0.0],  # y=2: clean
            [0.0, 0.0, 1.0],  # y=2: the CL itself is the true class -> noisy
        ]
    )
    y = torch.tensor([0, 1, 2, 2])
    got = noise_rate(mixed, y)
    assert isinstance(got, float) and got == pytest.approx(0.5)
    assert noisy_rows(mixed, y).item() == 2  # what fit sums batch by batch


def test_pair_impurity_hand():
    got = pair_impurity(torch.tensor([0, 1, 2, 3, 3]), torch.tensor([0, 2, 2, 1, 3]))
    assert isinstance(got, float) and got == pytest.approx(2 / 5)
    assert impure_pairs(torch.tensor([0, 1, 2, 3, 3]), torch.tensor([0, 2, 2, 1, 3])).item() == 2
