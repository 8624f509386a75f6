"""What compare.py runs: every method at three strengths of its KL knob, and the extra runs
the claims need, each as a chain of script invocations after train_sft.py.

A method's run is its steps (after train_sft.py, which every method shares per seed) with its
knob set on the last step; experiments/sweep.py plans and runs the chains, so each seed's SFT
model (and PPO's reward model) is trained once for every method that starts from it.
"""

import shlex
from dataclasses import dataclass

SFT = "train_sft.py"


@dataclass(frozen=True)
class Method:
    name: str
    steps: tuple[str, ...]    # the steps after train_sft.py; the knob is given to the last
    knob: str                 # the flag that holds the policy near the reference
    values: tuple[str, ...]   # its values, loose leash first; the middle one is the resources row
    data: str                 # what it learns from
    trainable: str            # "model", "lora" or "model + critic"
    knobs: str                # the hyperparameters a user has to set

    @property
    def stage(self) -> str:
        """The last step's stage: its <stage>_eval.json and <stage>_metrics.jsonl."""
        return stage_of(shlex.split(self.steps[-1]))


DPO_KNOBS = "beta, learning rate"
METHODS = [
    Method("DPO, the paper's loss (Bradley-Terry labels)",
           ("train_dpo.py --rpo_alpha 0 --label_temperature 0.1",), "beta", ("0.1", "0.3", "1.0"),
           "preference pairs", "model", DPO_KNOBS),
    Method("DPO + NLL (RPO, the default)", ("train_dpo.py",), "beta", ("0.03", "0.1", "0.3"),
           "preference pairs", "model", DPO_KNOBS + ", rpo_alpha"),
    Method("IPO", ("train_dpo.py --loss ipo",), "beta", ("0.25", "0.5", "1.0"),
           "preference pairs", "model", "tau, learning rate, rpo_alpha"),
    Method("SimPO", ("train_dpo.py --loss simpo",), "beta", ("1.0", "2.0", "4.0"),
           "preference pairs", "model", "beta, gamma, learning rate, rpo_alpha"),
    Method("KTO", ("train_dpo.py --loss kto",), "beta", ("0.03", "0.1", "0.3"),
           "answers labelled good / bad", "model",
           "beta, desirable / undesirable weights, learning rate"),
    Method("ORPO (no SFT stage)", ("train_dpo.py --loss orpo",), "beta", ("0.03", "0.1", "0.3"),
           "preference pairs (no SFT data)", "model", "lambda, learning rate"),
    Method("LoRA-DPO (r = 8)", ("train_dpo.py --lora_rank 8 --learning_rate 2e-3",), "beta",
           ("0.03", "0.1", "0.3"), "preference pairs", "lora",
           DPO_KNOBS + ", rpo_alpha, rank, alpha"),
    Method("GRPO", ("train_grpo.py",), "beta", ("0.01", "0.04", "0.16"),
           "prompts + a rule (correct or not)", "model", "beta, G, epsilon, learning rate"),
    Method("PPO + reward model (RLHF)", ("train_rm.py", "train_ppo.py"), "kl_coef",
           ("0.02", "0.05", "0.1"), "preference pairs (the RM) + prompts", "model + critic",
           "kl_coef, vf_coef, cliprange, cliprange_value, gamma, lam, num_ppo_epochs, "
           "num_mini_batches, learning rate; the RM's learning rate, steps"),
]
ONLINE = [   # the same loops on the judge's reward: online methods against offline DPO
    Method("Iterative DPO + NLL (3 rounds)", ("train_dpo.py --rounds 3",), "beta",
           ("0.03", "0.1", "0.3"), "prompts + the judge (pairs of its own answers)", "model",
           DPO_KNOBS + ", rpo_alpha, rounds"),
    Method("GRPO (judge reward)", ("train_grpo.py --reward judge",), "beta",
           ("0.01", "0.04", "0.16"), "prompts + the judge", "model",
           "beta, G, epsilon, learning rate"),
    Method("RLOO (judge reward)", ("train_grpo.py --reward judge --advantage rloo",), "beta",
           ("0.01", "0.04", "0.16"), "prompts + the judge", "model", "beta, G, learning rate"),
    Method("Rejection sampling (judge reward)", ("train_grpo.py --reward judge --advantage best",),
           "beta", ("0.01", "0.04", "0.16"), "prompts + the judge", "model",
           "beta, G, learning rate"),
]
METHODS += ONLINE
PAPER, DPO, IPO, SIMPO, KTO, ORPO, LORA, GRPO, PPO, ITERATIVE, GRPO_JUDGE, RLOO, RS = METHODS
# --eval_every of the middle knob's run, for the paths the plot draws (about 6 to 10 points)
PATHS = {PAPER.name: 25, DPO.name: 25, GRPO.name: 25, PPO.name: 10}
EXTRAS = {   # the steps of each (after train_sft.py); {out_dir}: the run's folder
    "sft_control": ("train_sft.py --stage sft --init_from {out_dir}/sft.pt --sft_steps 2000",),
    "dpo_sft_lr": ("train_dpo.py --learning_rate 1e-3",),
    "dpo_small_set": ("train_dpo.py --num_prompts 128",),
    "dpo_long_judge": ("train_dpo.py --length_bonus 0.03",),
    "simpo_long_judge": ("train_dpo.py --loss simpo --length_bonus 0.03",),
    "dpo_offpolicy": ("train_dpo.py --pair_source offpolicy --num_prompts 20000",),
    "dpo_from_pretrained": ("train_dpo.py --pair_source offpolicy --num_prompts 20000 "
                            "--allow_pretrained --init_from {out_dir}/pretrain.pt",),
    # the learning rate x 0.5 and x 2 at the middle knob: each side's frontier is the envelope
    # of five runs, the same tuning budget for DPO and PPO
    "dpo_lr_half": ("train_dpo.py --beta 0.1 --learning_rate 1e-4",),
    "dpo_lr_double": ("train_dpo.py --beta 0.1 --learning_rate 4e-4",),
    "ppo_lr_half": ("train_rm.py", "train_ppo.py --kl_coef 0.05 --learning_rate 2.5e-5"),
    "ppo_lr_double": ("train_rm.py", "train_ppo.py --kl_coef 0.05 --learning_rate 1e-4"),
}
# --smoke keeps every step seconds-long: these flags' values are replaced (--smoke itself
# leaves flags given on the command line alone)
SMOKE_FLAGS = {"--sft_steps": "20", "--num_prompts": "64"}
ENVELOPES = {DPO.name: ("dpo_lr_half", "dpo_lr_double"), PPO.name: ("ppo_lr_half", "ppo_lr_double")}
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


def chains(smoke: bool) -> dict[tuple[str, str], list[list[str]]]:
    """{(method or extra, knob value or ""): the run's steps as argv lists}. A smoke run takes
    the first knob value of each method, and gives every step --smoke. The DPO scripts start
    from the seed's SFT model in its shared folder ({seed_dir}), so that the runs of a seed
    share the answers sampled from it (kept beside it)."""
    out = {}
    for m in METHODS:
        for v in m.values[:1] if smoke else m.values:
            out[m.name, v] = [SFT, *m.steps[:-1], run_command(m, v)]
    for name, steps in EXTRAS.items():
        out[name, ""] = [SFT, *steps]
    return {k: [finish(shlex.split(s), smoke) for s in c] for k, c in out.items()}


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
