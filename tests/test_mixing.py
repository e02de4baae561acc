import numpy as np
import pytest
import torch

from trainables.core.errors import ConfigError
from trainables.core.mixing import (
    ClusterIndex,
    batch_cluster_pairing,
    check_cutmix_shape,
    cluster_pairing,
    cutmix,
    draw_pairs,
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


# ----------------------------------------------------------------------------- ICM variants' pairings
def test_self_pairs_reach_the_anchor_and_stay_in_the_cluster():
    assign = torch.tensor([0, 1, 0, 2, 1, 0, 1, 1, 2, 3])
    ci = ClusterIndex(assign)
    idx = torch.arange(10).repeat(200)
    partner = ci.partners(idx, torch.Generator().manual_seed(2), self_pairs=True)
    assert torch.equal(assign[partner], assign[idx])
    # example 1's cluster {1, 4, 6, 7}: itself included, each about a quarter of the time
    share = torch.bincount(partner[idx == 1], minlength=10)[[1, 4, 6, 7]].float() / 200
    assert torch.all((share > 0.15) & (share < 0.35)), share


@pytest.mark.parametrize("self_pairs", [False, True])
def test_in_batch_cluster_pairing_stays_in_the_batch_and_the_cluster(self_pairs):
    assign = torch.randint(0, 6, (500,), generator=torch.Generator().manual_seed(0))
    ci = ClusterIndex(assign)
    gen = torch.Generator().manual_seed(1)
    hits_self = 0
    for _ in range(20):
        idx = torch.randperm(500, generator=gen)[:64]
        p = batch_cluster_pairing(idx, ci, gen, self_pairs)
        assert torch.equal(idx[p.perm], p.partner)  # partners are rows of this batch
        assert torch.equal(assign[p.partner], assign[idx])
        counts = torch.bincount(assign[idx], minlength=6)
        has_other = counts[assign[idx]] > 1
        hits_self += int((p.partner[has_other] == idx[has_other]).sum())
        assert torch.all(p.partner[~has_other] == idx[~has_other])  # alone in the batch: itself
    # with others to draw from, self is drawn only when allowed (about 1 / cluster size ~ 1/11)
    assert (hits_self > 0) == self_pairs


def test_draw_pairs_dispatches_on_pairing_and_scope():
    ci = ClusterIndex(torch.tensor([0, 0, 1, 1, 1, 0]))
    idx = torch.tensor([0, 2, 3, 5])
    gen = torch.Generator().manual_seed(0)
    assert draw_pairs("random", "set", idx, None, gen).perm is not None
    assert draw_pairs("cluster", "set", idx, ci, gen).perm is None
    inb = draw_pairs("cluster", "batch", idx, ci, gen)
    assert set(inb.partner.tolist()) <= set(idx.tolist())


# ----------------------------------------------------------------------------- CutMix's rule
@pytest.mark.parametrize("side", [16, 28, 32])
def test_cutmix_effective_lambda_matches_the_drawn_one_where_offered(side):
    """From 16x16 up (where the presets offer CutMix) the pasted area carries the drawn weight."""
    lam = draw_lambdas(2000, 2, 1.0, np.random.default_rng(0), torch.device("cpu"))
    x, xp = torch.zeros(2000, 1, side, side), torch.ones(2000, 1, side, side)
    xm, lam_eff = cutmix(x, xp, lam, torch.Generator().manual_seed(0))
    torch.testing.assert_close(xm.reshape(2000, 2, -1).mean(-1), 1 - lam_eff)  # targets use the pasted area
    err = (lam_eff - lam).abs()
    # rounding each side to whole pixels moves the area by at most ~(H + W) / 2 pixels
    assert err.mean() < 0.5 / side and err.max() <= (side + 0.25) / side**2, (err.mean(), err.max())
    # Yun et al.'s clipped box (centre anywhere) was biased: mean effective lambda well above the drawn one
    assert abs((lam_eff - lam).mean()) < 0.01


@pytest.mark.parametrize("shape", [(1, 1, 64), (1, 8, 8), (3, 15, 32)])
def test_cutmix_is_refused_where_it_mixes_nothing_or_misses_lambda(shape):
    with pytest.raises(ConfigError, match="cutmix needs images of at least 16x16"):
        check_cutmix_shape(shape)


def test_cutmix_is_allowed_from_16_pixels():
    check_cutmix_shape((3, 32, 32))
    check_cutmix_shape((1, 16, 16))


@pytest.mark.parametrize("min_side, offered", [(None, False), (1, False), (8, False), (28, True), (32, True)])
def test_presets_offer_cutmix_only_on_images_it_can_cut(min_side, offered):
    import optuna

    from search_spaces.presets import SpaceContext, get_preset

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    for preset in ("multimix", "all"):
        study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=0))
        levels = set()
        for _ in range(60):
            trial = study.ask()
            get_preset(preset, SpaceContext(min_side=min_side))(trial)
            levels.add(trial.params.get("mix_level"))
        assert ("cutmix" in levels) == offered, (preset, levels)
