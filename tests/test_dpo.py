from types import SimpleNamespace

import torch

from data.world import eval_prompts, reward
from losses import dpo_loss
from model import GPT, GPTConfig
from data.tokenizer import get_tokenizer
from train_dpo import (DPOConfig, encode_pairs, label, offpolicy_pairs, pair_logps,
                       pair_logps_of_all, preference_loss)
from data.batching import chat_batch
from losses import sequence_logprobs

PAIRS = offpolicy_pairs(eval_prompts(12), DPOConfig(), seed=0)


def small_model(seed=0):
    torch.manual_seed(seed)
    return GPT(GPTConfig(vocab_size=get_tokenizer().n_vocab, block_size=64, n_layer=1,
                         n_head=2, n_embd=32))


def test_offpolicy_pairs_prefer_the_higher_reward():
    assert PAIRS
    for r in PAIRS:
        assert reward(r["prompt"], r["chosen"]) > reward(r["prompt"], r["rejected"])


def test_bradley_terry_labels_follow_the_reward_gap():
    import random
    rng = random.Random(0)
    p, good, bad = "What is 2 + 3?", "The answer is 5.", "Not sure, maybe 6."
    bt, best = (SimpleNamespace(label_temperature=t, length_bonus=0.0) for t in (0.5, 0.0))
    wins = sum(label(rng, p, good, bad, bt)[0] == good for _ in range(2000))
    assert abs(wins / 2000 - 1 / (1 + torch.exp(torch.tensor(-1 / 0.5)).item())) < 0.03
    assert label(rng, p, good, good, best) is None                      # ties dropped


def test_a_length_biased_labeller_prefers_the_chatty_right_answer():
    import random
    p, concise = "What is 2 + 3?", "It is 5."
    chatty = ("Great question! Let me think about this one carefully, step by step, because "
              "it is worth getting right. After thinking it over, the answer is 5.")
    assert reward(p, concise) > reward(p, chatty)                      # the true reward: concise
    true, long = (SimpleNamespace(label_temperature=0.0, length_bonus=b) for b in (0.0, 0.03))
    assert label(random.Random(0), p, concise, chatty, true) == (concise, chatty)
    assert label(random.Random(0), p, concise, chatty, long) == (chatty, concise)


def test_concatenated_forward_equals_separate_forwards():
    model, device = small_model().eval(), torch.device("cpu")
    batch = encode_pairs(PAIRS, 64, "test")
    pc, pr, mc, mr = pair_logps(model, batch, device)
    for k, (p, c, r) in enumerate(batch):
        for ids, total, mean in ((c, pc[k], mc[k]), (r, pr[k], mr[k])):
            inputs, targets, mask = chat_batch([p], [ids])
            alone = sequence_logprobs(model(inputs), targets, mask)
            assert torch.allclose(alone[0], total, atol=1e-4)
            assert torch.allclose(alone[0] / len(ids), mean, atol=1e-5)


def test_precomputed_and_live_reference_give_the_same_loss():
    ref, policy, device = small_model(0).eval(), small_model(1).eval(), torch.device("cpu")
    batch = encode_pairs(PAIRS, 64, "test")
    precomputed = pair_logps_of_all(ref, batch, device, batch_size=3)    # built in chunks
    idx = torch.tensor([4, 0, 2])
    sub = [batch[i] for i in idx.tolist()]
    with torch.no_grad():
        live = pair_logps(ref, sub, device)
        policy_out = pair_logps(policy, sub, device)
    for loss in ("dpo", "ipo", "simpo"):
        cfg = DPOConfig(loss=loss, beta=0.1)
        a = preference_loss(cfg, policy_out, precomputed.select(idx, device))[0]
        b = preference_loss(cfg, policy_out, live)[0]
        assert torch.allclose(a, b, atol=1e-5)


def test_policy_equal_to_reference_gives_ln2():
    model, device = small_model().eval(), torch.device("cpu")
    batch = encode_pairs(PAIRS, 64, "test")
    with torch.no_grad():
        out = pair_logps(model, batch, device)
    losses, _, _ = dpo_loss(out.chosen, out.rejected, out.chosen, out.rejected)
    assert torch.allclose(losses, torch.full_like(losses, 0.6931472), atol=1e-6)


def random_pair_logps(g):
    """Random log-probs of 4 pairs: sums, and means over 5 and 7 tokens."""
    from train_dpo import PairLogps
    total = -10 * torch.rand(4, 2, generator=g)
    return PairLogps(total[:, 0], total[:, 1], total[:, 0] / 5, total[:, 1] / 7)


def test_each_loss_gets_the_log_probs_its_paper_uses():
    """DPO sums over the answer's tokens, SimPO and IPO (by default) average; --ipo_sum sums."""
    from losses import ipo_loss, orpo_loss, simpo_loss
    g = torch.Generator().manual_seed(0)
    policy, ref = (random_pair_logps(g) for _ in range(2))
    cases = [(DPOConfig(loss="dpo"), dpo_loss(policy.chosen, policy.rejected, ref.chosen,
                                              ref.rejected, beta=0.1)),
             (DPOConfig(loss="ipo"), ipo_loss(policy.chosen_mean, policy.rejected_mean,
                                              ref.chosen_mean, ref.rejected_mean, beta=0.5)),
             (DPOConfig(loss="ipo", ipo_sum=True), ipo_loss(policy.chosen, policy.rejected,
                                                            ref.chosen, ref.rejected, beta=0.5)),
             (DPOConfig(loss="simpo"), simpo_loss(policy.chosen_mean, policy.rejected_mean,
                                                  beta=2.0, gamma=0.5)),
             (DPOConfig(loss="orpo"), orpo_loss(policy.chosen_mean, policy.rejected_mean,
                                                beta=0.1))]
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
