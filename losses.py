"""Every training objective of the project as a pure function of tensors.

Shapes: B sequences, T positions, V vocabulary. `mask` is 1.0 on the positions
whose target belongs to the completion (see data/batching.py) and 0.0 elsewhere.
"""

import math
from dataclasses import dataclass
from functools import cached_property

import torch
import torch.nn.functional as F


def token_logps(logits, targets):
    """log p(targets[b, t] | ids[b, :t+1]) for every position: (B, T, V), (B, T) -> (B, T)."""
    B, T, V = logits.shape
    return -F.cross_entropy(logits.reshape(B * T, V).float(), targets.reshape(B * T),
                            reduction="none").view(B, T)


def answer_token_logps(logits, targets, mask, temperature: float = 1.0):
    """log pi(y_t | x, y_<t) of each sampled answer token, the logits divided by the temperature
    the answers were sampled at, so that a ratio pi / pi_old compares the distribution they came
    from: (N, T, V), (N, T), (N, T) -> (N, T), 0 off the mask. The online methods' log-probs."""
    return token_logps(logits.float() / temperature, targets) * mask


def last_token_index(mask):
    """The position of each row's last masked token (an answer's end token): (N, T) -> (N,)."""
    positions = torch.arange(mask.size(1), device=mask.device)
    return (mask * positions).argmax(dim=1)


def sequence_logps(logits, targets, mask, average: bool = False):
    """Sum over masked positions of log p(target), or the per-token mean if average=True.

    logits (B, T, V), targets (B, T), mask (B, T) -> (B,)
    Sum is log pi(y|x) of the whole completion (DPO, GRPO); the mean is the
    length-normalised form (SimPO, IPO by default).
    """
    total = (token_logps(logits, targets) * mask).sum(-1)                 # (B,)
    return total / mask.sum(-1).clamp_min(1) if average else total


sequence_logprobs = sequence_logps       # the name the project's contracts first gave it


@dataclass(frozen=True)
class AnswerLogps:
    """log pi(y|x) of answers: `total` sums over each answer's tokens (DPO, KTO, the KL), `mean`
    is the per-token mean (the length-normalised form SimPO, IPO and ORPO use). Each is (N,)
    for N answers, or (B, 2) for B preference pairs: column 0 the chosen answer, 1 the rejected."""
    total: torch.Tensor
    mean: torch.Tensor

    def __iter__(self):                          # (total, mean): unpacking, concatenation
        return iter((self.total, self.mean))

    def as_pairs(self) -> "AnswerLogps":
        """(2B,) rows, the B chosen answers then the B rejected ones -> (B, 2): a pair is two
        halves."""
        return AnswerLogps(*(t.view(2, -1).T for t in self))

    # Cached: the chosen answers feed both the preference term and the NLL term through one
    # view of the pairs (two views would sum their gradients in another order of rounding).
    @cached_property
    def chosen(self) -> "AnswerLogps":
        return AnswerLogps(self.total[:, 0], self.mean[:, 0])

    @cached_property
    def rejected(self) -> "AnswerLogps":
        return AnswerLogps(self.total[:, 1], self.mean[:, 1])

    def select(self, idx) -> "AnswerLogps":
        """The rows (answers or pairs) at idx."""
        return AnswerLogps(self.total[idx], self.mean[idx])


def answer_logps(logits, targets, mask) -> AnswerLogps:
    """log pi(answer | prompt) of each row, summed and per-token mean: (B, T, V), (B, T), (B, T)
    -> AnswerLogps of (B,) each. mask is 1.0 on the answer's tokens (never all 0: an answer
    holds at least its end token)."""
    total = sequence_logps(logits, targets, mask)                         # (B,)
    return AnswerLogps(total, total / mask.sum(-1))


def sft_loss(logits, targets, mask=None):
    """Next-token cross-entropy, averaged over masked tokens (all tokens if mask is None).

    -(1/|M|) sum_{(b,t) in M} log p(targets[b,t]); pretraining uses no mask,
    SFT masks out the prompt so only the completion is learned.
    """
    nll = -token_logps(logits, targets)                                   # (B, T)
    if mask is None:
        return nll.mean()
    return (nll * mask).sum() / mask.sum().clamp_min(1)


# ------------------------------------------------------------- preference optimisation
# Inputs are log pi(y|x) of each completion: (B,) tensors. h, the log-ratio margin, is
#   h = [log pi(y_w|x) - log pi_ref(y_w|x)] - [log pi(y_l|x) - log pi_ref(y_l|x)].

def dpo_loss(policy_chosen_logps, policy_rejected_logps, ref_chosen_logps,
             ref_rejected_logps, beta: float = 0.1, label_smoothing: float = 0.0):
    """DPO (Rafailov et al. 2023, Eq. 7): -log sigmoid(beta * h), per example.

    The derivation in five steps:
    1. RLHF objective: max_pi E[r(x, y)] - beta KL(pi(.|x) || pi_ref(.|x)).
    2. Its optimum in closed form: pi*(y|x) = pi_ref(y|x) exp(r(x, y) / beta) / Z(x).
    3. Solve for the reward: r(x, y) = beta log(pi*(y|x) / pi_ref(y|x)) + beta log Z(x).
    4. Bradley-Terry: P(y_w > y_l) = sigmoid(r(x, y_w) - r(x, y_l)); Z(x) cancels.
    5. Maximum likelihood over preference pairs with pi in place of pi*: this loss.

    label_smoothing eps > 0 is conservative DPO: the label is flipped with
    probability eps, so the loss is -(1-eps) log sigmoid(beta h) - eps log sigmoid(-beta h).
    Returns (losses, chosen_rewards, rejected_rewards), each (B,); the rewards are
    the implicit reward beta * log(pi / pi_ref) (Eq. 5), detached.
    """
    chosen_logratios = policy_chosen_logps - ref_chosen_logps            # log pi/pi_ref (y_w)
    rejected_logratios = policy_rejected_logps - ref_rejected_logps      # log pi/pi_ref (y_l)
    h = chosen_logratios - rejected_logratios
    losses = (-(1 - label_smoothing) * F.logsigmoid(beta * h)            # Eq. 7
              - label_smoothing * F.logsigmoid(-beta * h))
    return losses, beta * chosen_logratios.detach(), beta * rejected_logratios.detach()


def nll_loss(policy_chosen_logps_mean):
    """The chosen answer's length-normalised NLL, -log pi(y_w|x) / |y_w|, per example: (B,).

    Iterative RPO (Pang et al. 2024, Eq. 1) adds it to DPO with a weight alpha:
        L = L_DPO - alpha * log pi(y_w|x) / |y_w|                        (TRL's rpo_alpha)
    so the chosen answers are held up while DPO pushes the rejected ones down.
    policy_chosen_logps_mean: per-token mean log-probs of the chosen answers, (B,).
    """
    return -policy_chosen_logps_mean


def ipo_loss(policy_chosen_logps, policy_rejected_logps, ref_chosen_logps,
             ref_rejected_logps, beta: float = 0.1):
    """IPO (Azar et al. 2023, Eq. 17): (h - 1/(2 beta))^2, per example.

    A squared loss regresses the margin to 1/(2 beta) (beta is the paper's tau)
    instead of pushing it to infinity, so it holds even when labels are deterministic.
    """
    chosen_logratios = policy_chosen_logps - ref_chosen_logps
    rejected_logratios = policy_rejected_logps - ref_rejected_logps
    h = chosen_logratios - rejected_logratios
    losses = (h - 1 / (2 * beta)) ** 2                                   # Eq. 17
    return losses, beta * chosen_logratios.detach(), beta * rejected_logratios.detach()


def simpo_loss(policy_chosen_logps, policy_rejected_logps, beta: float = 2.0,
               gamma: float = 0.5):
    """SimPO (Meng et al. 2024, Eq. 6): -log sigmoid(beta (c - r) - gamma), per example.

    c and r are per-token *mean* log-probs (the length-normalised reward
    beta/|y| log pi(y|x), Eq. 4); gamma is the target reward margin. No reference model.
    """
    chosen_rewards = beta * policy_chosen_logps                          # Eq. 4
    rejected_rewards = beta * policy_rejected_logps
    losses = -F.logsigmoid(chosen_rewards - rejected_rewards - gamma)    # Eq. 6
    return losses, chosen_rewards.detach(), rejected_rewards.detach()


def orpo_loss(policy_chosen_logps, policy_rejected_logps, beta: float = 0.1):
    """ORPO's odds-ratio term (Hong et al. 2024, Eq. 7), per example: -beta log sigmoid(log OR).

    Inputs are per-token *mean* log-probs c, r (B,), so P = e^c is the answer's
    length-normalised likelihood, and odds(y|x) = P / (1 - P). With log(1 - e^x) computed
    stably (log1mexp), log OR = (c - r) - (log(1 - e^c) - log(1 - e^r)). The whole ORPO
    objective (Eq. 6) is the chosen answer's NLL (nll_loss) plus the mean of these losses
    (beta is the paper's lambda); no reference model. Returns (losses, chosen_rewards,
    rejected_rewards), the rewards beta * mean log pi, detached (as TRL logs them).
    """
    log_odds = orpo_log_odds(policy_chosen_logps, policy_rejected_logps)
    losses = -beta * F.logsigmoid(log_odds)                               # Eq. 7, weighted
    return losses, beta * policy_chosen_logps.detach(), beta * policy_rejected_logps.detach()


def orpo_log_odds(chosen_mean_logps, rejected_mean_logps):
    """log odds(y_w|x) - log odds(y_l|x), odds = P / (1 - P) with log P the mean log-prob: (B,)."""
    return (chosen_mean_logps - rejected_mean_logps) - (
        log1mexp(chosen_mean_logps) - log1mexp(rejected_mean_logps))


def log1mexp(x):
    """log(1 - e^x) for x < 0, without cancellation (Maechler 2012): log(-expm1(x)) near 0,
    log1p(-exp(x)) far from it. x is clamped just below 0, where the odds are infinite."""
    x = x.clamp(max=-1e-7)
    return torch.where(x > -math.log(2), torch.log(-torch.expm1(x)), torch.log1p(-torch.exp(x)))


# ------------------------------------------------------------- KTO
# Unpaired: each answer comes with a label, desirable or not, instead of a rival answer.

def kto_reference_point(policy_logps, ref_logps):
    """KTO's reference point z0 (Ethayarajh et al. 2024, Sec. 4.1): an estimate of
    KL(pi || pi_ref), the mean log-ratio over the batch's *mismatched* (prompt, completion)
    pairs (each completion moved under another row's prompt), so it tracks how far the
    policy moved in general, not on the labelled answers. Detached (no gradient flows
    through z0) and clamped at 0, as the paper and TRL do. (B,), (B,) -> 0-dim."""
    return (policy_logps - ref_logps).mean().detach().clamp(min=0)


def kto_loss(policy_logps, ref_logps, desirable, kl, beta: float = 0.1,
             desirable_weight: float = 1.0, undesirable_weight: float = 1.0):
    """KTO (Ethayarajh et al. 2024, Sec. 4.1, the loss lambda_y - v(x, y)), per example.

    With r = log pi(y|x) - log pi_ref(y|x) (summed log-probs, (B,)) and z0 = kl:
        desirable     w_D (1 - sigmoid(beta (r - z0)))      pushes r above z0
        undesirable   w_U (1 - sigmoid(beta (z0 - r)))      pushes r below z0
    desirable: (B,) bool. Returns (losses, rewards): rewards = beta r, detached.
    """
    logratios = policy_logps - ref_logps                                  # r, (B,)
    losses = torch.where(desirable,
                         desirable_weight * (1 - torch.sigmoid(beta * (logratios - kl))),
                         undesirable_weight * (1 - torch.sigmoid(beta * (kl - logratios))))
    return losses, beta * logratios.detach()


# ------------------------------------------------------------- GRPO
# Per-token inputs are (N, T): N = prompts x group size completions, T = completion positions.

def grpo_advantages(rewards, group_size: int, scale: str = "group", eps: float = 1e-4):
    """Group-relative advantages (Shao et al. 2024, Sec. 4.1.2): (N,) -> (N,).

    A_i = (r_i - mean(group)) / (std(group) + eps), rows i*G .. i*G+G-1 forming a group.
    scale "group" divides by the group's (Bessel-corrected) std, "batch" by the whole
    batch's std, "none" not at all (Dr. GRPO, Liu et al. 2025). A group whose rewards
    are all equal gets zero advantage: it carries no signal.
    """
    if group_size < 2:
        raise ValueError(f"group_size must be at least 2, got {group_size}")
    groups = rewards.view(-1, group_size)                                # (N/G, G)
    centered = groups - groups.mean(dim=1, keepdim=True)
    if scale == "group":
        centered = centered / (groups.std(dim=1, keepdim=True) + eps)
    elif scale == "batch":
        centered = centered / (rewards.std() + eps)
    elif scale != "none":
        raise ValueError(f"scale must be group, batch or none, got {scale!r}")
    return centered.reshape(-1)


def rloo_advantages(rewards, group_size: int):
    """REINFORCE leave-one-out (Kool et al. 2019; RLOO, Ahmadian et al. 2024): (N,) -> (N,).

    A_i = r_i - mean of the other G - 1 rewards of its group = G / (G - 1) (r_i - mean(group)),
    no std scaling: each answer's baseline is its group without it, so it is unbiased.
    """
    if group_size < 2:
        raise ValueError(f"group_size must be at least 2, got {group_size}")
    groups = rewards.view(-1, group_size)                                # (N/G, G)
    others = (groups.sum(dim=1, keepdim=True) - groups) / (group_size - 1)
    return (groups - others).reshape(-1)


def best_of_group_advantages(rewards, group_size: int, generator=None):
    """Online rejection sampling (RAFT, Dong et al. 2023): (N,) -> (N,), 1.0 for the best
    answer of each group (ties broken at random with `generator`), 0.0 for the others. With
    one update per batch, GRPO's loss on these advantages is the NLL of each group's best."""
    groups = rewards.view(-1, group_size)                                # (N/G, G)
    is_best = groups == groups.max(dim=1, keepdim=True).values
    draw = torch.rand(groups.shape, generator=generator).to(rewards.device)
    pick = torch.where(is_best, draw, -1.0).argmax(dim=1)                # a random best
    return torch.zeros_like(groups).scatter_(1, pick[:, None], 1.0).reshape(-1)


def grpo_loss(logps, old_logps, ref_logps, advantages, mask, epsilon: float = 0.2,
              beta: float = 0.04, loss_type: str = "grpo", max_completion_length: int = None,
              kl_estimator: str = "k3"):
    """The GRPO objective (Shao et al. 2024, Eq. 3), negated to be minimised.

    Per token: -min(ratio * A, clip(ratio, 1-eps, 1+eps) * A) + beta * KL, with
    ratio = pi / pi_old and KL estimated on the sampled token (Schulman's estimators):
        "k3"  pi_ref/pi - log(pi_ref/pi) - 1   (Eq. 4, the paper's and TRL's)
        "k2"  (log pi - log pi_ref)^2 / 2
        "k1"  log pi - log pi_ref
    Which KL the term's gradient follows, on the policy's own samples (Tang and Munos 2025;
    tests/test_kl_bandit.py checks each): for a one-token answer, k3's expected gradient is
    that of KL(pi_ref || pi), the reverse of the KL that pi* = pi_ref exp(r / beta) / Z
    regularises, and k2's that of KL(pi || pi_ref); for answers of several tokens each is
    only that, token by token, at prefixes drawn from pi, missing the terms through later
    tokens: a partial gradient, the gradient of no objective. k1's is zero (E_pi[grad log pi]
    = 0). The whole gradient of beta KL(pi || pi_ref) comes from k1 summed over the answer
    and put in the reward (kl_penalised_rewards).
    logps, old_logps, ref_logps: (N, T) per-token log-probs of the sampled tokens;
    advantages (N,); mask (N, T) 1.0 on completion tokens.
    loss_type aggregates the per-token terms:
        "grpo"     mean over each sequence's tokens, then over sequences (the paper)
        "dr_grpo"  token sum / (N * max_completion_length), a constant (Dr. GRPO, Liu et al.
                   2025: no length bias; TRL divides by max_completion_length), never the
                   batch's padded width, which changes from batch to batch
        "dapo"     token sum / number of tokens (DAPO: token-level mean)
    ref_logps=None or beta=0 drops the KL term. Returns (loss, metrics): the metrics
    are detached 0-dim tensors (clip_ratio, kl; kl is 0.0 without the KL term), read
    when the caller logs them.
    """
    ratio = torch.exp(logps - old_logps)                                 # (N, T)
    adv = advantages[:, None]                                            # (N, 1)
    clipped = torch.clamp(ratio, 1 - epsilon, 1 + epsilon)
    per_token = -torch.min(ratio * adv, clipped * adv)                   # Eq. 3, clipped surrogate
    use_kl = ref_logps is not None and beta != 0
    if use_kl:
        kl = kl_estimate(logps, ref_logps, kl_estimator)
        per_token = per_token + beta * kl
    mask = mask.to(per_token.dtype)
    if loss_type == "grpo":
        loss = ((per_token * mask).sum(1) / mask.sum(1).clamp_min(1)).mean()
    elif loss_type == "dr_grpo":
        if max_completion_length is None:
            raise ValueError("loss_type dr_grpo divides by max_completion_length: pass it")
        loss = (per_token * mask).sum() / (mask.size(0) * max_completion_length)
    elif loss_type == "dapo":
        loss = (per_token * mask).sum() / mask.sum().clamp_min(1)
    else:
        raise ValueError(f"loss_type must be grpo, dr_grpo or dapo, got {loss_type!r}")
    n_tokens = mask.sum().clamp_min(1)
    is_clipped = ((ratio < 1 - epsilon) & (adv < 0)) | ((ratio > 1 + epsilon) & (adv > 0))
    metrics = {"clip_ratio": (is_clipped * mask).sum() / n_tokens,       # detached tensors,
               "kl": (kl.detach() * mask).sum() / n_tokens if use_kl else 0.0}   # no sync
    return loss, metrics


def kl_estimate(logps, ref_logps, estimator: str = "k3"):
    """Per-token estimate of KL(pi || pi_ref) on the sampled tokens (Schulman 2020): k1 =
    log(pi/pi_ref) and k3 = pi_ref/pi - log(pi_ref/pi) - 1 are unbiased estimates of its
    value, k2 = log(pi/pi_ref)^2 / 2 a biased one. (N, T), (N, T) -> (N, T). What each one's
    gradient follows in a loss is another matter: grpo_loss's docstring."""
    log_ratio = logps - ref_logps                                        # log pi / pi_ref
    if estimator == "k1":
        return log_ratio
    if estimator == "k2":
        return log_ratio ** 2 / 2
    if estimator == "k3":
        log_ref_ratio = (-log_ratio).clamp(max=20.0)                     # keep exp() finite
        return torch.exp(log_ref_ratio) - log_ref_ratio - 1              # Eq. 4
    raise ValueError(f"kl_estimator must be k1, k2 or k3, got {estimator!r}")


@torch.no_grad()
def kl_penalised_rewards(rewards, logps, ref_logps, mask, beta: float):
    """The KL where PPO and RLOO put it, in the reward (Ziegler et al. 2019; Ahmadian et al.
    2024): r - beta * sum over the answer's tokens of log pi(y_t) - log pi_ref(y_t), the k1
    estimate of KL(pi || pi_ref) for the whole answer, with no gradient. Fed to a
    policy-gradient loss, its expected gradient is that of E[r] - beta KL(pi || pi_ref), the
    objective pi* = pi_ref exp(r / beta) / Z maximises. rewards (N,); logps, ref_logps, mask
    (N, T), the sampling policy's log-probs -> (N,)."""
    return rewards - beta * ((logps - ref_logps) * mask).sum(1)


def rloo_loss(logps, old_logps, advantages, mask, epsilon: float = 0.2):
    """RLOO's loss (Ahmadian et al. 2024, Sec. 3.2; TRL's RLOOTrainer): the whole answer is one
    action. Per answer, ratio = pi(y|x) / pi_old(y|x) = exp(sum over its tokens of log pi -
    log pi_old), and -min(ratio * A, clip(ratio, 1-eps, 1+eps) * A); the mean over answers.
    A: rloo_advantages of the KL-penalised reward (kl_penalised_rewards), so the KL is in the
    reward and there is no KL term here. With one update per batch the ratio is 1 and this is
    REINFORCE with a leave-one-out baseline: -mean_i A_i log pi(y_i|x) in gradient.
    logps, old_logps, mask (N, T); advantages (N,). Returns (loss, metrics): clip_ratio, the
    share of answers clipped, detached."""
    ratio = torch.exp(((logps - old_logps) * mask).sum(1))               # (N,) per answer
    clipped = torch.clamp(ratio, 1 - epsilon, 1 + epsilon)
    loss = -torch.min(ratio * advantages, clipped * advantages).mean()
    is_clipped = ((ratio < 1 - epsilon) & (advantages < 0)) | ((ratio > 1 + epsilon) &
                                                              (advantages > 0))
    return loss, {"clip_ratio": is_clipped.float().mean()}


# ------------------------------------------------------------- RLHF: reward model and PPO
# Per-token inputs are (N, T): N completions, T positions of the batch (data/batching.py);
# mask is 1.0 on the positions whose target is a completion token, so position t holds the
# log-prob of completion token t and the critic's value of the text before it.

def reward_model_loss(chosen_rewards, rejected_rewards, margin=None):
    """Bradley-Terry reward model loss (InstructGPT, Ouyang et al. 2022, Eq. 1), per pair:
    -log sigmoid(r(x, y_w) - r(x, y_l) [- margin]). Inputs (B,) scalar scores; margin (B,)
    or None (Llama 2's margin term: the pair must be won by at least this much)."""
    diff = chosen_rewards - rejected_rewards
    if margin is not None:
        diff = diff - margin
    return -F.logsigmoid(diff)                                            # Eq. 1


def reward_centering(chosen_rewards, rejected_rewards):
    """(r(x, y_w) + r(x, y_l))^2 per pair, (B,): added with a small weight to the reward model's
    loss, it keeps the scores near 0, which the Bradley-Terry loss alone leaves free
    (Eisenstein et al. 2023, Sec. 3; TRL's center_rewards_coefficient)."""
    return (chosen_rewards + rejected_rewards) ** 2


def masked_mean(values, mask):
    """Mean of values over the positions where mask is 1: (N, T), (N, T) -> 0-dim."""
    return (values * mask).sum() / mask.sum().clamp_min(1)


def whiten(values, mask, shift_mean: bool = True, eps: float = 1e-8):
    """(values - mean) / std over the masked positions, zero elsewhere: (N, T) -> (N, T).
    The variance is the unbiased one, as TRL's masked_whiten; shift_mean=False keeps the
    mean (used to whiten rewards without moving them)."""
    mean = masked_mean(values, mask)
    var = masked_mean((values - mean) ** 2, mask) * mask.sum() / (mask.sum() - 1).clamp_min(1)
    out = (values - mean) * torch.rsqrt(var + eps)
    if not shift_mean:
        out = out + mean
    return out * mask


def ppo_rewards(scores, logps, ref_logps, mask, kl_coef: float = 0.05):
    """Per-token rewards of RLHF (Ziegler et al. 2019; InstructGPT Eq. 2): (N, T).

    Each completion token t is rewarded -kl_coef (log pi(y_t) - log pi_ref(y_t)), the KL
    penalty estimated on the sampled token, and the last one also gets the sequence's
    score r(x, y) from the reward model. scores (N,); logps, ref_logps, mask (N, T).
    """
    rewards = -kl_coef * (logps - ref_logps) * mask                       # the KL penalty
    last = last_token_index(mask)                                         # (N,) the answer's end
    return rewards.index_put((torch.arange(mask.size(0), device=mask.device), last),
                             scores.to(rewards.dtype), accumulate=True)


def gae(rewards, values, mask, gamma: float = 1.0, lam: float = 0.95):
    """Generalised advantage estimation (Schulman et al. 2016, Eq. 16), right to left:
        delta_t = r_t + gamma V_{t+1} - V_t
        A_t     = delta_t + gamma lam A_{t+1}
    rewards, values, mask (N, T). Outside the mask rewards and values count as 0, so the
    value after a completion's last token is 0 (the episode ends there). Returns
    (advantages, returns), each (N, T) and zero outside the mask; returns = A + V are the
    critic's targets. At gamma = lam = 1 the advantage is the return-to-go minus V.
    """
    rewards, values = rewards * mask, values * mask
    advantages = torch.zeros_like(rewards)
    next_value = next_advantage = torch.zeros_like(rewards[:, 0])           # (N,)
    for t in reversed(range(rewards.size(1))):
        delta = rewards[:, t] + gamma * next_value - values[:, t]
        next_advantage = delta + gamma * lam * next_advantage
        advantages[:, t] = next_advantage
        next_value = values[:, t]
    advantages = advantages * mask
    return advantages, (advantages + values) * mask


def ppo_loss(logps, old_logps, advantages, values, old_values, returns, mask,
             epsilon: float = 0.2, value_epsilon: float = 0.2, vf_coef: float = 0.1):
    """PPO's clipped objective with a clipped value loss (Schulman et al. 2017, Eq. 7 and 9;
    the value clip of the N-details paper), token means over the mask:
        policy  max(-A ratio, -A clip(ratio, 1 - eps, 1 + eps)),   ratio = pi / pi_old
        value   0.5 max((V - R)^2, (clip(V, V_old - eps_v, V_old + eps_v) - R)^2)
        loss  = policy + vf_coef * value
    All inputs (N, T): log-probs of the sampled tokens now and at sampling time, the
    (whitened) advantages, the critic's values now and at sampling time, the returns.
    Returns (loss, metrics), the metrics detached 0-dim tensors named as TRL logs them.
    """
    logratio = logps - old_logps
    ratio = torch.exp(logratio)
    pg_losses = -advantages * ratio
    pg_clipped = -advantages * torch.clamp(ratio, 1 - epsilon, 1 + epsilon)
    policy_loss = masked_mean(torch.max(pg_losses, pg_clipped), mask)     # Eq. 7, negated
    values_clipped = old_values + torch.clamp(values - old_values, -value_epsilon, value_epsilon)
    vf_losses = (values - returns) ** 2
    vf_clipped = (values_clipped - returns) ** 2
    value_loss = 0.5 * masked_mean(torch.max(vf_losses, vf_clipped), mask)
    loss = policy_loss + vf_coef * value_loss                              # Eq. 9, no entropy term
    metrics = {"policy/approxkl_avg": 0.5 * masked_mean(logratio.detach() ** 2, mask),
               "policy/clipfrac_avg": masked_mean((pg_clipped > pg_losses).float(), mask),
               "loss/policy_avg": policy_loss.detach(),
               "loss/value_avg": value_loss.detach(),
               "val/clipfrac_avg": masked_mean((vf_clipped > vf_losses).float(), mask)}
    return loss, metrics
