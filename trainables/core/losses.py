"""Losses on dense soft targets: ordinary CE, six complementary-label (CLL) losses, and the
Infinite Class Mixup dual-contrastive loss.

Every loss in `LOSSES` has the signature `(logits (B, C), target (B, C), Q (C, C) | None)
-> scalar mean over the batch`. Targets are dense rows summing to 1, so any mixing method
composes with any loss:

* ordinary labels: (mixed) one-hot rows, the distribution over the true class;
* complementary labels: (mixed) complementary-label rows, weight on labels the example does
  NOT have (one CL -> one-hot on it; m CLs -> multi-hot / m).

Mixing builds convex combinations of target rows, so a loss that is linear in the target
row equals, per example, the lambda-weighted mix of the losses on the two unmixed targets.
ce, scl_nl, scl_exp, fwd and pc are linear in the target; ure_ga and ure_tnn are not (their
per-class correction acts on batch-level partial risks, each a prior-weighted mean over the
batch's examples with one complementary label).

`Q[i, j] = P(complementary label j | true label i)`. Only fwd requires it; the URE losses use
it when given and fall back to the uniform matrix when it is None (they also take an
optional `ccp=`, the complementary-label prior, defaulting to Q's column means); the others
ignore it.

All losses compute in float32 with autocast off: fit runs the model under bf16 autocast on
GPUs, and logs, exps and matmuls of probabilities lose too much in bf16.
"""

from __future__ import annotations

import functools
from typing import Callable, Optional

import torch
import torch.nn.functional as F
from torch import Tensor

LossFn = Callable[[Tensor, Tensor, Optional[Tensor]], Tensor]
"""(logits (B, C), soft target (B, C), Q (C, C) or None) -> scalar mean loss."""


def _float32(fn):
    """Run `fn(logits, target, ...)` in float32 with autocast off (see module docstring)."""

    @functools.wraps(fn)
    def wrapper(logits: Tensor, target: Tensor, *args, **kwargs) -> Tensor:
        if logits.dim() != 2 or logits.shape != target.shape:
            raise ValueError(
                f"{fn.__name__}: logits {tuple(logits.shape)} and target {tuple(target.shape)} must both be (B, C)"
            )
        # Inside autocast a matmul would drop back to bf16 even on float32 inputs.
        with torch.autocast(device_type=logits.device.type, enabled=False):
            return fn(logits.float(), target.float(), *args, **kwargs)

    return wrapper


def _as_q(Q: Tensor, logits: Tensor, name: str) -> Tensor:
    C = logits.shape[1]
    if Q.shape != (C, C):
        raise ValueError(f"{name}: Q has shape {tuple(Q.shape)}, expected ({C}, {C})")
    return Q.to(device=logits.device, dtype=torch.float32)  # no-op when already there


# ------------------------------------------------------------------ ordinary labels
@_float32
def soft_cross_entropy(logits: Tensor, target: Tensor, Q: Tensor | None = None) -> Tensor:
    """Cross-entropy with soft targets, -sum_c t_c log softmax(z)_c, mean over the batch.

    The loss of mixup (Zhang et al., 2018, "mixup: Beyond Empirical Risk Minimization") on
    mixed one-hot rows. Linear in the target. Q is ignored.
    """
    return -(target * F.log_softmax(logits, dim=1)).sum(1).mean()


# ------------------------------------------------------------------ complementary labels
def _log1m_softmax(logits: Tensor) -> Tensor:
    """log(1 - softmax(z)) (B, C), finite and exact even when one p_c rounds to 1.

    Only the row's argmax can have p > 1/2 (two classes cannot both exceed it), so every
    other entry is the well-conditioned log1p(-p). For the argmax, 1 - p = sum of the other
    classes' probabilities, computed as logsumexp over the others minus logsumexp over all:
    no cancellation, no underflow to log(0).
    """
    lse = torch.logsumexp(logits, dim=1, keepdim=True)  # (B, 1)
    top = F.one_hot(logits.argmax(1), logits.shape[1]).bool()  # (B, C)
    others = torch.logsumexp(logits.masked_fill(top, float("-inf")), dim=1, keepdim=True) - lse  # (B, 1)
    # Zeroing p at the argmax keeps the unused branch finite there (p = 1 would give
    # log1p(-1) = -inf, whose infinite gradient where() multiplies by 0: NaN).
    rest = torch.log1p(-torch.softmax(logits, dim=1).masked_fill(top, 0.0))  # (B, C)
    return torch.where(top, others, rest)


@_float32
def scl_nl(logits: Tensor, target: Tensor, Q: Tensor | None = None) -> Tensor:
    """SCL-NL, -sum_c t_c log(1 - p_c), mean over the batch.

    Chou et al., 2020, "Unbiased Risk Estimators Can Mislead: A Case Study of Learning with
    Complementary Labels" (ICML): the surrogate complementary loss with the negative log.
    Linear in the target; computed stably for p_c -> 1 (see `_log1m_softmax`). Q is ignored.
    """
    return -(target * _log1m_softmax(logits)).sum(1).mean()


@_float32
def scl_exp(logits: Tensor, target: Tensor, Q: Tensor | None = None) -> Tensor:
    """SCL-EXP, sum_c t_c exp(p_c), mean over the batch.

    Chou et al., 2020 (ICML), the surrogate complementary loss with the exponential; as in
    libcll's SCL "EXP" (exp of the softmax probability of the complementary label, no
    constant subtracted). Linear in the target. Q is ignored.
    """
    return (target * torch.softmax(logits, dim=1).exp()).sum(1).mean()


@_float32
def fwd(logits: Tensor, target: Tensor, Q: Tensor | None) -> Tensor:
    """Forward correction, -sum_c t_c log((p Q)_c), mean over the batch.

    Yu et al., 2018, "Learning with Biased Complementary Labels" (ECCV): p Q is the model's
    distribution over complementary labels, fitted to the observed ones by CE. Q is required.
    Linear in the target.
    """
    if Q is None:
        raise ValueError("fwd needs the transition matrix Q (C, C), got None")
    q = torch.softmax(logits, dim=1) @ _as_q(Q, logits, "fwd")  # (B, C) P(cl = c | x)
    # A zero (p Q)_c (a CL never drawn, or underflow) with t_c = 0 would give 0 * -inf = NaN;
    # the floor keeps it finite and changes no value above it.
    log_q = q.clamp_min(torch.finfo(torch.float32).tiny).log()
    return -(target * log_q).sum(1).mean()


def _ure_ccp(Q: Tensor | None, logits: Tensor, ccp: Tensor | None) -> Tensor:
    """(C,) prior of the complementary labels, P(cl = k): `ccp` if given, else Q's column means."""
    C = logits.shape[1]
    if ccp is not None:
        if ccp.shape != (C,):
            raise ValueError(f"ure: ccp has shape {tuple(ccp.shape)}, expected ({C},)")
        return ccp.to(device=logits.device, dtype=torch.float32)
    if Q is None:
        return torch.full((C,), 1.0 / C, device=logits.device)
    # E[t] = pi Q; with a uniform class prior pi = 1/C that is the mean of Q's rows
    return _as_q(Q, logits, "ure").mean(0)


@_float32
def ure_partial_risks(logits: Tensor, target: Tensor, Q: Tensor | None = None, ccp: Tensor | None = None) -> Tensor:
    """Per-class partial risks R_k (C,) of the CE unbiased risk estimator; sum_k R_k = URE.

    Ishida et al., 2019, "Complementary-Label Learning for Arbitrary Losses and Models"
    (ICML), Theorem 1 with l = CE, the risk split by the class k of the loss term:

        R_k = sum_j ccp_j * Qinv[j, k] * M[j, k],   M[j, k] = mean over the batch's examples
              with complementary label j of l_ik = -log softmax(z_i)_k

    soft targets weight each example into group j by t_ij (M = t^T l / n_j, n_j = sum_i t_ij).
    With uniform Q (Q = None), Qinv = J - (C-1) I: R_k = sum_j ccp_j M[j, k] - (C-1) ccp_k
    M[k, k], the paper's -(K-1) l(ybar) + sum_j l(j) split by k. With ccp = P(cl = j), in
    expectation R_k = pi_k E[l_k | y = k] >= 0, which is why a negative R_k signals
    overfitting. A given Q generalises to biased CLs, and to multiple CLs (multi-hot / m)
    with Q[y] = E[t | y]. Q^{-1} comes from `torch.linalg.inv_ex` (no host sync): a
    singular Q gives non-finite values, not an error.

    This is what the published code does (takashiishida/comp, utils_algo.non_negative_loss):
    for each complementary class k present in the batch, the mean of -log p over the
    examples whose CL is k, weighted by ccp[k], the CL prior of the whole training set; a
    class absent from the batch contributes nothing (its M row is 0 here too). libcll's URE
    weights by the training set's CL counts too, but sums the same terms grouped by
    complementary label (its partial risks are per CL, so their signs mean something
    else); this grouping is Ishida's.

    Why the prior and not the batch's own share of each CL (n_k / B, what the batch mean of
    w_ik l_ik with w = t Q^{-1} gives): with batch shares the sign of R_k follows the batch's
    composition; at uniform predictions R_k = (1 - (C-1) n_k / B) log C, negative whenever CL k
    is drawn more than B / (C-1) times, which with B = 256, C = 10 holds for some k in ~99% of
    batches. URE-GA would then ascend nearly every step, raising p_k on the examples whose CL
    is k: the model would learn to predict complementary labels. With prior weights
    R_k = (1 - (C-1) ccp_k) log C > 0 there, whatever the batch.

    `ccp` defaults to Q's column means (P(cl) under a uniform class prior; 1/C for uniform
    Q), not to the training set's empirical CL frequencies: on ~1300 digits rows those are
    off by up to ~20% (0.080..0.117 for one draw), and ccp_k > 1/(C-1) makes that R_k
    negative for every predictor with equal losses (measured: clearly worse than the
    population prior). Pass `ccp` (C,) explicitly when the class prior is not uniform (e.g.
    the training targets' mean, as Ishida's code does on 60k MNIST rows).

    Known interaction: a short batch (a few rows, so some groups absent and the others
    means of one or two examples) gives a noisy, low-biased estimate; under BatchNorm a
    step on such a batch (fit's last slice of an epoch when N % batch_size is small) costs
    the URE losses much accuracy, a BN-free MLP does not mind. That is for the loop to
    avoid (drop or merge a short last batch); the estimator cannot see the batch size.
    """
    C = logits.shape[1]
    if Q is None:
        q_inv = torch.ones(C, C, device=logits.device) - (C - 1) * torch.eye(C, device=logits.device)
    else:
        q_inv = torch.linalg.inv_ex(_as_q(Q, logits, "ure"))[0]  # (C, C)
    prior = _ure_ccp(Q, logits, ccp)  # (C,)
    n = target.sum(0)  # (C,) (soft) count of each complementary label in the batch
    # per-group weight ccp_j / n_j; an absent group (n_j = 0, t_.j = 0) gets weight 0
    scale = torch.where(n > 0, prior / n.clamp_min(torch.finfo(torch.float32).tiny), 0.0)  # (C,)
    M = target.T @ -F.log_softmax(logits, dim=1)  # (C, C): M[j, k] = sum_i t_ij l_ik
    return ((scale[:, None] * q_inv) * M).sum(0)  # (C,) R_k = sum_j ccp_j Qinv[j, k] mean_j(l_k)


@_float32
def ure_ga(logits: Tensor, target: Tensor, Q: Tensor | None = None, ccp: Tensor | None = None) -> Tensor:
    """URE with gradient ascent (URE-GA): the objective to minimise this step.

    Ishida et al., 2019 (ICML), Algorithm 1 with beta = 0: if every partial risk R_k >= 0,
    minimise the unbiased estimate sum_k R_k; otherwise minimise -sum_k min(0, R_k), i.e.
    gradient ascent on the negative partial risks only, pushing them back up. Returned value
    is that objective (>= 0 in the second case). The branch is chosen on the device
    (torch.where), no host sync. Q = None is libcll's URE "GA" (uniform Q); a given Q is
    libcll's "TGA" (transition matrix). See `ure_partial_risks` (prior-weighted groups).

    The published code (takashiishida/comp, demo.py) branches the same way: when some
    partial risk is negative it back-propagates sum(min(v, 0)) and negates every gradient
    before the optimiser step, else it back-propagates the full sum sum_k R_k. Its v,
    though, is non_negative_loss's second return value, n_k * R_k (the batch count of CL k
    times the partial risk), so its ascent steps are ~B/C times larger than its descent
    steps; libcll's GA ascends sum_k min(0, R_k) without the counts, and so does this
    function (measured on digits with Adam: the counted ascent is worse, e.g. 24 vs 29%
    test accuracy at lr 1e-3, 31 vs 38% at lr 1e-4).

    NOT linear in the target: the min/max act on batch-level partial risks, so the loss of a
    mixed batch is not the lambda-mix of per-example losses (which are not even defined).
    """
    R = ure_partial_risks(logits, target, Q, ccp)  # (C,)
    return torch.where(R.min() < 0, -R.clamp(max=0).sum(), R.sum())


@_float32
def ure_tnn(logits: Tensor, target: Tensor, Q: Tensor | None = None, ccp: Tensor | None = None) -> Tensor:
    """URE with the non-negative correction, sum_k max(0, R_k).

    Ishida et al., 2019 (ICML), the max-operator correction (beta = 0; takashiishida/comp's
    "nn"): negative partial risks are dropped (no gradient from them) rather than ascended.
    This is libcll's URE "TNN" when Q is given (the transition-matrix variant, Q^{-1} in the
    estimator) and libcll's "NN" when Q is None (uniform Q) -- libcll runs the same code for
    both and only swaps Q. See `ure_partial_risks` (prior-weighted groups).

    NOT linear in the target, for the same reason as `ure_ga`.
    """
    return ure_partial_risks(logits, target, Q, ccp).clamp(min=0).sum()


@_float32
def pc(logits: Tensor, target: Tensor, Q: Tensor | None = None) -> Tensor:
    """Pairwise comparison with the sigmoid loss (PC), mean over the batch.

    Ishida et al., 2017, "Learning from Complementary Labels" (NeurIPS), Theorem 1: with
    l(z) = sigmoid(-z) and the per-CL loss Lbar(z, c) = sum_{y != c} l(z_y - z_c), the
    unbiased estimate of the ordinary PC risk is (C-1) Lbar - C(C-1)/2 + (C-1). Per example
    we take sum_c t_c [(C-1) Lbar(z, c) - C(C-1)/2 + (C-1)], linear in the target (the
    constants sit inside the t-weighted sum). libcll's PC drops the (C-1) factor and the
    constants: same minimiser, gradients (C-1) times smaller. Q is ignored.
    """
    C = logits.shape[1]
    # l(z_y - z_c) = sigmoid(z_c - z_y); D[b, c, y], summed over y != c (the y = c term is 1/2).
    D = torch.sigmoid(logits.unsqueeze(2) - logits.unsqueeze(1))  # (B, C, C)
    lbar = D.sum(2) - 0.5  # (B, C)
    per_cl = (C - 1) * lbar - C * (C - 1) / 2 + (C - 1)  # (B, C)
    return (target * per_cl).sum(1).mean()


LOSSES: dict[str, LossFn] = {
    "ce": soft_cross_entropy,
    "scl_nl": scl_nl,
    "scl_exp": scl_exp,
    "fwd": fwd,
    "ure_ga": ure_ga,
    "ure_tnn": ure_tnn,
    "pc": pc,
}


PRIOR_LOSSES = ("ure_ga", "ure_tnn")
"""Losses that take the complementary-label prior `ccp=` (the URE estimators)."""


def get_loss(name: str, ccp: Tensor | None = None) -> LossFn:
    """The loss called `name` in `LOSSES`; ValueError listing the valid names otherwise.

    `ccp` (C,), the complementary-label prior P(cl = k) = (pi Q)_k of a training set whose
    class prior pi is not uniform, is bound into the losses that use it (PRIOR_LOSSES);
    None keeps their default (Q's column means: a uniform class prior).
    """
    try:
        fn = LOSSES[name]
    except KeyError:
        raise ValueError(f"unknown loss {name!r}; valid: {', '.join(sorted(LOSSES))}") from None
    if ccp is not None and name in PRIOR_LOSSES:
        return functools.partial(fn, ccp=ccp)
    return fn


# ------------------------------------------------------------------ Infinite Class Mixup
def candidate_targets(cl_target: Tensor) -> Tensor:
    """Complementary-label rows (B, C) -> distribution over the candidate classes, (1 - t) / (C - 1).

    Used for Infinite Class Mixup on complementary labels: the mixed classifier of an example
    is the mean of the classifiers of the classes it may belong to. Rows sum to 1 whenever
    the t rows do (sum_c (1 - t_c) = C - 1). Affine with weights summing to 1, so it commutes
    with mixing: candidate_targets(mix(t_a, t_b)) = mix(candidate_targets(t_a), ...). For a
    single CL the CL gets weight 0 and the others 1 / (C - 1); for m CLs (multi-hot / m)
    each CL keeps weight (1 - 1/m) / (C - 1), the price of staying linear.
    """
    C = cl_target.shape[-1]
    if C < 2:
        raise ValueError(f"candidate_targets needs at least 2 classes, got {C}")
    return (1.0 - cl_target) / (C - 1)


@_float32
def dual_contrastive(logits: Tensor, target: Tensor, balance: float = 0.5) -> Tensor:
    """Infinite Class Mixup's dual-contrastive loss on a batch of mixed examples.

    Mensink & Mettes, 2023, "Infinite Class Mixup" (BMVC). Mixed example i gets its own
    classifier w~_i = sum_c y~_ic w_c (bias mixed alike), so example j's score under it is
    S[j, i] = (logits @ target.T)[j, i]. Rows: each example picks its own classifier among
    the batch's (CE over row j, target j); columns: each classifier picks its own example
    (CE over column i, target i). Returns balance * CE_rows + (1 - balance) * CE_cols, each
    CE a mean over the B rows/columns.

    balance = 0.5 gives the paper's equal weighting of the two directions. The authors' code
    (psmmettes/icm, mixup "icmixup-f") *sums* the two mean CEs, so ours at 0.5 is the
    paper's loss divided by 2 (same minimiser; gradients half as large).
    """
    if not 0.0 <= balance <= 1.0:
        raise ValueError(f"balance={balance} must be in [0, 1]")
    S = logits @ target.T  # (B, B): S[j, i] = score of example j under mixed classifier i
    own = torch.arange(S.shape[0], device=S.device)  # the diagonal is each one's match
    rows = F.cross_entropy(S, own)  # softmax over classifiers i, per example j
    cols = F.cross_entropy(S.T, own)  # softmax over examples j, per classifier i
    return balance * rows + (1.0 - balance) * cols


def infinite_class_loss(
    logits: Tensor,
    target: Tensor,
    base_loss: LossFn,
    Q: Tensor | None = None,
    weight: float = 1.0,
    balance: float = 0.5,
    contrastive_target: Tensor | None = None,
) -> Tensor:
    """weight * dual_contrastive(logits, contrastive_target, balance) + (1 - weight) * base_loss(logits, target, Q).

    Contract: `target` is what `base_loss` takes (mixed one-hot rows for "ce"; mixed
    complementary rows for the CLL losses). `contrastive_target` builds the mixed
    classifiers and must be a distribution over the classes an example may belong to:
    None means `target` itself (ordinary labels); for complementary labels the caller passes
    `candidate_targets(target)`. weight = 1 is the paper (contrastive loss only); a term
    whose weight is 0 is not computed.
    """
    if not 0.0 <= weight <= 1.0:
        raise ValueError(f"weight={weight} must be in [0, 1]")
    ctarget = target if contrastive_target is None else contrastive_target
    if weight == 1.0:
        return dual_contrastive(logits, ctarget, balance)
    if weight == 0.0:
        return base_loss(logits, target, Q)
    return weight * dual_contrastive(logits, ctarget, balance) + (1.0 - weight) * base_loss(logits, target, Q)
