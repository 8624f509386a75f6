"""The frontier's ceiling: the KL-regularised optimum pi*_beta and exact best-of-N, computed
from M answers per held-out prompt sampled from the SFT model (pi_ref). NumPy only.

The derivation every DPO reader has open says the optimum of max E[r] - beta KL(pi || pi_ref)
is pi*(y|x) = pi_ref(y|x) exp(r(x, y) / beta) / Z(x) (Rafailov et al. 2023, Eq. 4). On one
prompt, with M answers y_i drawn from pi_ref, each of weight 1/M, the optimum reweights them:
    q_i = exp(s_i / beta) / sum_k exp(s_k / beta)     (s: the reward pi* is the optimum of)
    R(beta) = sum_i q_i r_i,      KL(beta) = KL(pi* || pi_ref) = sum_i q_i log(q_i M)
With s = r, the true reward, answers of one value share one weight: pi* puts q_j proportional
to p_j exp(v_j / beta) on each distinct value v_j (p_j: its share of the M answers) and keeps
pi_ref's own mix within it, as the reward cannot tell those answers apart. Averaged over the
prompts with one beta for all, beta from large to small traces the ceiling: the most true
reward any policy can reach for a mean KL, from the SFT model's point (beta -> infinity) to
the best reachable reward. No policy can sit above it, up to the estimate's error (a
bootstrap over prompts gives its spread).
Best-of-N with ties broken at random picks value j with probability F_j^N - F_{j-1}^N, F the
cumulative share of the values in increasing order (Beirami et al. 2024): its reward and KL
come from the same samples; log N - (N - 1)/N is the bound that holds without ties.
"""

import math

import numpy as np

BETAS = (100.0, 10.0, 3.0, 1.0, 0.5, 0.3, 0.2, 0.15, 0.1, 0.07, 0.05, 0.03, 0.02, 0.01, 0.005,
         0.002)


def optimum(scores: np.ndarray, rewards: np.ndarray, beta: float) -> tuple[float, float]:
    """(mean true reward, mean KL) of pi ∝ pi_ref exp(score / beta) over the prompts' samples.
    scores, rewards: (prompts, M), one row per prompt, the M samples of pi_ref."""
    logq = scores / beta
    logq = logq - logq.max(axis=1, keepdims=True)
    logq = logq - np.log(np.exp(logq).sum(axis=1, keepdims=True))       # log q_i, each row
    q = np.exp(logq)
    M = scores.shape[1]
    return float((q * rewards).sum(1).mean()), float((q * (logq + math.log(M))).sum(1).mean())


def values(scores: np.ndarray, beta: float) -> np.ndarray:
    """J*(beta) on each prompt, max over pi of E_pi[s] - beta KL(pi || pi_ref) = beta log (1/M)
    sum_i exp(s_i / beta): the log-partition of pi* (Rafailov et al. 2023, Eq. 4), its value
    at the optimum. scores: (prompts, M), the samples of pi_ref -> (prompts,). (From M
    samples it is biased low, most at small beta, where it nears the best of M.)"""
    top = scores.max(axis=1, keepdims=True)
    return top[:, 0] + beta * np.log(np.exp((scores - top) / beta).mean(1))


def value(scores: np.ndarray, beta: float) -> float:
    """J*(beta), the mean over the prompts of values()."""
    return float(values(scores, beta).mean())


def regret(scores: np.ndarray, beta: float, reward: float, kl: float) -> float:
    """J*(beta) - (S - beta KL): how far a policy with mean score S at mean KL `kl` falls short
    of its objective's optimum, in score units, 0 at pi*_beta. Where the score is the true
    reward, it is never below the reward gap at that KL, R*(KL) - R (the line of slope beta
    through pi*_beta lies on or above the concave ceiling, touching it at pi*_beta)."""
    return value(scores, beta) - (reward - beta * kl)


def curve(rewards: np.ndarray, betas=BETAS) -> list[dict]:
    """The ceiling: [{"beta", "kl", "reward"}] for each beta, loose to tight KL budget."""
    return [dict(zip(("beta", "reward", "kl"), (b, *optimum(rewards, rewards, b))))
            for b in betas]


def bootstrap(rewards: np.ndarray, betas=BETAS, draws: int = 200, seed: int = 0) -> list[dict]:
    """The spread of the ceiling's estimate: for each beta, the std of its reward and KL over
    `draws` resamplings of the prompts (with replacement)."""
    rng = np.random.default_rng(seed)
    runs = [curve(rewards[rng.integers(0, len(rewards), len(rewards))], betas)
            for _ in range(draws)]
    return [{"beta": b, "reward_std": float(np.std([r[i]["reward"] for r in runs], ddof=1)),
             "kl_std": float(np.std([r[i]["kl"] for r in runs], ddof=1))}
            for i, b in enumerate(betas)]


def best_of(rewards: np.ndarray, n: int) -> tuple[float, float]:
    """(mean reward, mean KL) of best-of-n from the prompts' samples, ties broken at random:
    exact for the empirical distribution of the values (rewards: (prompts, M)); best_of_by
    with the reward ranking its own samples."""
    return best_of_by(rewards, rewards, n)


def best_of_by(proxy: np.ndarray, gold: np.ndarray, n: int, per_prompt: bool = False):
    """Best-of-n ranked by a proxy (a reward model's scores), judged by the gold (the true
    reward), exact: (mean gold, mean KL to pi_ref) over the prompts, of the answer whose
    proxy score is highest among n drawn with replacement, ties among them broken uniformly
    at random. The best proxy value is v_j with probability F_j^n - F_{j-1}^n (F over the
    proxy's distinct values in increasing order), and among the answers with that value each
    is as likely, so the expected gold is the mean of theirs, and the KL sums over the
    values. proxy, gold: (prompts, M). best_of_by(proxy, proxy, n)[0] is the proxy's own
    value, and best_of_by(r, r, n) is best_of(r, n). (Exact for the M stored samples: at n
    near M, drawn with replacement, they hold fewer distinct answers than a fresh best-of-n
    would see.) per_prompt: the two as (prompts,) arrays instead of their means."""
    golds, kls = np.zeros(len(proxy)), np.zeros(len(proxy))
    for i, (row, g) in enumerate(zip(proxy, gold)):
        values, which, counts = np.unique(row, return_inverse=True, return_counts=True)
        p = counts / counts.sum()
        F = np.cumsum(p)
        q = F ** n - np.concatenate([[0.0], F[:-1]]) ** n               # P(the best is v_j)
        gold_of = np.bincount(which, weights=g) / counts                 # mean gold at v_j
        kept = q > 0
        golds[i], kls[i] = (q * gold_of).sum(), (q[kept] * np.log(q[kept] / p[kept])).sum()
    return (golds, kls) if per_prompt else (float(golds.mean()), float(kls.mean()))


def fit_gao(d, r, kind: str) -> tuple[float, float]:
    """Gao et al. (2022)'s form of the gold reward's gain over pi_ref against d = sqrt(KL),
    fitted by least squares (through 0 at d = 0): best-of-N ("bon") r = d (alpha - beta d),
    RL ("rl") r = d (alpha - beta log d). Returns (alpha, beta); beta <= 0 has no peak."""
    d, r = np.asarray(d, dtype=float), np.asarray(r, dtype=float)
    if kind == "bon":
        second = d * d
    elif kind == "rl":
        second = d * np.log(np.where(d > 0, d, 1.0))                     # d log d -> 0 at 0
    else:
        raise ValueError(f"kind must be bon or rl, got {kind!r}")
    (alpha, beta), *_ = np.linalg.lstsq(np.stack([d, -second], 1), r, rcond=None)
    return float(alpha), float(beta)


def best_of_n_bound(n: int) -> float:
    """KL(best-of-n || pi_ref) = log n - (n - 1) / n nats for a continuous reward (no two
    answers ever tie; Stiennon et al. 2020): an upper bound otherwise, with ties or with
    finitely many answers (over 64 distinct ones, the exact KL at n = 64 is 3.134, not 3.175)."""
    return math.log(n) - (n - 1) / n


def _solve(rewards: np.ndarray, target: float, index: int) -> float:
    """The beta at which the optimum's reward (index 0) or KL (index 1) equals target, by
    bisection on log beta (both fall as beta grows); None past the optimum's reach."""
    lo, hi = math.log(1e-4), math.log(1e4)                 # beta from 1e-4 to 1e4
    if target >= optimum(rewards, rewards, math.exp(lo))[index]:
        return None
    for _ in range(60):
        mid = (lo + hi) / 2
        if optimum(rewards, rewards, math.exp(mid))[index] > target:
            lo = mid
        else:
            hi = mid
    return math.exp((lo + hi) / 2)


def reward_at(rewards: np.ndarray, kl: float) -> float:
    """R*(KL): the most true reward any policy reaches at a mean KL of `kl` (the best
    reachable reward for a KL past the optimum's reach)."""
    beta = _solve(rewards, max(kl, 0.0), 1)
    return optimum(rewards, rewards, beta if beta is not None else 1e-4)[0]


def kl_needed(rewards: np.ndarray, reward: float) -> float:
    """KL*(R): the least mean KL any policy needs for a true reward of `reward` (0 at or below
    the SFT model's; NaN above the best reachable)."""
    if reward <= rewards.mean():
        return 0.0
    beta = _solve(rewards, reward, 0)
    return math.nan if beta is None else optimum(rewards, rewards, beta)[1]
