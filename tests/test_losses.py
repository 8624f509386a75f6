"""Every loss against values computed by hand, plus gradient directions by autograd."""
import math

import pytest
import torch
import torch.nn.functional as F

from losses import (best_of_group_advantages, dpo_loss, grpo_advantages, grpo_loss, ipo_loss,
                    kl_penalised_rewards, kto_loss, kto_reference_point, log1mexp, nll_loss,
                    orpo_loss, rloo_advantages, rloo_loss, sequence_logps, simpo_loss, sft_loss)


def t(*values):
    return torch.tensor(values, dtype=torch.float64, requires_grad=True)


# ------------------------------------------------------------------ log-probs

def test_sequence_logps_is_gather_over_log_softmax():
    torch.manual_seed(0)
    logits, targets = torch.randn(3, 5, 7), torch.randint(7, (3, 5))
    mask = torch.tensor([[0, 1, 1, 1, 0], [1, 1, 1, 1, 1], [0, 0, 0, 0, 1]], dtype=torch.float)
    per_token = logits.log_softmax(-1).gather(2, targets[..., None]).squeeze(-1)
    assert torch.allclose(sequence_logps(logits, targets, mask), (per_token * mask).sum(1))
    assert torch.allclose(sequence_logps(logits, targets, mask, average=True),
                          (per_token * mask).sum(1) / mask.sum(1))
    ce = F.cross_entropy(logits.transpose(1, 2), targets, reduction="none")
    assert torch.allclose(sequence_logps(logits, targets, mask), -(ce * mask).sum(1))


def test_sft_loss_is_masked_mean_cross_entropy():
    logits = torch.log(torch.tensor([[[0.5, 0.5], [0.9, 0.1], [0.2, 0.8]]]))
    targets, mask = torch.tensor([[0, 1, 1]]), torch.tensor([[0.0, 1.0, 1.0]])
    expected = -(math.log(0.1) + math.log(0.8)) / 2
    assert sft_loss(logits, targets, mask).item() == pytest.approx(expected, rel=1e-6)


# ------------------------------------------------------------------ DPO

def test_dpo_is_ln2_when_policy_equals_reference():
    pc, pr = t(-3.0, -10.0), t(-5.0, -1.0)
    losses, cr, rr = dpo_loss(pc, pr, pc.detach(), pr.detach(), beta=0.1)
    assert torch.allclose(losses, torch.full((2,), math.log(2), dtype=torch.float64))
    assert (cr == 0).all() and (rr == 0).all()


def test_dpo_hand_value():
    # h = (-1 - -2) - (-4 - -3) = 1 - (-1) = 2; beta h = 0.2
    losses, cr, rr = dpo_loss(t(-1.0), t(-4.0), t(-2.0), t(-3.0), beta=0.1)
    assert losses.item() == pytest.approx(-math.log(1 / (1 + math.exp(-0.2))))
    assert cr.item() == pytest.approx(0.1) and rr.item() == pytest.approx(-0.1)
    assert not cr.requires_grad and not rr.requires_grad


def test_dpo_label_smoothing_hand_value():
    losses, _, _ = dpo_loss(t(-1.0), t(-4.0), t(-2.0), t(-3.0), beta=0.1, label_smoothing=0.2)
    sig = lambda x: 1 / (1 + math.exp(-x))
    assert losses.item() == pytest.approx(-0.8 * math.log(sig(0.2)) - 0.2 * math.log(sig(-0.2)))


def test_dpo_gradient_raises_chosen_and_lowers_rejected():
    pc, pr = t(-3.0), t(-5.0)
    losses, _, _ = dpo_loss(pc, pr, t(-3.0).detach(), t(-5.0).detach(), beta=0.5)
    losses.sum().backward()
    assert pc.grad.item() < 0 < pr.grad.item()          # descent raises chosen, lowers rejected
    assert pc.grad.item() == pytest.approx(-0.5 * 0.5)  # -beta * sigmoid(-beta h), h = 0


def test_swapping_chosen_and_rejected_mirrors_the_rewards():
    args = (t(-1.0, -2.0), t(-4.0, -1.5), t(-2.0, -2.5), t(-3.0, -1.0))
    swapped = (args[1], args[0], args[3], args[2])
    for fn in (dpo_loss, ipo_loss):
        _, cr, rr = fn(*args, beta=0.3)
        _, cr2, rr2 = fn(*swapped, beta=0.3)
        assert torch.equal(cr, rr2) and torch.equal(rr, cr2)
    _, cr, rr = simpo_loss(args[0], args[1])
    _, cr2, rr2 = simpo_loss(args[1], args[0])
    assert torch.equal(cr, rr2) and torch.equal(rr, cr2)


# ------------------------------------------------------------------ IPO

def test_ipo_hand_value_and_minimum_at_one_over_two_beta():
    losses, _, _ = ipo_loss(t(-1.0), t(-4.0), t(-2.0), t(-3.0), beta=0.1)
    assert losses.item() == pytest.approx((2 - 5) ** 2)           # h = 2, 1/(2 beta) = 5
    beta = 0.25
    margins = torch.linspace(-5, 10, 301, dtype=torch.float64)
    zeros = torch.zeros_like(margins)
    losses, _, _ = ipo_loss(margins, zeros, zeros, zeros, beta=beta)
    assert margins[losses.argmin()].item() == pytest.approx(1 / (2 * beta))
    h = t(1.0)  # below the target margin 2: the gradient pushes the margin up
    ipo_loss(h, torch.zeros(1), torch.zeros(1), torch.zeros(1), beta=beta)[0].sum().backward()
    assert h.grad.item() == pytest.approx(2 * (1.0 - 2.0))


# ------------------------------------------------------------------ SimPO

def test_simpo_hand_value():
    # beta (c - r) - gamma = 2 (-0.5 - -1.0) - 0.5 = 0.5
    losses, cr, rr = simpo_loss(t(-0.5), t(-1.0), beta=2.0, gamma=0.5)
    assert losses.item() == pytest.approx(-math.log(1 / (1 + math.exp(-0.5))))
    assert cr.item() == pytest.approx(-1.0) and rr.item() == pytest.approx(-2.0)


def test_simpo_gradient_raises_chosen_lowers_rejected():
    c, r = t(-0.5), t(-1.0)
    simpo_loss(c, r)[0].sum().backward()
    assert c.grad.item() < 0 < r.grad.item()


# ------------------------------------------------------------------ GRPO

def test_grpo_advantages_by_hand():
    rewards = torch.tensor([1.0, 0.0, 0.0, 1.0, 2.0, 2.0, 2.0, 2.0])
    adv = grpo_advantages(rewards, group_size=4, eps=0.0 + 1e-12)
    s = math.sqrt(1 / 3)  # Bessel-corrected std of [1, 0, 0, 1]
    assert adv[:4].tolist() == pytest.approx([0.5 / s, -0.5 / s, -0.5 / s, 0.5 / s])
    assert adv[4:].tolist() == [0.0] * 4                        # zero-spread group: no signal
    assert not torch.isnan(grpo_advantages(torch.ones(4), 2)).any()
    assert grpo_advantages(rewards, 4, scale="none")[:4].tolist() == [0.5, -0.5, -0.5, 0.5]
    batch = grpo_advantages(rewards, 4, scale="batch", eps=0.0)
    assert batch[:4].tolist() == pytest.approx((torch.tensor([0.5, -.5, -.5, .5]) /
                                                rewards.std()).tolist())
    with pytest.raises(ValueError):
        grpo_advantages(rewards, 1)


def grpo_case():
    logps = torch.tensor([[-1.0, -2.0, 0.0], [-0.5, -0.5, -0.5]], requires_grad=True)
    mask = torch.tensor([[1.0, 1.0, 0.0], [1.0, 1.0, 1.0]])
    return logps, mask, torch.tensor([1.0, -2.0])


def test_grpo_loss_by_hand_for_each_loss_type():
    logps, mask, adv = grpo_case()
    # ratio = 1 (old = current), no KL: per token -A; row sums: -1*2 = -2 and 2*3 = 6
    old = logps.detach()
    grpo, _ = grpo_loss(logps, old, None, adv, mask, loss_type="grpo")
    assert grpo.item() == pytest.approx(((-2 / 2) + (6 / 3)) / 2)
    dr, _ = grpo_loss(logps, old, None, adv, mask, loss_type="dr_grpo", max_completion_length=10)
    assert dr.item() == pytest.approx((-2 + 6) / (2 * 10))   # N x the sampler's limit, not 3
    dapo, _ = grpo_loss(logps, old, None, adv, mask, loss_type="dapo")
    assert dapo.item() == pytest.approx((-2 + 6) / 5)


def test_dr_grpo_normalises_batches_of_different_widths_alike():
    """The same answers padded to two widths (a batch's width is its longest answer's) give
    the same Dr. GRPO loss: it divides by N x max_completion_length, a constant. The batch's
    own width would not."""
    logps, mask, adv = grpo_case()
    wide_logps = torch.cat([logps.detach(), torch.zeros(2, 4)], dim=1)    # width 3 -> 7
    wide_mask = torch.cat([mask, torch.zeros(2, 4)], dim=1)
    losses = [grpo_loss(lp, lp, None, adv, m, loss_type="dr_grpo", max_completion_length=48)[0]
              for lp, m in ((logps.detach(), mask), (wide_logps, wide_mask))]
    assert losses[0].item() == pytest.approx(losses[1].item()) == pytest.approx(4 / (2 * 48))
    with pytest.raises(ValueError, match="max_completion_length"):
        grpo_loss(logps, logps.detach(), None, adv, mask, loss_type="dr_grpo")


def test_rloo_advantages_by_hand():
    # group [1, 0, 0, 1]: each answer minus the mean of the other three
    rewards = torch.tensor([1.0, 0.0, 0.0, 1.0, 0.5, 0.5, 0.5, 0.5])
    assert rloo_advantages(rewards, 4).tolist() == pytest.approx(
        [1 - 1 / 3, 0 - 2 / 3, 0 - 2 / 3, 1 - 1 / 3, 0, 0, 0, 0])
    # = G / (G - 1) (r - mean): the group-mean baseline rescaled, no std
    centered = grpo_advantages(rewards, 4, scale="none")
    assert torch.allclose(rloo_advantages(rewards, 4), 4 / 3 * centered)
    with pytest.raises(ValueError):
        rloo_advantages(rewards, 1)


def test_best_of_group_advantage_picks_the_highest_reward_and_breaks_ties_at_random():
    rewards = torch.tensor([0.2, 0.9, 0.1, 0.5, 1.0, 1.0, 0.0, 1.0])
    picks = []
    for seed in range(200):
        adv = best_of_group_advantages(rewards, 4, torch.Generator().manual_seed(seed))
        assert adv[:4].tolist() == [0.0, 1.0, 0.0, 0.0]             # the one best
        assert adv[4:].sum() == 1 and adv[6] == 0                   # one of the three 1.0s
        picks.append(int(adv[4:].argmax()))
    assert min(picks.count(i) for i in (0, 1, 3)) > 40               # each tie about 1/3


def test_grpo_kl_term_by_hand_and_its_gradient_pulls_toward_reference():
    logps, mask, adv = grpo_case()
    ref = logps.detach() + 0.3                       # reference likes these tokens more
    zero_adv = torch.zeros(2)
    loss, metrics = grpo_loss(logps, logps.detach(), ref, zero_adv, mask, beta=0.5)
    k3 = math.exp(0.3) - 0.3 - 1
    assert loss.item() == pytest.approx(0.5 * k3, rel=1e-5)
    assert metrics["kl"] == pytest.approx(k3, rel=1e-5)
    loss.backward()
    # descent moves logp up, toward the reference: the gradient is negative on masked tokens
    assert (logps.grad[mask.bool()] < 0).all() and (logps.grad[~mask.bool()] == 0).all()
    loss_no_kl, m = grpo_loss(logps, logps.detach(), ref, zero_adv, mask, beta=0.0)
    assert loss_no_kl.item() == 0.0 and m["kl"] == 0.0


def test_each_kl_estimator_by_hand():
    logps, mask, _ = grpo_case()
    ref = logps.detach() + 0.3                       # log pi - log pi_ref = -0.3 on every token
    for estimator, per_token in (("k1", -0.3), ("k2", 0.3 ** 2 / 2),
                                 ("k3", math.exp(0.3) - 0.3 - 1)):
        loss, metrics = grpo_loss(logps, logps.detach(), ref, torch.zeros(2), mask, beta=0.5,
                                  kl_estimator=estimator)
        assert loss.item() == pytest.approx(0.5 * per_token, rel=1e-5), estimator
        assert metrics["kl"] == pytest.approx(per_token, rel=1e-5), estimator
    with pytest.raises(ValueError, match="kl_estimator"):
        grpo_loss(logps, logps.detach(), ref, torch.zeros(2), mask, kl_estimator="k4")


def test_kl_penalised_rewards_by_hand():
    logps, mask, _ = grpo_case()
    ref = torch.tensor([[-1.5, -1.0, 9.0], [-0.5, -1.0, 0.0]])   # 9.0: off the mask, ignored
    # row 0: (-1 + 1.5) + (-2 + 1) = -0.5; row 1: 0 + 0.5 - 0.5 = 0
    out = kl_penalised_rewards(torch.tensor([1.0, 0.2]), logps, ref, mask, beta=0.1)
    assert out.tolist() == pytest.approx([1.0 + 0.05, 0.2])
    assert not out.requires_grad                     # a reward: no gradient flows through it


def trl_rloo_loss(rewards, logps, old_logps, ref_logps, mask, G, beta, eps):
    """TRL's RLOOTrainer (trl/trainer/rloo_trainer.py, 1.x) re-derived in plain Python, one
    answer at a time: the KL as the sum of old_logp - ref_logp over the answer's tokens, times
    beta, off the reward; the mean of the group's other rewards as the baseline; the
    sequence-level ratio exp(sum logp - sum old_logp), clipped; the mean over answers."""
    N = len(rewards)
    rows = [[t for t in range(len(mask[i])) if mask[i][t]] for i in range(N)]
    penalised = [rewards[i] - beta * sum(old_logps[i][t] - ref_logps[i][t] for t in rows[i])
                 for i in range(N)]
    total = 0.0
    for i in range(N):
        group = range(i // G * G, i // G * G + G)
        baseline = sum(penalised[j] for j in group if j != i) / (G - 1)
        adv = penalised[i] - baseline
        ratio = math.exp(sum(logps[i][t] - old_logps[i][t] for t in rows[i]))
        total += -min(ratio * adv, min(max(ratio, 1 - eps), 1 + eps) * adv)
    return total / N


def test_rloo_matches_trls_formulas():
    g = torch.Generator().manual_seed(0)
    N, T, G, beta, eps = 8, 5, 4, 0.05, 0.2
    logps = -torch.rand(N, T, generator=g, dtype=torch.float64)
    old = logps + 0.2 * torch.randn(N, T, generator=g, dtype=torch.float64)  # some ratios clip
    ref = logps + 0.3 * torch.randn(N, T, generator=g, dtype=torch.float64)
    mask = (torch.rand(N, T, generator=g) > 0.3).double()
    mask[:, 0] = 1.0
    rewards = torch.rand(N, generator=g, dtype=torch.float64)
    ours, metrics = rloo_loss(logps * mask, old * mask, rloo_advantages(
        kl_penalised_rewards(rewards, old * mask, ref * mask, mask, beta), G), mask, epsilon=eps)
    theirs = trl_rloo_loss(rewards.tolist(), logps.tolist(), old.tolist(), ref.tolist(),
                           mask.tolist(), G, beta, eps)
    assert ours.item() == pytest.approx(theirs, rel=1e-12)
    assert 0 < metrics["clip_ratio"] < 1


def test_rloo_loss_is_reinforce_on_the_whole_answer_at_ratio_one():
    """One update per batch: the gradient of rloo_loss is -mean_i A_i grad log pi(y_i), each
    answer's log-prob summed over its tokens (no 1 / length weight)."""
    logps, mask, adv = grpo_case()
    loss, _ = rloo_loss(logps * mask, (logps * mask).detach(), adv, mask)
    loss.backward()
    assert torch.allclose(logps.grad, -adv[:, None] * mask / 2)     # mean over N = 2 answers


def test_grpo_clip_zeroes_gradient_past_the_band():
    logps, mask, _ = grpo_case()
    adv = torch.tensor([1.0, -1.0])
    # row 0: ratio e^0.5 > 1.2 with A > 0 -> clipped; row 1: ratio e^-0.5 < 0.8 with A < 0 -> clipped
    old = logps.detach() - torch.tensor([[0.5], [-0.5]])
    loss, metrics = grpo_loss(logps, old, None, adv, mask, epsilon=0.2)
    loss.backward()
    assert (logps.grad == 0).all()
    assert metrics["clip_ratio"] == 1.0
    # inside the band the gradient flows, in the advantage's direction
    logps2, mask, _ = grpo_case()
    grpo_loss(logps2, logps2.detach(), None, adv, mask)[0].backward()
    assert (logps2.grad[0, :2] < 0).all() and (logps2.grad[1] > 0).all()


@pytest.mark.parametrize("loss_type", ["grpo", "dr_grpo", "dapo"])
def test_grpo_mask_excludes_padding(loss_type):
    """The policy's log-prob at a padded position (where old and ref stay as they were) moves
    neither the loss nor any gradient: a loss that ignored its mask would see the ratio there
    jump from exp(0.1) to exp(-49.9)."""
    logps, mask, adv = grpo_case()
    old, ref = logps.detach() - 0.1, logps.detach() + 0.2
    kw = dict(loss_type=loss_type, max_completion_length=3)
    base, _ = grpo_loss(logps, old, ref, adv, mask, **kw)
    base.backward()
    changed = logps.detach().clone()
    changed[0, 2] = -50.0                              # a padded position: the policy's only
    changed.requires_grad_()
    again, _ = grpo_loss(changed, old, ref, adv, mask, **kw)
    again.backward()
    assert again.item() == pytest.approx(base.item())
    assert changed.grad[0, 2] == 0 and torch.allclose(changed.grad, logps.grad)


# ------------------------------------------------------------------ RPO, ORPO, KTO

def test_nll_loss_is_the_negated_mean_log_prob_and_raises_it():
    chosen_mean = t(-0.5, -2.0)
    assert nll_loss(chosen_mean).tolist() == [0.5, 2.0]
    nll_loss(chosen_mean).sum().backward()
    assert (chosen_mean.grad < 0).all()                     # descent raises log pi(y_w)


def test_orpo_by_hand():
    c, r, beta = -0.5, -1.0, 0.1
    log_odds = (c - r) - (math.log(1 - math.exp(c)) - math.log(1 - math.exp(r)))
    losses, cr, rr = orpo_loss(t(c), t(r), beta=beta)
    assert losses.item() == pytest.approx(-beta * math.log(1 / (1 + math.exp(-log_odds))))
    assert (cr.item(), rr.item()) == pytest.approx((beta * c, beta * r))
    assert not cr.requires_grad


def test_orpo_gradient_raises_chosen_and_lowers_rejected():
    c, r = t(-0.7, -2.0), t(-1.5, -0.3)
    orpo_loss(c, r)[0].sum().backward()
    assert (c.grad < 0).all() and (r.grad > 0).all()


def test_orpo_is_finite_in_float32_at_log_probs_near_zero():
    """log(1 - e^x) near x = 0 cancels catastrophically if computed naively."""
    x = torch.tensor([-1e-3, -1e-5, -1e-7, -1e-9, 0.0], requires_grad=True)   # float32
    exact = torch.log(-torch.expm1(x.detach().double().clamp(max=-1e-7)))
    assert torch.allclose(log1mexp(x).double(), exact, rtol=1e-5)
    assert not torch.isfinite(torch.log1p(-torch.exp(torch.tensor(-1e-9))))   # naive: -inf
    losses, _, _ = orpo_loss(x, torch.full_like(x, -2.0))
    losses.sum().backward()
    assert torch.isfinite(losses).all() and torch.isfinite(x.grad).all()
    far = torch.tensor([-5.0, -30.0])
    assert torch.allclose(log1mexp(far), torch.log1p(-torch.exp(far)))


def test_kto_by_hand():
    policy, ref = t(-3.0, -4.0, -6.0), t(-3.5, -3.0, -6.0)
    desirable = torch.tensor([True, False, True])
    z0, beta = 0.2, 0.1
    losses, rewards = kto_loss(policy, ref, desirable, torch.tensor(z0, dtype=torch.float64),
                               beta=beta, desirable_weight=2.0, undesirable_weight=1.5)
    sig = lambda v: 1 / (1 + math.exp(-v))
    expected = [2.0 * (1 - sig(beta * (0.5 - z0))),        # desirable, r = 0.5
                1.5 * (1 - sig(beta * (z0 - (-1.0)))),       # undesirable, r = -1
                2.0 * (1 - sig(beta * (0.0 - z0)))]          # desirable, r = 0
    assert losses.tolist() == pytest.approx(expected)
    assert rewards.tolist() == pytest.approx([0.05, -0.1, 0.0]) and not rewards.requires_grad


def test_kto_pushes_desirable_answers_up_and_undesirable_down():
    policy, ref = t(-3.0, -4.0, -2.0, -5.0), t(-3.0, -4.0, -2.0, -5.0)
    desirable = torch.tensor([True, False, True, False])
    kto_loss(policy, ref, desirable, torch.tensor(0.0, dtype=torch.float64))[0].sum().backward()
    assert (policy.grad[desirable] < 0).all() and (policy.grad[~desirable] > 0).all()


def test_kto_reference_point_is_the_clamped_detached_mean_log_ratio():
    policy, ref = t(-3.0, -1.0), t(-4.0, -1.0)
    z0 = kto_reference_point(policy, ref)
    assert z0.item() == pytest.approx(0.5) and not z0.requires_grad     # mean(1, 0)
    assert kto_reference_point(t(-5.0), t(-1.0)).item() == 0.0           # clamped at 0
    # z0 carries no gradient into the loss: the loss's gradient is the same with z0 fixed
    mismatched = t(-2.0, -1.0)
    desirable = torch.tensor([True, False])
    kto_loss(policy, ref, desirable, kto_reference_point(mismatched, ref))[0].sum().backward()
    assert mismatched.grad is None
