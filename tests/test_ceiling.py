"""The frontier's ceiling (experiments/ceiling.py) against values computed by hand on a two-
and a three-valued distribution, and best-of-N never above the ceiling of the same samples."""
import math

import numpy as np
import pytest

from experiments import ceiling

# One prompt, 4 answers: reward 0 three times, 1 once (p = 3/4, 1/4).
TWO = np.array([[0.0, 0.0, 1.0, 0.0]])
# One prompt, 4 answers: rewards -1, 0, 0, 1 (p = 1/4, 1/2, 1/4).
THREE = np.array([[0.0, -1.0, 1.0, 0.0]])


def test_the_optimum_of_a_two_valued_reward_by_hand():
    # beta = 1: q ∝ (3/4 e^0, 1/4 e^1)
    w0, w1 = 0.75, 0.25 * math.e
    q0, q1 = w0 / (w0 + w1), w1 / (w0 + w1)
    reward, kl = ceiling.optimum(TWO, TWO, 1.0)
    assert reward == pytest.approx(q1)
    assert kl == pytest.approx(q0 * math.log(q0 / 0.75) + q1 * math.log(q1 / 0.25))
    # beta -> infinity: pi_ref itself; beta -> 0: all on the best value, KL = log(1 / p_best)
    assert ceiling.optimum(TWO, TWO, 1e4) == pytest.approx((0.25, 0.0), abs=1e-4)
    assert ceiling.optimum(TWO, TWO, 1e-3) == pytest.approx((1.0, math.log(4)))


def test_the_optimum_of_a_three_valued_reward_by_hand():
    # beta = 0.5: q ∝ (1/4 e^-2, 1/2 e^0, 1/4 e^2)
    w = np.array([0.25 * math.exp(-2), 0.5, 0.25 * math.exp(2)])
    q = w / w.sum()
    reward, kl = ceiling.optimum(THREE, THREE, 0.5)
    assert reward == pytest.approx(-q[0] + q[2])
    assert kl == pytest.approx(sum(qj * math.log(qj / pj) for qj, pj in zip(q, (.25, .5, .25))))


def test_the_optimum_value_and_the_regret_by_hand():
    # J*(beta) = beta log E_ref[exp(r / beta)]: at beta = 1 on TWO, log(3/4 + e/4), which is
    # E_q[r] - KL(q || p) at the optimum q, and more than any other policy's E[r] - KL
    assert ceiling.value(TWO, 1.0) == pytest.approx(math.log(0.75 + 0.25 * math.e))
    reward, kl = ceiling.optimum(TWO, TWO, 1.0)
    assert ceiling.value(TWO, 1.0) == pytest.approx(reward - kl)
    assert ceiling.regret(TWO, 1.0, reward, kl) == pytest.approx(0.0, abs=1e-12)
    for q1 in (0.1, 0.25, 0.5, 0.9, 1.0):          # pi(1) = q1: E[r] = q1, KL to (3/4, 1/4)
        other_kl = sum(q * math.log(q / p) for q, p in ((1 - q1, 0.75), (q1, 0.25)) if q > 0)
        assert ceiling.regret(TWO, 1.0, q1, other_kl) > 0
    # the regret is at least the reward gap at the run's KL; equal on the ceiling's tangent
    # point only: a run at pi*_0.5's KL but under its reward loses that reward in both
    r5, kl5 = ceiling.optimum(THREE, THREE, 0.5)
    assert ceiling.regret(THREE, 0.5, r5 - 0.1, kl5) == pytest.approx(0.1)
    assert ceiling.regret(THREE, 0.5, r5, kl5 + 0.2) > ceiling.reward_at(THREE, kl5 + 0.2) - r5


def test_exact_best_of_n_by_hand_with_ties():
    # two values: the best of 2 is 1 unless both draws are 0: q = (9/16, 7/16)
    reward, kl = ceiling.best_of(TWO, 2)
    assert reward == pytest.approx(7 / 16)
    assert kl == pytest.approx(9 / 16 * math.log(0.75) + 7 / 16 * math.log(7 / 4))
    # three values, N = 3: F = (1/4, 3/4, 1); q = F^3 - F_prev^3 = (1/64, 26/64, 37/64)
    reward, kl = ceiling.best_of(THREE, 3)
    q, p = np.array([1, 26, 37]) / 64, np.array([0.25, 0.5, 0.25])
    assert reward == pytest.approx(-q[0] + q[2])
    assert kl == pytest.approx(float((q * np.log(q / p)).sum()))
    assert ceiling.best_of(THREE, 1) == pytest.approx((0.0, 0.0))       # pi_ref itself
    # with ties the KL is below the tie-free bound log N - (N - 1)/N
    assert kl < ceiling.best_of_n_bound(3)


def test_best_of_n_never_sits_above_the_ceiling_of_the_same_samples():
    rng = np.random.default_rng(0)
    for _ in range(5):                   # 20 prompts, 64 answers, rewards of a few values
        rewards = rng.choice([-0.33, 0.0, 0.5, 0.77, 0.97, 1.0], size=(20, 64),
                             p=[.1, .15, .1, .15, .2, .3])
        for n in (2, 4, 8, 16):
            reward, kl = ceiling.best_of(rewards, n)
            assert reward <= ceiling.reward_at(rewards, kl) + 1e-9


def test_reward_at_and_kl_needed_invert_each_other():
    rng = np.random.default_rng(1)
    rewards = rng.choice([0.0, 0.5, 1.0], size=(10, 32))
    for beta in (1.0, 0.3, 0.1):
        reward, kl = ceiling.optimum(rewards, rewards, beta)
        assert ceiling.reward_at(rewards, kl) == pytest.approx(reward, abs=1e-6)
        assert ceiling.kl_needed(rewards, reward) == pytest.approx(kl, abs=1e-5)
    assert ceiling.kl_needed(rewards, rewards.mean() - 0.1) == 0.0
    assert math.isnan(ceiling.kl_needed(rewards, 1.5))
    top = ceiling.optimum(rewards, rewards, 1e-4)[0]
    assert ceiling.reward_at(rewards, 100.0) == pytest.approx(top)


def test_the_curve_rises_from_the_sft_model_to_the_best_reachable_reward():
    rng = np.random.default_rng(2)
    rewards = rng.choice([0.0, 0.5, 1.0], size=(10, 32))
    points = ceiling.curve(rewards)
    assert len(points) >= 12
    kls, gains = [p["kl"] for p in points], [p["reward"] for p in points]
    assert all(a <= b for a, b in zip(kls, kls[1:]))              # to its reach, then flat
    assert all(a <= b for a, b in zip(gains, gains[1:])) and gains[0] < gains[-1]
    assert gains[0] == pytest.approx(rewards.mean(), abs=0.01)
    assert gains[-1] == pytest.approx(rewards.max(axis=1).mean(), abs=1e-3)


def test_best_of_n_by_a_proxy_by_hand():
    # one prompt, 4 answers: proxy 0, 1, 1, 2 (the top one wrong: gold 0), gold 1, 0, 1, 0
    proxy, gold = np.array([[0.0, 1.0, 1.0, 2.0]]), np.array([[1.0, 0.0, 1.0, 0.0]])
    # n = 2: the best proxy value is 2 with prob 1 - (3/4)^2 = 7/16, 1 with (3/4)^2 - (1/4)^2
    # = 8/16 (then either answer of proxy 1: gold 1/2 on average), 0 with 1/16
    q = np.array([1 / 16, 8 / 16, 7 / 16])
    g, kl = ceiling.best_of_by(proxy, gold, 2)
    assert g == pytest.approx(q @ [1.0, 0.5, 0.0])
    assert kl == pytest.approx(float((q * np.log(q / np.array([0.25, 0.5, 0.25]))).sum()))
    assert ceiling.best_of_by(proxy, proxy, 2)[0] == pytest.approx(q @ [0.0, 1.0, 2.0])
    # ranked by the gold itself it is best_of; n = 1 is pi_ref, KL 0
    rng = np.random.default_rng(0)
    rewards = rng.choice([0.0, 0.5, 0.9, 1.0], size=(5, 16))
    for n in (1, 3, 8):
        assert ceiling.best_of_by(rewards, rewards, n) == pytest.approx(ceiling.best_of(rewards, n))
    assert ceiling.best_of_by(proxy, gold, 1) == pytest.approx((0.5, 0.0))


@pytest.mark.parametrize("kind,shape", [("bon", lambda d: d * d), ("rl", lambda d: d * np.log(d))])
def test_fit_gao_recovers_its_own_form(kind, shape):
    d = np.linspace(0.0, 3.0, 13)
    safe = np.where(d > 0, d, 1.0)
    r = 0.8 * d - 0.3 * np.where(d > 0, shape(safe), 0.0)
    assert ceiling.fit_gao(d, r, kind) == pytest.approx((0.8, 0.3))
    rising = 0.5 * d                                           # never turns: beta 0, no peak
    assert ceiling.fit_gao(d, rising, kind)[1] == pytest.approx(0.0, abs=1e-12)
    with pytest.raises(ValueError, match="kind"):
        ceiling.fit_gao(d, r, "ppo")
