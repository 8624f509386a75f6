"""What compare.py runs: every method at three strengths of its KL knob, and the extra runs
the claims need, each as a chain of script invocations after train_sft.py.

A method's run is its steps (after train_sft.py, which every method shares per seed) with its
knob set on the last step; experiments/sweep.py plans and runs the chains, so each seed's SFT
model (and PPO's reward model) is trained once for every method that starts from it. The
code refers to a method by its name (METHODS["dpo"]); the tables show its title.
"""

import shlex
from dataclasses import dataclass, field

SFT = "train_sft.py"


@dataclass(frozen=True, eq=False)      # a method is itself: compared and hashed by identity
class Method:
    name: str                 # how the code and compare.json refer to it
    title: str                # how the tables and the plot name it
    script: str               # the last step's script: the one that trains the method
    knob: str                 # the flag that holds the policy near the reference
    values: tuple[str, ...]   # its values, loose leash first; the middle one is the resources row
    data: str                 # what it learns from
    trainable: str            # "model", "lora" or "model + critic"
    knobs: str                # the hyperparameters a user has to set
    flags: dict = field(default_factory=dict)   # the last step's other flags (None: a switch)
    before: tuple[str, ...] = ()                # steps between train_sft.py and the last (PPO's RM)
    # the objective whose optimum the method is promised (experiments/measure.py): "labels"
    # (the paper's DPO on Bradley-Terry labels), "reward model" (PPO's) or "true reward" (E[r] -
    # beta KL(pi || pi_ref) on the judge's reward); "" for none
    promise: str = ""

    @property
    def steps(self) -> tuple[str, ...]:
        """The steps after train_sft.py, the last without its knob."""
        return (*self.before, " ".join([self.script, *(f"--{k}" if v is None else f"--{k} {v}"
                                                      for k, v in self.flags.items())]))

    @property
    def stage(self) -> str:
        """The last step's stage: its <stage>_eval.json and <stage>_metrics.jsonl."""
        return stage_of(shlex.split(self.steps[-1]))


DPO_KNOBS = "beta, learning rate"
JUDGE = "prompts + the judge"
GRPO_KNOBS = "beta, G, epsilon, learning rate"
# beta (kl_coef) of every online method on the judge's reward: the same points of the ceiling,
# so that two of them are compared at matched knob values
ON_JUDGE = ("0.01", "0.04", "0.16")
METHODS = {m.name: m for m in [
    Method("paper_dpo", "DPO, the paper's loss (Bradley-Terry labels)", "train_dpo.py", "beta",
           ("0.1", "0.3", "1.0"), "preference pairs", "model", DPO_KNOBS,
           flags={"rpo_alpha": "0", "label_temperature": "0.1"}, promise="labels"),
    Method("dpo", "DPO + NLL (RPO, the default)", "train_dpo.py", "beta", ("0.03", "0.1", "0.3"),
           "preference pairs", "model", DPO_KNOBS + ", rpo_alpha"),
    Method("ipo", "IPO", "train_dpo.py", "beta", ("0.25", "0.5", "1.0"), "preference pairs",
           "model", "tau, learning rate, rpo_alpha", flags={"loss": "ipo"}),
    Method("simpo", "SimPO", "train_dpo.py", "beta", ("1.0", "2.0", "4.0"), "preference pairs",
           "model", "beta, gamma, learning rate, rpo_alpha", flags={"loss": "simpo"}),
    Method("kto", "KTO", "train_dpo.py", "beta", ("0.03", "0.1", "0.3"),
           "answers labelled good / bad", "model",
           "beta, desirable / undesirable weights, learning rate", flags={"loss": "kto"}),
    Method("orpo", "ORPO (no SFT stage)", "train_dpo.py", "beta", ("0.03", "0.1", "0.3"),
           "preference pairs (no SFT data)", "model", "lambda, learning rate",
           flags={"loss": "orpo"}),
    Method("lora_dpo", "LoRA-DPO (r = 8)", "train_dpo.py", "beta", ("0.03", "0.1", "0.3"),
           "preference pairs", "lora", DPO_KNOBS + ", rpo_alpha, rank, alpha",
           flags={"lora_rank": "8", "learning_rate": "2e-3"}),
    # the article's GRPO (a rule's reward) at its default beta only: the frontier's GRPO runs
    # are on the judge's reward, below, which the full run's time budget spends its knobs on
    Method("grpo", "GRPO", "train_grpo.py", "beta", ("0.04",),
           "prompts + a rule (correct or not)", "model", GRPO_KNOBS),
    Method("ppo", "PPO + reward model (RLHF)", "train_ppo.py", "kl_coef", ON_JUDGE,
           "preference pairs (the RM) + prompts", "model + critic",
           "kl_coef, vf_coef, epsilon, value_epsilon, gamma, lam, num_ppo_epochs, "
           "num_mini_batches, learning rate; the RM's learning rate, steps",
           before=("train_rm.py",), promise="reward model"),
    # the online methods on the judge's reward, the one that labels DPO's pairs
    Method("iterative_dpo", "Iterative DPO + NLL (3 rounds)", "train_dpo.py", "beta",
           ("0.03", "0.1", "0.3"), "prompts + the judge (pairs of its own answers)", "model",
           DPO_KNOBS + ", rpo_alpha, rounds", flags={"rounds": "3"}),
    # GRPO's leash as a 2 x 2: where the KL goes (the loss, k3; the reward, k1) and whether
    # the group's std scales the advantage (GRPO's) or not (--scale_rewards none)
    Method("grpo_judge", "GRPO (judge reward), KL in the loss", "train_grpo.py", "beta",
           ON_JUDGE, JUDGE, "model", GRPO_KNOBS, flags={"reward": "judge"}),
    Method("grpo_kl_reward", "GRPO (judge reward), KL in the reward", "train_grpo.py", "beta",
           ON_JUDGE, JUDGE, "model", GRPO_KNOBS, flags={"reward": "judge", "kl_in": "reward"}),
    Method("grpo_judge_unscaled", "GRPO (judge reward), KL in the loss, no std scaling",
           "train_grpo.py", "beta", ON_JUDGE, JUDGE, "model", GRPO_KNOBS,
           flags={"reward": "judge", "scale_rewards": "none"}),
    Method("grpo_kl_reward_unscaled", "GRPO (judge reward), KL in the reward, no std scaling",
           "train_grpo.py", "beta", ON_JUDGE, JUDGE, "model", GRPO_KNOBS,
           flags={"reward": "judge", "kl_in": "reward", "scale_rewards": "none"}),
    # every answer in the loss (--no-mask_truncated): an answer cut off at the sampler's
    # limit, left out, would leave the objective E[r] - beta KL whose optimum is promised
    Method("dr_grpo", "Dr. GRPO (judge reward), KL in the reward", "train_grpo.py", "beta",
           ON_JUDGE, JUDGE, "model", "beta, G, learning rate",
           flags={"reward": "judge", "loss_type": "dr_grpo", "scale_rewards": "none",
                  "kl_in": "reward", "no-mask_truncated": None}, promise="true reward"),
    Method("rloo", "RLOO (judge reward)", "train_grpo.py", "beta", ON_JUDGE, JUDGE, "model",
           "beta, G, epsilon, learning rate",
           flags={"reward": "judge", "advantage": "rloo", "no-mask_truncated": None},
           promise="true reward"),
    Method("ppo_judge", "PPO on the true reward (no reward model)", "train_ppo.py", "kl_coef",
           ON_JUDGE, "prompts + the judge", "model + critic",
           "kl_coef, vf_coef, epsilon, value_epsilon, gamma, lam, num_ppo_epochs, "
           "num_mini_batches, learning rate", flags={"reward": "judge"}, promise="true reward"),
]}
ONLINE = ("iterative_dpo", "grpo_judge", "grpo_kl_reward", "grpo_judge_unscaled",
          "grpo_kl_reward_unscaled", "dr_grpo", "rloo", "ppo_judge")
# --eval_every of the middle knob's run, for the paths the plot draws: DPO's and PPO's 6
# points each (their drawdowns are compared: more points, more chances to dip), and each
# cell of GRPO's 2 x 2 its 8 (is a run still moving when it stops?)
PATHS = {"paper_dpo": 25, "dpo": 25, "ppo": 16, "grpo_judge": 25, "grpo_kl_reward": 25,
         "grpo_judge_unscaled": 25, "grpo_kl_reward_unscaled": 25}
EXTRAS = {   # the steps of each (after train_sft.py); {out_dir}: the run's folder
    "sft_control": ("train_sft.py --stage sft --init_from {out_dir}/sft.pt --sft_steps 2000",),
    # the paper's loss at SFT's learning rate (1e-3), and at 1/33 of it (the article's range)
    "paper_dpo_sft_lr": ("train_dpo.py --rpo_alpha 0 --label_temperature 0.1 --beta 1.0 "
                         "--learning_rate 1e-3",),
    "paper_dpo_low_lr": ("train_dpo.py --rpo_alpha 0 --label_temperature 0.1 --beta 1.0 "
                         "--learning_rate 3e-5",),
    "dpo_small_set": ("train_dpo.py --num_prompts 128",),
    "dpo_long_judge": ("train_dpo.py --length_bonus 0.03",),
    "simpo_long_judge": ("train_dpo.py --loss simpo --length_bonus 0.03",),
    "dpo_offpolicy": ("train_dpo.py --pair_source offpolicy --num_prompts 20000",),
    "dpo_from_pretrained": ("train_dpo.py --pair_source offpolicy --num_prompts 20000 "
                            "--allow_pretrained --init_from {out_dir}/pretrain.pt",),
}
# compare.py --eval_prompts: the SFT model evaluated again, in a run of its own, so that its
# training step (the seed's SFT model every run starts from) stays the one they all share
SFT_EVAL = "train_sft.py --stage sft --init_from {seed_dir}/sft.pt --sft_steps 0"
# --smoke keeps every step seconds-long: these flags' values are replaced (--smoke itself
# leaves flags given on the command line alone)
SMOKE_FLAGS = {"--sft_steps": "20", "--num_prompts": "64"}
# The memory claims need a model whose weights and optimizer state, not the runtime, fill the
# process: a 25M-parameter GPT (8 x 512), its SFT two steps long, each method a few steps at
# one small batch shape (the same number of sequences per step) and a short evaluation.
MEMORY_SFT = ("train_sft.py --n_layer 8 --n_head 8 --n_embd 512 --pretrain_steps 2 "
              "--sft_steps 2 --pretrain_lines 2000 --sft_rows 500 --eval_prompts 4")
SMALL = "--eval_prompts 4"
MEMORY = {
    "DPO": ("train_dpo.py --pair_source offpolicy --num_prompts 64 --batch_size 8 "
            f"--max_steps 2 {SMALL}",),
    "LoRA-DPO": ("train_dpo.py --pair_source offpolicy --num_prompts 64 --batch_size 8 "
                 f"--max_steps 2 --lora_rank 8 {SMALL}",),
    "SimPO": ("train_dpo.py --loss simpo --pair_source offpolicy --num_prompts 64 --batch_size 8 "
              f"--max_steps 2 {SMALL}",),
    "GRPO": (f"train_grpo.py --prompts_per_step 2 --max_steps 1 {SMALL}",),
    "RLHF": (f"train_rm.py --pair_source offpolicy --num_prompts 64 --batch_size 8 --max_steps 2 "
             f"{SMALL}", f"train_ppo.py --batch_size 16 --max_steps 1 {SMALL}"),
}


def command(m: Method, value: str) -> str:
    """The last step of m's run at knob value `value`."""
    return f"{m.steps[-1]} --{m.knob} {value}"


def run_command(m: Method, value: str) -> str:
    """command(), and at the middle knob value of a PATHS method, --eval_every."""
    path = f" --eval_every {PATHS[m.name]}" if m.name in PATHS and value == m.values[1] else ""
    return command(m, value) + path


def chains(smoke: bool, eval_prompts: int | None = None) -> dict[tuple[str, str], list[list[str]]]:
    """{(method or extra name, knob value or ""): the run's steps as argv lists}. A smoke run
    takes the first knob value of each method, and gives every step --smoke. The DPO scripts
    start from the seed's SFT model in its shared folder ({seed_dir}), so that the runs of a
    seed share the answers sampled from it (kept beside it). eval_prompts: each run's last
    step evaluates on that many held-out prompts, with no --eval_every path (8 path points on
    2048 prompts cost twice the run; the paths are the full run's, on 256), and ("sft", "")
    is the SFT model evaluated on as many (SFT_EVAL); the steps runs share (the SFT model,
    PPO's reward model) stay as they are, and so are reused."""
    out = {}
    for m in METHODS.values():
        for v in m.values[:1] if smoke else m.values:
            last = command(m, v) if eval_prompts else run_command(m, v)
            out[m.name, v] = [SFT, *m.before, last]
    for name, steps in EXTRAS.items():
        out[name, ""] = [SFT, *steps]
    more = f" --eval_prompts {eval_prompts}" if eval_prompts else ""
    runs = {k: [finish(shlex.split(s + (more if i == len(c) - 1 else "")), smoke)
                for i, s in enumerate(c)] for k, c in out.items()}
    if eval_prompts:          # (finish() would shorten its --sft_steps 0 to a smoke value)
        runs["sft", ""] = [finish([SFT], smoke), shlex.split(SFT_EVAL + more) + ["--smoke"] * smoke]
    return runs


def memory_chains(smoke: bool) -> dict[str, list[list[str]]]:
    """{method: the steps that measure its memory on MEMORY_SFT's 25M-parameter model}."""
    sft = SFT if smoke else MEMORY_SFT       # (a smoke run: the smoke model, seconds long)
    return {name: [finish(shlex.split(s), smoke) for s in (sft, *steps)]
            for name, steps in MEMORY.items()}


def finish(argv: list[str], smoke: bool) -> list[str]:
    """A step's argv as it runs: a DPO step without --init_from starts from {seed_dir}'s
    checkpoint; with smoke, SMOKE_FLAGS's values put in, and --smoke."""
    argv = list(argv)
    if argv[0] == "train_dpo.py" and "--init_from" not in argv:
        argv += ["--init_from", "{seed_dir}/" + ("pretrain.pt" if "orpo" in argv else "sft.pt")]
    if not smoke:
        return argv
    for i, a in enumerate(argv[:-1]):
        if a in SMOKE_FLAGS:
            argv[i + 1] = SMOKE_FLAGS[a]
    return argv + ["--smoke"]


def stage_of(argv: list[str]) -> str:
    """The stage a step writes (<stage>_eval.json, <stage>_metrics.jsonl)."""
    if argv[0] == "train_dpo.py":
        return argv[argv.index("--loss") + 1] if "--loss" in argv else "dpo"
    return {"train_sft.py": "sft", "train_grpo.py": "grpo", "train_rm.py": "rm",
            "train_ppo.py": "ppo"}[argv[0]]
