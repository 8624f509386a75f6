"""Where the KL goes, on a bandit: a categorical policy pi = softmax(z) over K one-token answers
with rewards r, a reference pi_ref, every expectation exact (a sum over the answers weighted by
pi, no sampling). A training script samples y ~ pi and differentiates its loss with y fixed;
averaged over samples that gradient is E_{y ~ pi}[grad loss(y)], computed here by hand and
held against the gradient of the KL each placement claims to follow (Tang and Munos 2025), and
followed to its fixed point. Then answers of two tokens, where only the KL in the reward still
follows the whole objective."""
import itertools
import math

import pytest
import torch
import torch.nn.functional as F

from losses import grpo_advantages, grpo_loss, kl_penalised_rewards, rloo_loss

K, BETA = 5, 0.5
g = torch.Generator().manual_seed(0)
Z_REF = torch.randn(K, generator=g, dtype=torch.float64)
R = torch.tensor([0.0, 0.2, 0.5, 0.9, 1.0], dtype=torch.float64)
LOG_REF = F.log_softmax(Z_REF, 0)
ONE = torch.ones(1, 1, dtype=torch.float64)                      # a one-token answer's mask


def expected_grad(z, loss_of):
    """E_{y ~ pi}[grad_z loss_of(log pi, y)], the sampling probabilities held fixed."""
    z = z.detach().clone().requires_grad_()
    logp = F.log_softmax(z, 0)
    p = logp.exp().detach()
    return torch.autograd.grad(sum(p[y] * loss_of(logp, y) for y in range(K)), z)[0]


def kl_in_loss(estimator, advantage=None):
    """grpo_loss on answer y alone (one token), with the KL estimator in the loss."""
    def loss_of(logp, y):
        a = torch.zeros(1, dtype=torch.float64) if advantage is None else advantage(logp)[y:y + 1]
        return grpo_loss(logp[y].view(1, 1), logp[y].detach().view(1, 1), LOG_REF[y].view(1, 1),
                         a, ONE, beta=BETA, kl_estimator=estimator)[0]
    return loss_of


def kl_in_reward(logp, y):
    """rloo_loss on answer y alone, its advantage the KL-penalised reward less its mean (any
    baseline that does not depend on y leaves the expected gradient alone)."""
    pen = kl_penalised_rewards(R, logp.detach().view(K, 1), LOG_REF.view(K, 1),
                               torch.ones(K, 1, dtype=torch.float64), BETA)        # (K,)
    adv = pen - (logp.exp().detach() * pen).sum()
    return rloo_loss(logp[y].view(1, 1), logp[y].detach().view(1, 1), adv[y:y + 1], ONE)[0]


def grad_of(f, z):
    z = z.detach().clone().requires_grad_()
    return torch.autograd.grad(f(F.log_softmax(z, 0)), z)[0]


def kl_forward(logp):                                             # KL(pi || pi_ref)
    return (logp.exp() * (logp - LOG_REF)).sum()


def kl_reverse(logp):                                             # KL(pi_ref || pi)
    return (LOG_REF.exp() * (LOG_REF - logp)).sum()


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_each_kl_estimator_in_the_loss_follows_the_gradient_of_the_kl_it_claims(seed):
    z = torch.randn(K, generator=torch.Generator().manual_seed(seed), dtype=torch.float64)
    pi, pi_ref = F.softmax(z, 0), LOG_REF.exp()
    k3 = expected_grad(z, kl_in_loss("k3"))
    assert torch.allclose(k3, BETA * grad_of(kl_reverse, z), atol=1e-12)
    assert torch.allclose(k3, BETA * (pi - pi_ref), atol=1e-12)     # softmax logits, by hand
    assert torch.allclose(expected_grad(z, kl_in_loss("k2")), BETA * grad_of(kl_forward, z),
                          atol=1e-12)
    assert torch.allclose(expected_grad(z, kl_in_loss("k1")), torch.zeros(K, dtype=torch.float64),
                          atol=1e-12)                                # E_pi[grad log pi] = 0
    # and the forward and reverse KL's gradients differ here: the placements are not alike
    assert (grad_of(kl_forward, z) - grad_of(kl_reverse, z)).abs().max() > 1e-2


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_k1_summed_in_the_reward_follows_the_whole_objective(seed):
    """-E[grad rloo_loss] = grad (E[r] - beta KL(pi || pi_ref)), the objective of pi*."""
    z = torch.randn(K, generator=torch.Generator().manual_seed(seed), dtype=torch.float64)
    objective = grad_of(lambda logp: (logp.exp() * R).sum() - BETA * kl_forward(logp), z)
    assert torch.allclose(-expected_grad(z, kl_in_reward), objective, atol=1e-12)


def ascend(loss_of, steps=1500, lr=1.0):
    """Gradient descent on the expected loss from pi_ref itself: the policy it converges to."""
    z = Z_REF.clone()
    for _ in range(steps):
        z = z - lr * expected_grad(z, loss_of)
    return F.softmax(z, 0)


def test_the_fixed_points_of_the_two_placements():
    pi_ref = LOG_REF.exp()
    star = pi_ref * torch.exp(R / BETA)
    star = star / star.sum()                                        # pi* = pi_ref e^(r/beta) / Z
    centred = lambda logp: R - (logp.exp().detach() * R).sum()      # noqa: E731, A = r - E[r]
    in_reward = ascend(kl_in_reward)
    in_loss = ascend(kl_in_loss("k3", advantage=centred))
    assert torch.allclose(in_reward, star, atol=1e-6)
    # k3 in the loss: the stationary point of E[r] - beta KL(pi_ref || pi)
    assert torch.allclose(in_loss, reverse_optimum(BETA), atol=1e-6)
    # the two differ: k3 in the loss lands elsewhere than the optimum the ceiling is made of
    assert (in_loss - star).abs().max() > 0.03
    reward_of = lambda p: (p * R).sum().item()                      # noqa: E731
    assert reward_of(in_loss) != pytest.approx(reward_of(star), abs=1e-3)
    assert math.isclose(in_reward.sum().item(), 1.0) and math.isclose(in_loss.sum().item(), 1.0)


# ------------------------------------------------------------------ GRPO's std scaling
def group_weights(pi, G: int, scale: str):
    """c(y) = E[(1/G) sum_i A_i 1{y_i = y}] over every group of G answers drawn from pi,
    enumerated, with GRPO's advantages (losses.grpo_advantages): the policy-gradient part of
    the expected update is sum_y c(y) grad log pi(y)."""
    groups = torch.tensor(list(itertools.product(range(K), repeat=G)))        # (K^G, G)
    prob = pi[groups].prod(1)
    A = grpo_advantages(R[groups].reshape(-1), G, scale).view(-1, G)
    c = torch.zeros(K, dtype=torch.float64)
    for i in range(G):
        c.index_add_(0, groups[:, i], prob * A[:, i] / G)
    return c


def grpo_fixed_point(beta: float, scale: str, G: int = 4, steps: int = 1500, lr: float = 2.0):
    """GRPO with k3 in the loss, followed in expectation from pi_ref to where it stops: the
    advantage term, plus k3's expected gradient beta (pi - pi_ref) (the test above)."""
    z = Z_REF.clone()
    for _ in range(steps):
        pi = F.softmax(z, 0)
        c = group_weights(pi, G, scale)
        z = z + lr * (c - pi * c.sum() - beta * (pi - LOG_REF.exp()))
    return F.softmax(z, 0)


def kl(pi):
    return (pi * (pi.log() - LOG_REF)).sum().item()


def reverse_optimum(beta: float):
    """The stationary point of E[r] - beta KL(pi_ref || pi): r_i + beta pi_ref_i / pi_i = lambda,
    pi_i = beta pi_ref_i / (lambda - r_i), lambda making them sum to 1 (by bisection)."""
    pi_ref = LOG_REF.exp()
    lo, hi = R.max().item() + 1e-12, R.max().item() + beta * 10
    for _ in range(200):
        lam = (lo + hi) / 2
        lo, hi = (lam, hi) if (beta * pi_ref / (lam - R)).sum() > 1 else (lo, lam)
    return beta * pi_ref / (lam - R)


@pytest.mark.parametrize("beta", [0.04, 0.16])
def test_grpos_long_leash_comes_from_the_std_scaling_more_than_the_kls_direction(beta):
    """k3 in the loss, groups of G = 4 enumerated. Without std scaling the advantage r_i - mean
    is (G - 1)/G of r_i's own share (the mean holds r_i), so the policy stops exactly at the
    reverse-KL optimum at beta G/(G - 1). With GRPO's scaling the reward's term is divided by
    the group's std and beta k3 is not (an effective beta sigma_r): it stops far past. Here
    the scaling moves the stopping point's KL more than the KL's direction does (pi* 2.01,
    reverse optimum 2.44, unscaled 2.27, scaled 2.92 nats at beta 0.04; 1.24, 1.29, 0.98, 2.45
    at beta 0.16)."""
    G = 4
    star = LOG_REF.exp() * torch.exp(R / beta)
    star = star / star.sum()
    unscaled, scaled = (grpo_fixed_point(beta, s, G) for s in ("none", "group"))
    assert torch.allclose(unscaled, reverse_optimum(beta * G / (G - 1)), atol=1e-3)
    direction = kl(reverse_optimum(beta)) - kl(star)           # the KL's direction alone
    scaling = kl(scaled) - kl(unscaled)                         # the std scaling alone
    assert scaling > 0.5 and scaling > direction


# ------------------------------------------------------------------ answers of two tokens
# pi(a, b) = pi1(a) pi2(b | a), A first tokens and B second ones; every answer enumerated.
A, B = 3, 3
G2 = torch.Generator().manual_seed(7)
REF1, REF2 = (F.log_softmax(torch.randn(*shape, generator=G2, dtype=torch.float64), -1)
              for shape in ((A,), (A, B)))
R2 = torch.rand(A, B, generator=G2, dtype=torch.float64)
TWO = torch.ones(1, 2, dtype=torch.float64)


def sequence_logps(z1, z2):
    """(A, B, 2) per-token log-probs of every answer (a, b), and (A, B) the answers' log pi."""
    l1, l2 = F.log_softmax(z1, -1), F.log_softmax(z2, -1)
    tokens = torch.stack([l1[:, None].expand(A, B), l2], dim=-1)
    return tokens, tokens.sum(-1)


def expected_sequence_grad(z1, z2, loss_of):
    """E_{(a, b) ~ pi}[grad loss_of(a, b)] over both tokens' logits, probabilities held fixed."""
    z1, z2 = (z.detach().clone().requires_grad_() for z in (z1, z2))
    tokens, logp = sequence_logps(z1, z2)
    ref_tokens = torch.stack([REF1[:, None].expand(A, B), REF2], dim=-1)
    p = logp.exp().detach()
    total = sum(p[a, b] * loss_of(tokens[a, b].view(1, 2), ref_tokens[a, b].view(1, 2), a, b,
                                  tokens.detach())
                for a in range(A) for b in range(B))
    return torch.cat([g.flatten() for g in torch.autograd.grad(total, (z1, z2))])


def sequence_grad(z1, z2, f):
    z1, z2 = (z.detach().clone().requires_grad_() for z in (z1, z2))
    return torch.cat([g.flatten() for g in torch.autograd.grad(f(*sequence_logps(z1, z2)),
                                                               (z1, z2))])


def kl_seq(logp, ref_logp, forward=True):
    p, q = logp.exp(), ref_logp.exp()
    return (p * (logp - ref_logp)).sum() if forward else (q * (ref_logp - logp)).sum()


def test_on_two_tokens_only_the_kl_in_the_reward_follows_the_whole_objective():
    g = torch.Generator().manual_seed(11)
    z1, z2 = torch.randn(A, generator=g, dtype=torch.float64), torch.randn(
        A, B, generator=g, dtype=torch.float64)
    ref_logp = (REF1[:, None] + REF2)                                   # (A, B) log pi_ref

    ref_tokens = torch.stack([REF1[:, None].expand(A, B), REF2], dim=-1).reshape(A * B, 2)

    def in_reward(tok, ref_tok, a, b, all_tokens):
        logp = all_tokens.sum(-1)                                       # (A, B), detached
        pen = kl_penalised_rewards(R2.reshape(-1), all_tokens.reshape(A * B, 2), ref_tokens,
                                   torch.ones(A * B, 2, dtype=torch.float64), BETA).view(A, B)
        adv = pen[a, b] - (logp.exp() * pen).sum()                      # k1 summed, a reward
        return rloo_loss(tok, tok.detach(), adv.view(1), TWO)[0]

    objective = sequence_grad(z1, z2, lambda _, logp: (logp.exp() * R2).sum() -
                              BETA * kl_seq(logp, ref_logp))
    assert torch.allclose(-expected_sequence_grad(z1, z2, in_reward), objective, atol=1e-12)
    for estimator, forward in (("k3", False), ("k2", True), ("k1", True)):
        def in_loss(tok, ref_tok, a, b, _):
            return grpo_loss(tok, tok.detach(), ref_tok, torch.zeros(1, dtype=torch.float64),
                             TWO, beta=BETA, loss_type="dapo", kl_estimator=estimator)[0] * 2
        whole = BETA * sequence_grad(z1, z2, lambda _, logp: kl_seq(logp, ref_logp, forward))
        part = expected_sequence_grad(z1, z2, in_loss)     # the token sum: dapo's mean x 2
        if estimator == "k1":                              # still nothing in expectation
            assert part.abs().max() < 1e-12
        else:      # the KL it claims, token by token at prefixes from pi: not the whole KL's
            assert torch.allclose(part, BETA * token_by_token(z1, z2, forward), atol=1e-12)
            assert (part - whole).abs().max() > 1e-2, estimator


def token_by_token(z1, z2, forward):
    """The gradient of each token's own KL at its prefix, the prefix's probability held fixed:
    KL(first token) + sum_a pi1(a) KL(second token | a), forward (KL(pi || pi_ref)) or reverse
    (KL(pi_ref || pi)); the terms through the later token's dependence on the first are the
    part it misses."""
    z1, z2 = (z.detach().clone().requires_grad_() for z in (z1, z2))
    l1, l2 = F.log_softmax(z1, -1), F.log_softmax(z2, -1)
    p1 = l1.exp().detach()
    total = kl_seq(l1, REF1, forward) + sum(p1[a] * kl_seq(l2[a], REF2[a], forward)
                                             for a in range(A))
    return torch.cat([g.flatten() for g in torch.autograd.grad(total, (z1, z2))])
