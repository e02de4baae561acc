import numpy as np
import pytest
import torch

from trainables.core.mixing import (
    ClusterIndex,
    cluster_pairing,
    cutmix,
    draw_lambdas,
    hidden_mixer,
    mix_inputs,
    mix_targets,
    random_pairing,
    repeat_anchor,
)


def test_lambdas_sorted_in_range_and_reproducible():
    lam = draw_lambdas(64, 5, 0.4, np.random.default_rng(3), torch.device("cpu"))
    assert lam.shape == (64, 5)
    assert torch.all(lam[:, 1:] >= lam[:, :-1])
    assert torch.all((lam >= 0) & (lam <= 1))
    again = draw_lambdas(64, 5, 0.4, np.random.default_rng(3), torch.device("cpu"))
    assert torch.equal(lam, again)


def test_beta_mean_and_alpha_shape():
    small = draw_lambdas(20000, 1, 0.2, np.random.default_rng(0), torch.device("cpu"))
    big = draw_lambdas(20000, 1, 5.0, np.random.default_rng(0), torch.device("cpu"))
    assert abs(small.mean().item() - 0.5) < 0.02
    # Beta(0.2,0.2) piles up near 0 and 1; Beta(5,5) near 0.5
    assert ((small < 0.1) | (small > 0.9)).float().mean() > 0.5
    assert ((big > 0.3) & (big < 0.7)).float().mean() > 0.7


def test_mix_shapes_sums_and_values():
    x = torch.randn(4, 1, 8, 8)
    xp = torch.randn(4, 1, 8, 8)
    t = torch.softmax(torch.randn(4, 3), 1)
    tp = torch.softmax(torch.randn(4, 3), 1)
    lam = torch.tensor([[0.1, 0.5, 0.9]]).repeat(4, 1)
    xm = mix_inputs(x, xp, lam)
    tm = mix_targets(t, tp, lam)
    assert xm.shape == (12, 1, 8, 8) and tm.shape == (12, 3)
    torch.testing.assert_close(tm.sum(1), torch.ones(12))
    # anchor-major order: row 1*3+2 is anchor 1 with lambda 0.9
    torch.testing.assert_close(xm[5], 0.9 * x[1] + 0.1 * xp[1])
    torch.testing.assert_close(tm[5], 0.9 * t[1] + 0.1 * tp[1])
    assert repeat_anchor(torch.tensor([7, 8]), 3).tolist() == [7, 7, 7, 8, 8, 8]


def test_random_pairing_is_a_permutation_of_the_batch():
    idx = torch.tensor([10, 11, 12, 13, 14])
    p = random_pairing(idx, torch.Generator().manual_seed(0))
    assert sorted(p.partner.tolist()) == idx.tolist()
    assert torch.equal(idx[p.perm], p.partner)


def test_icm_partners_share_the_cluster_and_differ_from_anchor():
    assign = torch.tensor([0, 1, 0, 2, 1, 0, 1, 1, 2, 3])  # cluster 3 is a singleton
    ci = ClusterIndex(assign)
    idx = torch.arange(10).repeat(50)
    partner = cluster_pairing(idx, ci, torch.Generator().manual_seed(1)).partner
    assert torch.equal(assign[partner], assign[idx])
    alone = idx == 9
    assert torch.all(partner[alone] == 9)
    assert torch.all(partner[~alone] != idx[~alone])
    # every other member of cluster 1 is reachable from example 1
    assert set(partner[idx == 1].tolist()) == {4, 6, 7}


def test_cutmix_box_area_matches_lambda():
    x = torch.zeros(3, 1, 16, 16)
    xp = torch.ones(3, 1, 16, 16)
    lam = torch.tensor([[0.3, 0.6], [0.5, 0.8], [0.95, 0.99]])
    xm, lam2 = cutmix(x, xp, lam, torch.Generator().manual_seed(0))
    assert xm.shape == (6, 1, 16, 16)
    pasted = xm.reshape(3, 2, -1).mean(-1)  # share of partner pixels
    torch.testing.assert_close(pasted, 1 - lam2)


def test_hidden_mixer_in_batch_and_out_of_batch():
    lam = torch.full((2, 1), 0.25)
    h = torch.tensor([[1.0], [3.0]])
    inb = hidden_mixer(lam, torch.tensor([1, 0]))(h)
    assert inb.flatten().tolist() == pytest.approx([0.25 * 1 + 0.75 * 3, 0.25 * 3 + 0.75 * 1])
    both = torch.tensor([[1.0], [3.0], [5.0], [7.0]])
    out = hidden_mixer(lam, None)(both)
    assert out.flatten().tolist() == pytest.approx([0.25 * 1 + 0.75 * 5, 0.25 * 3 + 0.75 * 7])
