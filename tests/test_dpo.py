import random

import torch

from data.batching import chat_batch, encode_rows, in_batches
from data.pairs import label, offpolicy_pairs, pairs_from_samples
from data.tokenizer import get_tokenizer
from data.world import eval_prompts, reward
from losses import AnswerLogps, dpo_loss, sequence_logps
from model import GPT, GPTConfig
from train_dpo import DPOConfig, logps_of, preference_loss

PAIRS = offpolicy_pairs(eval_prompts(12), seed=0)


def small_model(seed=0):
    torch.manual_seed(seed)
    return GPT(GPTConfig(vocab_size=get_tokenizer().n_vocab, block_size=64, n_layer=1,
                         n_head=2, n_embd=32))


def test_offpolicy_pairs_prefer_the_higher_reward():
    assert PAIRS
    for r in PAIRS:
        assert reward(r["prompt"], r["chosen"]) > reward(r["prompt"], r["rejected"])


def test_bradley_terry_labels_follow_the_reward_gap():
    rng = random.Random(0)
    p, good, bad = "What is 2 + 3?", "The answer is 5.", "Not sure, maybe 6."
    wins = sum(label(rng, p, good, bad, label_temperature=0.5)[0] == good for _ in range(2000))
    assert abs(wins / 2000 - 1 / (1 + torch.exp(torch.tensor(-1 / 0.5)).item())) < 0.03
    assert label(rng, p, good, good) is None                             # ties dropped


def test_pairs_from_samples_take_each_prompts_best_against_its_worst():
    prompts = ["What is 2 + 3?", "What is 4 + 4?"]
    answers = ["Not sure, maybe 6.", "It is 5.", "Ugh, obviously it is 5.",       # prompt 0
               "It is 8.", "It is 8.", "It is 8."]                                # all tie
    assert pairs_from_samples(prompts, answers, seed=0) == [
        {"prompt": prompts[0], "chosen": "It is 5.", "rejected": "Not sure, maybe 6."}]


def test_a_length_biased_labeller_prefers_the_chatty_right_answer():
    p, concise = "What is 2 + 3?", "It is 5."
    chatty = ("Great question! Let me think about this one carefully, step by step, because "
              "it is worth getting right. After thinking it over, the answer is 5.")
    assert reward(p, concise) > reward(p, chatty)                      # the true reward: concise
    assert label(random.Random(0), p, concise, chatty) == (concise, chatty)
    assert label(random.Random(0), p, concise, chatty, length_bonus=0.03) == (chatty, concise)


def test_concatenated_forward_equals_separate_forwards():
    model, device = small_model().eval(), torch.device("cpu")
    batch = encode_rows(PAIRS, 64, "test")
    logps = logps_of(model, batch, device)                               # (B, 2)
    assert logps.total.shape == logps.mean.shape == (len(batch), 2)
    for k, (p, c, r) in enumerate(batch):
        for ids, half in ((c, logps.chosen), (r, logps.rejected)):
            inputs, targets, mask = chat_batch([p], [ids])
            alone = sequence_logps(model(inputs), targets, mask)
            assert torch.allclose(alone[0], half.total[k], atol=1e-4)
            assert torch.allclose(alone[0] / len(ids), half.mean[k], atol=1e-5)


def test_precomputed_and_live_reference_give_the_same_loss():
    ref, policy, device = small_model(0).eval(), small_model(1).eval(), torch.device("cpu")
    batch = encode_rows(PAIRS, 64, "test")
    with torch.no_grad():
        precomputed = in_batches(lambda b: logps_of(ref, b, device), batch, batch_size=3)
    idx = torch.tensor([4, 0, 2])
    sub = [batch[i] for i in idx.tolist()]
    with torch.no_grad():
        live = logps_of(ref, sub, device)
        policy_out = logps_of(policy, sub, device)
    for loss in ("dpo", "ipo", "simpo"):
        cfg = DPOConfig(loss=loss, beta=0.1)
        a = preference_loss(cfg, policy_out, precomputed.select(idx))[0]
        b = preference_loss(cfg, policy_out, live)[0]
        assert torch.allclose(a, b, atol=1e-5)


def test_policy_equal_to_reference_gives_ln2():
    model, device = small_model().eval(), torch.device("cpu")
    with torch.no_grad():
        out = logps_of(model, encode_rows(PAIRS, 64, "test"), device)
    c, r = out.chosen.total, out.rejected.total
    losses, _, _ = dpo_loss(c, r, c, r)
    assert torch.allclose(losses, torch.full_like(losses, 0.6931472), atol=1e-6)


def random_pair_logps(g):
    """Random log-probs of 4 pairs, (4, 2): sums, and means over 5 (chosen) and 7 tokens."""
    total = -10 * torch.rand(4, 2, generator=g)
    return AnswerLogps(total, total / torch.tensor([5.0, 7.0]))


def test_each_loss_gets_the_log_probs_its_paper_uses():
    """DPO sums over the answer's tokens, SimPO and IPO (by default) average; --ipo_sum sums."""
    from losses import ipo_loss, orpo_loss, simpo_loss
    g = torch.Generator().manual_seed(0)
    policy, ref = (random_pair_logps(g) for _ in range(2))
    (pc, pr), (rc, rr) = policy.total.T, ref.total.T                       # sums
    (pc_m, pr_m), (rc_m, rr_m) = policy.mean.T, ref.mean.T                 # per-token means
    cases = [(DPOConfig(loss="dpo"), dpo_loss(pc, pr, rc, rr, beta=0.1)),
             (DPOConfig(loss="ipo"), ipo_loss(pc_m, pr_m, rc_m, rr_m, beta=0.5)),
             (DPOConfig(loss="ipo", ipo_sum=True), ipo_loss(pc, pr, rc, rr, beta=0.5)),
             (DPOConfig(loss="simpo"), simpo_loss(pc_m, pr_m, beta=2.0, gamma=0.5)),
             (DPOConfig(loss="orpo"), orpo_loss(pc_m, pr_m, beta=0.1))]
    for cfg, expected in cases:
        assert torch.equal(preference_loss(cfg, policy, ref)[0], expected[0]), cfg.loss


def test_orpo_and_simpo_ignore_any_reference():
    g = torch.Generator().manual_seed(1)
    policy, ref, other = (random_pair_logps(g) for _ in range(3))
    for loss in ("orpo", "simpo"):
        cfg = DPOConfig(loss=loss)
        assert torch.equal(preference_loss(cfg, policy, ref)[0],
                           preference_loss(cfg, policy, other)[0])
        assert torch.equal(preference_loss(cfg, policy, None)[0],
                           preference_loss(cfg, policy, ref)[0])
