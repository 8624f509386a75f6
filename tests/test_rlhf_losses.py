"""The reward model and PPO pieces of losses.py against values worked by hand."""
import math

import pytest
import torch

from losses import gae, ppo_loss, ppo_rewards, reward_model_loss, whiten


def t(*values):
    return torch.tensor(values, dtype=torch.float64, requires_grad=True)


def row(*values):
    """One sequence's per-token values, (1, T), that collects a gradient."""
    return torch.tensor([values], dtype=torch.float64, requires_grad=True)


# ------------------------------------------------------------------ reward model

def test_reward_model_loss_by_hand_and_at_a_tie():
    chosen, rejected = t(1.0, 0.0, 2.0), t(0.0, 0.0, 3.0)
    expected = [math.log(1 + math.exp(-1)), math.log(2), math.log(1 + math.exp(1))]
    assert reward_model_loss(chosen, rejected).tolist() == pytest.approx(expected)
    # a margin of 1 turns a 1-point win into a tie: ln 2
    assert reward_model_loss(t(1.0), t(0.0), margin=torch.tensor([1.0])).item() == \
        pytest.approx(math.log(2))


def test_reward_model_gradient_raises_chosen_and_lowers_rejected():
    chosen, rejected = t(0.3, -1.0), t(0.5, 2.0)
    reward_model_loss(chosen, rejected).sum().backward()
    assert (chosen.grad < 0).all() and (rejected.grad > 0).all()
    # d/d r_w of -log sigmoid(r_w - r_l) is -(1 - sigmoid(r_w - r_l))
    assert chosen.grad[0].item() == pytest.approx(-(1 - 1 / (1 + math.exp(0.2))))


# ------------------------------------------------------------------ per-token rewards

def test_ppo_rewards_put_the_kl_on_every_token_and_the_score_on_the_last():
    # row 0: prompt at position 0, answer at 1..3, padding at 4; row 1: answer at 2..4
    mask = torch.tensor([[0, 1, 1, 1, 0], [0, 0, 1, 1, 1]], dtype=torch.float64)
    logps = torch.tensor([[9.0, -1.0, -2.0, -0.5, 9.0], [9.0, 9.0, -1.0, -1.0, -1.0]])
    ref = torch.tensor([[0.0, -1.5, -1.0, -0.5, 0.0], [0.0, 0.0, -2.0, -1.0, -3.0]])
    rewards = ppo_rewards(torch.tensor([2.0, -1.0]), logps * mask, ref * mask, mask,
                          kl_coef=0.1)
    expected = [[0, -0.1 * 0.5, -0.1 * -1.0, 0 + 2.0, 0],
                [0, 0, -0.1 * 1.0, 0, -0.1 * 2.0 - 1.0]]
    assert rewards.tolist() == [pytest.approx(row) for row in expected]


# ------------------------------------------------------------------ GAE

def test_gae_worked_example():
    # three answer tokens, the score at the end; gamma 1, lambda 0.95
    rewards = torch.tensor([[0.0, 0.0, 1.0]])
    values = torch.tensor([[0.5, 0.6, 0.7]])
    advantages, returns = gae(rewards, values, torch.ones(1, 3), gamma=1.0, lam=0.95)
    # t=2: delta = 1 + 0 - 0.7 = 0.3              A = 0.3
    # t=1: delta = 0 + 0.7 - 0.6 = 0.1            A = 0.1 + 0.95 * 0.3 = 0.385
    # t=0: delta = 0 + 0.6 - 0.5 = 0.1            A = 0.1 + 0.95 * 0.385 = 0.46575
    assert advantages[0].tolist() == pytest.approx([0.46575, 0.385, 0.3])
    assert returns[0].tolist() == pytest.approx([0.96575, 0.985, 1.0])


def test_gae_with_discount_by_hand():
    rewards, values = torch.tensor([[1.0, 2.0]]), torch.tensor([[0.5, 1.0]])
    advantages, _ = gae(rewards, values, torch.ones(1, 2), gamma=0.9, lam=0.5)
    # t=1: delta = 2 - 1 = 1                     A = 1
    # t=0: delta = 1 + 0.9 * 1 - 0.5 = 1.4       A = 1.4 + 0.9 * 0.5 * 1 = 1.85
    assert advantages[0].tolist() == pytest.approx([1.85, 1.0])


def test_gae_at_gamma_lambda_one_is_return_to_go_minus_value_inside_the_mask():
    torch.manual_seed(0)
    rewards, values = torch.randn(4, 7, dtype=torch.float64), torch.randn(4, 7, dtype=torch.float64)
    mask = torch.zeros(4, 7, dtype=torch.float64)
    for row, (start, stop) in enumerate([(1, 5), (0, 7), (3, 4), (2, 6)]):
        mask[row, start:stop] = 1
    advantages, returns = gae(rewards, values, mask, gamma=1.0, lam=1.0)
    # the return-to-go counts only the answer's own rewards: those past the mask are 0
    to_go = (rewards * mask).flip(1).cumsum(1).flip(1)
    assert torch.allclose(returns, to_go * mask)
    assert torch.allclose(advantages, (to_go - values) * mask)
    # and at lambda 0 the advantage is the one-step TD error
    advantages, _ = gae(rewards, values, mask, gamma=1.0, lam=0.0)
    next_values = torch.cat([(values * mask)[:, 1:], torch.zeros(4, 1)], 1)
    assert torch.allclose(advantages, (rewards + next_values - values) * mask)


# ------------------------------------------------------------------ whitening

def test_whiten_gives_mean_zero_std_one_over_the_mask_and_zero_outside():
    values = torch.tensor([[1.0, 2.0, 3.0, 100.0], [4.0, 5.0, -7.0, 0.0]], dtype=torch.float64)
    mask = torch.tensor([[1, 1, 1, 0], [1, 1, 0, 0]], dtype=torch.float64)
    out = whiten(values, mask)
    kept = out[mask.bool()]
    # by hand: 1..5 have mean 3 and unbiased variance 2.5
    assert kept.tolist() == pytest.approx([(v - 3) / math.sqrt(2.5) for v in [1, 2, 3, 4, 5]],
                                          rel=1e-6)
    assert (out[~mask.bool()] == 0).all()
    assert whiten(values, mask, shift_mean=False)[mask.bool()].mean().item() == \
        pytest.approx(3.0)


# ------------------------------------------------------------------ the PPO loss

def ones(n=1, T=3):
    return torch.ones(n, T, dtype=torch.float64)


def test_ppo_loss_at_ratio_one_is_minus_the_mean_advantage_plus_the_value_loss():
    logps = row(-1.0, -2.0, -0.5)
    advantages = torch.tensor([[1.0, -2.0, 0.5]], dtype=torch.float64)
    values = row(0.1, 0.2, 0.3)
    returns = torch.tensor([[0.0, 0.5, 0.3]], dtype=torch.float64)
    loss, metrics = ppo_loss(logps, logps.detach(), advantages, values, values.detach(),
                             returns, ones(), vf_coef=0.1)
    value_loss = 0.5 * (0.1 ** 2 + 0.3 ** 2 + 0) / 3
    assert loss.item() == pytest.approx(-(1 - 2 + 0.5) / 3 + 0.1 * value_loss)
    assert metrics["loss/value_avg"].item() == pytest.approx(value_loss)
    assert metrics["policy/clipfrac_avg"].item() == 0 and metrics["policy/approxkl_avg"] == 0
    loss.backward()
    # the policy gradient raises the log-prob of a token with positive advantage, lowers it
    # for a negative one: d loss / d logp_t = -A_t / 3 at ratio 1
    assert logps.grad[0].tolist() == pytest.approx([-1 / 3, 2 / 3, -0.5 / 3])


def test_ppo_policy_clip_stops_the_gradient_past_the_band_only_in_the_advantage_direction():
    old = torch.zeros(1, 4, dtype=torch.float64)
    # ratios 1.5 (A > 0: clipped), 1.5 (A < 0: not), 0.5 (A < 0: clipped), 0.5 (A > 0: not)
    logps = row(math.log(1.5), math.log(1.5), math.log(0.5), math.log(0.5))
    advantages = torch.tensor([[1.0, -1.0, -1.0, 1.0]], dtype=torch.float64)
    zeros = torch.zeros(1, 4, dtype=torch.float64)
    loss, metrics = ppo_loss(logps, old, advantages, zeros, zeros, zeros, ones(T=4),
                             epsilon=0.2)
    # per token max(-A r, -A clip(r)): -1.2, 1.5, 0.8, -0.5
    assert loss.item() == pytest.approx((-1.2 + 1.5 + 0.8 - 0.5) / 4)
    assert metrics["policy/clipfrac_avg"].item() == pytest.approx(0.5)
    loss.backward()
    grad = logps.grad[0]
    assert grad[0] == 0 and grad[2] == 0                      # clipped: no gradient
    assert grad[1].item() == pytest.approx(1.5 / 4)           # d(-A r)/d logp = -A r / 4
    assert grad[3].item() == pytest.approx(-0.5 / 4)


def test_ppo_value_clip_takes_the_larger_error_on_both_sides():
    old = torch.zeros(1, 4, dtype=torch.float64)
    values = row(0.5, 0.5, -0.5, -0.5)
    returns = torch.tensor([[1.0, 0.0, -1.0, 0.0]], dtype=torch.float64)
    zeros = torch.zeros(1, 4, dtype=torch.float64)
    loss, metrics = ppo_loss(zeros, zeros, zeros, values, old, returns, ones(T=4),
                             value_epsilon=0.2, vf_coef=1.0)
    # token 0: V = 0.5 moved past old + 0.2 toward R = 1; unclipped error 0.25, clipped
    # (0.2 - 1)^2 = 0.64 is larger and constant in V: no gradient.
    # token 1: R = 0, unclipped 0.25 > clipped 0.04: the plain error and its gradient.
    # tokens 2 and 3, the mirror below old - 0.2: clipped (-0.2 + 1)^2 = 0.64 wins at R = -1
    # (no gradient); at R = 0 the plain 0.25 does
    assert metrics["loss/value_avg"].item() == pytest.approx(0.5 * (0.64 + 0.25) * 2 / 4)
    assert metrics["val/clipfrac_avg"].item() == pytest.approx(0.5)
    loss.backward()
    assert values.grad[0, 0] == 0 and values.grad[0, 2] == 0
    assert values.grad[0, 1].item() == pytest.approx(0.5 * 2 * 0.5 / 4)
    assert values.grad[0, 3].item() == pytest.approx(0.5 * 2 * -0.5 / 4)


def test_ppo_loss_ignores_positions_outside_the_mask():
    torch.manual_seed(0)
    args = [torch.randn(2, 5, dtype=torch.float64) for _ in range(6)]
    mask = torch.tensor([[1, 1, 1, 0, 0], [0, 1, 1, 1, 1]], dtype=torch.float64)
    loss, _ = ppo_loss(*args, mask)
    changed = [a + 100 * (1 - mask) for a in args]
    assert ppo_loss(*changed, mask)[0].item() == pytest.approx(loss.item())
