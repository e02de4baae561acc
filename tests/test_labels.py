import pytest
import torch

from trainables.core.labels import complementary_targets, imbalance_indices, ordinary_targets, transition_matrix


def gen(seed=0):
    return torch.Generator().manual_seed(seed)


def balanced(n_per_class, C):
    return torch.arange(C).repeat_interleave(n_per_class)  # (n_per_class * C,)


def draw(y, C, cl_type="uniform", num_cl=1, cl_noise=0.0, seed=0):
    g = gen(seed)
    Q = transition_matrix(C, cl_type, cl_noise, g)
    return Q, complementary_targets(y, C, cl_type, num_cl, cl_noise, Q, g)


# ----------------------------------------------------------------------------- Q
@pytest.mark.parametrize("cl_type", ["uniform", "multiple", "biased"])
@pytest.mark.parametrize("cl_noise", [0.0, 0.3])
def test_transition_rows_sum_to_one(cl_type, cl_noise):
    Q = transition_matrix(6, cl_type, cl_noise, gen())
    assert Q.shape == (6, 6) and Q.dtype == torch.float32
    assert torch.allclose(Q.sum(1), torch.ones(6), atol=1e-6)
    assert torch.allclose(Q.diagonal(), torch.full((6,), cl_noise), atol=1e-6)


def test_uniform_transition_values():
    Q = transition_matrix(4, "uniform", 0.1, gen())
    assert torch.allclose(Q, 0.9 * (1 - torch.eye(4)) / 3 + 0.1 * torch.eye(4))


def test_biased_transition_is_random_and_not_uniform():
    Q = transition_matrix(10, "biased", 0.0, gen(0))
    off = Q[~torch.eye(10, dtype=torch.bool)].view(10, 9)
    assert torch.all(Q.diagonal() == 0) and torch.all(off > 0)
    assert (off.max(1).values / off.min(1).values).min() > 3  # some complementary labels much likelier
    assert torch.equal(Q, transition_matrix(10, "biased", 0.0, gen(0)))
    assert not torch.equal(Q, transition_matrix(10, "biased", 0.0, gen(1)))


@pytest.mark.parametrize(
    "args, needle",
    [
        ((1, "uniform", 0.0), "num_classes >= 2"),
        ((4, "odd", 0.0), "cl_type='odd'"),
        ((4, "uniform", 1.0), "cl_noise=1.0"),
    ],
)
def test_transition_rejects_bad_arguments(args, needle):
    with pytest.raises(ValueError, match=needle):
        transition_matrix(*args, generator=gen())


# ----------------------------------------------------------------------------- single CLs
def test_uniform_cl_never_true_class_and_rows_sum_to_one():
    y = balanced(200, 5)
    _, T = draw(y, 5)
    assert T.shape == (1000, 5) and T.dtype == torch.float32
    assert torch.all(T.sum(1) == 1) and torch.all((T > 0).sum(1) == 1)
    assert torch.all(T[torch.arange(len(y)), y] == 0)


@pytest.mark.parametrize("cl_type", ["uniform", "biased"])
def test_empirical_frequencies_match_Q(cl_type):
    C = 4
    y = balanced(3000, C)
    Q, T = draw(y, C, cl_type, cl_noise=0.2)
    freq = torch.stack([T[y == c].mean(0) for c in range(C)])  # (C, C) empirical Q
    assert (freq - Q).abs().max() < 0.03


@pytest.mark.parametrize("cl_type, num_cl", [("uniform", 1), ("biased", 1), ("multiple", 3)])
def test_wrong_cl_share_matches_noise(cl_type, num_cl):
    y = balanced(800, 10)
    _, T = draw(y, 10, cl_type, num_cl, cl_noise=0.25)
    wrong = (T[torch.arange(len(y)), y] > 0).float().mean().item()
    assert abs(wrong - 0.25) < 0.03


# ----------------------------------------------------------------------------- multiple CLs
def test_multiple_exact_count_none_true():
    y = balanced(100, 10)
    _, T = draw(y, 10, "multiple", num_cl=4)
    assert torch.all((T > 0).sum(1) == 4)
    assert torch.allclose(T.sum(1), torch.ones(len(y)))
    assert torch.all(T[T > 0] == 0.25)
    assert torch.all(T[torch.arange(len(y)), y] == 0)
    freq = (T > 0).float().mean(0)  # every class is picked about as often (4/9 of the others)
    assert (freq - 0.4).abs().max() < 0.05


def test_multiple_with_noise_keeps_num_cl_labels():
    y = balanced(100, 6)
    _, T = draw(y, 6, "multiple", num_cl=5, cl_noise=0.5)
    assert torch.all((T > 0).sum(1) == 5)  # the true class replaces one, never duplicates


def test_num_cl_too_large_raises():
    y = balanced(3, 4)
    Q = transition_matrix(4, "multiple", 0.0, gen())
    with pytest.raises(ValueError, match=r"num_cl=4 must be in \[1, 3\] for 4 classes"):
        complementary_targets(y, 4, "multiple", 4, 0.0, Q, gen())
    with pytest.raises(ValueError, match=r"num_cl=2 needs cl_type=multiple"):
        complementary_targets(y, 4, "uniform", 2, 0.0, Q, gen())


@pytest.mark.parametrize("cl_type, num_cl", [("uniform", 1), ("biased", 1), ("multiple", 2)])
def test_same_seed_same_labels(cl_type, num_cl):
    y = balanced(50, 5)
    a = draw(y, 5, cl_type, num_cl, 0.1, seed=3)
    b = draw(y, 5, cl_type, num_cl, 0.1, seed=3)
    c = draw(y, 5, cl_type, num_cl, 0.1, seed=4)
    assert torch.equal(a[0], b[0]) and torch.equal(a[1], b[1])
    assert not torch.equal(a[1], c[1])


def test_labels_out_of_range_raise():
    Q = transition_matrix(3, "uniform", 0.0, gen())
    with pytest.raises(ValueError, match=r"labels must lie in \[0, 3\)"):
        complementary_targets(torch.tensor([0, 3]), 3, "uniform", 1, 0.0, Q, gen())


# ----------------------------------------------------------------------------- imbalance, ordinary
def test_imbalance_profile():
    C = 10
    y = balanced(500, C)[torch.randperm(5000, generator=gen(9))]
    idx = imbalance_indices(y, C, 10.0, gen())
    assert idx.dtype == torch.int64 and torch.all(idx[1:] > idx[:-1])  # sorted, unique
    counts = torch.bincount(y[idx], minlength=C)
    assert counts[0] == 500 and torch.all(counts[:-1] >= counts[1:])  # class c has rank c
    assert abs(counts[0].item() / counts[-1].item() - 10.0) < 0.3
    expected = torch.round(500 * 10.0 ** (-torch.arange(C) / (C - 1)))
    assert torch.equal(counts, expected.long())
    assert torch.equal(idx, imbalance_indices(y, C, 10.0, gen()))
    assert not torch.equal(idx, imbalance_indices(y, C, 10.0, gen(1)))


def test_imbalance_uneven_classes_keeps_exact_ratio():
    y = torch.cat([torch.zeros(80), torch.ones(120), torch.full((100,), 2)]).long()
    counts = torch.bincount(y[imbalance_indices(y, 3, 4.0, gen())], minlength=3)
    assert counts.tolist() == [80, 40, 20]


def test_imbalance_ratio_one_keeps_all():
    y = balanced(7, 3)
    assert torch.equal(imbalance_indices(y, 3, 1.0, gen()), torch.arange(21))
    with pytest.raises(ValueError, match="ratio=0.5"):
        imbalance_indices(y, 3, 0.5, gen())


def test_ordinary_targets_one_hot():
    T = ordinary_targets(torch.tensor([2, 0]), 3)
    assert torch.equal(T, torch.tensor([[0.0, 0.0, 1.0], [1.0, 0.0, 0.0]]))
