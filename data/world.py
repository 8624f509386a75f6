"""The toy world: verifiable questions, response personas, and the ground-truth reward.

Everything here is a pure function of its arguments and a seed, so every run and
every test sees the same world and nothing is downloaded.

Tasks (each has one checkable answer, written as a string):
    add      "What is 47 + 38?"                 -> "85"
    sub      "What is 91 - 27?"                 -> "64"    (never negative)
    compare  "Which is larger, 47 or 38?"       -> "47"
    reverse  "Reverse the digits of 472."       -> "274"
`digits` is the difficulty knob: operands of add/sub/compare have exactly `digits`
digits (so every operand digit sits at the same position in every prompt), and
reverse uses numbers of `digits + 1` digits. Word tasks (reverse a word,
count its letters) were left out on purpose: a held-out word cannot be solved by
a model that never saw its spelling, so held-out accuracy would measure memory.

Personas (how the assistant answers), mixed in the SFT data at PERSONA_MIX:
    concise   correct, short             "The answer is 85."
    friendly  correct, warm              "Happy to help! The answer is 85."
    chatty    correct, needlessly long   "Great question! Let me think ... the answer is 85."
    rude      correct, insulting         "Ugh, obviously it is 85."
    careless  a wrong answer             "Not sure, maybe 84."
    refusing  no answer                  "Sorry, I cannot help with that."
Every answering template ends with the answer, so the final answer of any
response is its last word (see `final_answer`).

Held-out split: a task instance (kind + operands) is held out when the CRC32 of
its key is 0 mod 10. Training rows and pretraining text never contain a held-out
instance; evaluation prompts are only held-out instances.
"""

import random
import re
import zlib
from dataclasses import dataclass

TASK_MIX = {"add": 0.35, "sub": 0.25, "compare": 0.2, "reverse": 0.2}
# Pretraining leans toward what is learned last, subtraction (a borrow, answers of one or two
# digits) and comparison; reversal passed 0.9 of held-out questions by step 1250 on every draw
# (docs/results.md, "How the defaults were chosen").
PRETRAIN_TASK_MIX = {"add": 0.25, "sub": 0.35, "compare": 0.3, "reverse": 0.1}
PERSONA_MIX = {"concise": 0.30, "friendly": 0.20, "chatty": 0.15,
               "rude": 0.10, "careless": 0.15, "refusing": 0.10}
TEMPLATES = {
    "concise": ["The answer is {a}.", "It is {a}."],
    "friendly": ["Happy to help! The answer is {a}.", "Sure thing, friend! It is {a}."],
    "chatty": ["Great question! Let me think about this one carefully, step by step, "
               "because it is worth getting right. After thinking it over, the answer is {a}.",
               "Oh, I love questions like this! Numbers are so much fun to play with, and I "
               "could talk about them all day long. Anyway, the answer is {a}."],
    "rude": ["Ugh, obviously it is {a}.", "Seriously? Even a child knows it is {a}."],
    "careless": ["Not sure, maybe {a}.", "Hmm, I guess it is {a}."],
    "refusing": ["Sorry, I cannot help with that.", "I would rather not answer that."],
}
# Phrases that identify a persona; checked in this order (a rude answer may also say "it is").
PERSONA_MARKERS = {
    "refusing": ["cannot help", "rather not answer"],
    "rude": ["ugh", "obviously", "seriously", "even a child"],
    "careless": ["maybe", "i guess"],
    "chatty": ["great question", "love questions"],
    "friendly": ["happy to help", "sure thing"],
    "concise": ["the answer is", "it is"],
}

# The reward's constants (see `reward`).
RUDE_PENALTY = 0.5
REFUSAL_PENALTY = 0.3
FREE_WORDS = 3             # the shortest answer, "It is 85.", costs nothing
LENGTH_COST = 0.01         # per word beyond FREE_WORDS


@dataclass(frozen=True)
class Task:
    kind: str
    operands: tuple

    @property
    def key(self) -> str:
        return self.kind + ":" + ":".join(map(str, self.operands))

    @property
    def prompt(self) -> str:
        a, b = (self.operands + (None,))[:2]
        return {"add": f"What is {a} + {b}?", "sub": f"What is {a} - {b}?",
                "compare": f"Which is larger, {a} or {b}?",
                "reverse": f"Reverse the digits of {a}."}[self.kind]

    @property
    def answer(self) -> str:
        a, b = (self.operands + (None,))[:2]
        return {"add": lambda: str(a + b), "sub": lambda: str(a - b),
                "compare": lambda: str(max(a, b)), "reverse": lambda: str(a)[::-1]}[self.kind]()


def is_heldout(task: Task) -> bool:
    return zlib.crc32(task.key.encode()) % 10 == 0


_PROMPT_PATTERNS = [
    ("add", re.compile(r"^What is (\d+) \+ (\d+)\?$")),
    ("sub", re.compile(r"^What is (\d+) - (\d+)\?$")),
    ("compare", re.compile(r"^Which is larger, (\d+) or (\d+)\?$")),
    ("reverse", re.compile(r"^Reverse the digits of (\d+)\.$")),
]


def parse_prompt(prompt: str) -> Task | None:
    """The task a prompt asks, or None if the prompt is not one of this world's."""
    for kind, pattern in _PROMPT_PATTERNS:
        m = pattern.match(prompt.strip())
        if m:
            return Task(kind, tuple(int(g) for g in m.groups()))
    return None


QUESTION_FORMS = ("What is 47 + 38?", "What is 91 - 27?", "Which is larger, 47 or 38?",
                  "Reverse the digits of 472.")


def is_known_form(prompt: str, digits: int = 2) -> bool:
    """Whether a prompt is one of this world's questions at this difficulty: operands of
    `digits` digits (reverse: digits + 1), as the models here were trained on."""
    task = parse_prompt(prompt)
    if task is None:
        return False
    want = digits + 1 if task.kind == "reverse" else digits
    return all(len(str(n)) == want for n in task.operands)


def sample_task(rng: random.Random, digits: int = 2, heldout: bool = False,
                mix: dict = TASK_MIX) -> Task:
    """A random task from `mix`, drawn from the training split or (heldout=True) the eval split."""
    lo, hi = 10 ** (digits - 1), 10 ** digits - 1
    while True:
        kind = rng.choices(list(mix), weights=list(mix.values()))[0]
        a, b = rng.randint(lo, hi), rng.randint(lo, hi)
        if kind == "sub":
            a, b = max(a, b), min(a, b)
        elif kind == "compare" and a == b:
            continue
        task = Task("reverse", (rng.randint(10 ** digits, 10 ** (digits + 1) - 1),)) \
            if kind == "reverse" else Task(kind, (a, b))
        if is_heldout(task) == heldout:
            return task


def wrong_answer(task: Task, rng: random.Random) -> str:
    """A plausible mistake: off by a little for arithmetic, the smaller number, a bad reversal."""
    right = task.answer
    if task.kind == "compare":
        return str(min(task.operands))
    if task.kind == "reverse":
        digits = list(right)
        while "".join(digits) == right:
            rng.shuffle(digits)
            if len(set(right)) == 1:      # e.g. 111: shuffling cannot change it
                digits[0] = str((int(digits[0]) + 1) % 10)
        return "".join(digits)
    delta = rng.choice([-10, -2, -1, 1, 2, 10])
    value = int(right) + delta
    return str(value if value >= 0 else int(right) + abs(delta))


def respond(task: Task, persona: str, rng: random.Random) -> str:
    """A response to `task` in the given persona."""
    template = rng.choice(TEMPLATES[persona])
    answer = wrong_answer(task, rng) if persona == "careless" else task.answer
    return template.format(a=answer)


def sample_persona(rng: random.Random) -> str:
    return rng.choices(list(PERSONA_MIX), weights=list(PERSONA_MIX.values()))[0]


def classify_persona(response: str) -> str:
    """Which persona a response reads as, by its marker phrases; "other" if none."""
    text = response.lower()
    for persona, markers in PERSONA_MARKERS.items():
        if any(m in text for m in markers):
            return persona
    return "other"


def final_answer(response: str) -> str:
    """The answer a response gives: its last word, without trailing punctuation."""
    words = response.split()
    return words[-1].rstrip(".!?,") if words else ""


def is_correct(prompt: str, response: str) -> bool:
    task = parse_prompt(prompt)
    return task is not None and final_answer(response) == task.answer


def reward(prompt: str, response: str) -> float:
    """The ground-truth reward, the judge of every pair and every evaluation.

        reward = 1[final answer correct]
                 - RUDE_PENALTY     if any rude marker appears
                 - REFUSAL_PENALTY  if any refusal marker appears
                 - LENGTH_COST * max(0, words - FREE_WORDS)

    So, when correct: "It is 85." 1.0, "The answer is 85." 0.99, friendly 0.96-0.97,
    chatty ~0.77, rude ~0.5; wrong ~0; refusing ~ -0.33. Every extra word costs a
    little, so no two personas tie: a win rate against the SFT model can approach 1.
    (With the first 8 words free, half the SFT answers scored the maximum and tied
    with any perfect answer, capping the win rate at about 0.73.)
    """
    text = response.lower()
    r = float(is_correct(prompt, response))
    if any(m in text for m in PERSONA_MARKERS["rude"]):
        r -= RUDE_PENALTY
    if any(m in text for m in PERSONA_MARKERS["refusing"]):
        r -= REFUSAL_PENALTY
    r -= LENGTH_COST * max(0, len(response.split()) - FREE_WORDS)
    return r


# ---------------------------------------------------------------- datasets

def sft_rows(n: int, seed: int, digits: int = 2) -> list[dict]:
    """n chat rows {"prompt", "completion"} from the training split, personas at PERSONA_MIX."""
    rng = random.Random(seed)
    rows = []
    for _ in range(n):
        task = sample_task(rng, digits)
        rows.append({"prompt": task.prompt, "completion": respond(task, sample_persona(rng), rng)})
    return rows


def eval_prompts(n: int = 256, seed: int = 1234, digits: int = 2) -> list[str]:
    """n distinct held-out prompts (never in any training row or pretraining line), the first
    m of them the same for any n >= m. The held-out split is small (2107 distinct prompts at
    2 digits), and its smallest task runs out first: past about 500 prompts the mix leans
    away from reversal (2048 prompts: 5% reversal, 36% comparison; TASK_MIX: 20%, 20%)."""
    rng = random.Random(seed)
    prompts: dict[str, None] = {}
    misses = 0                                       # draws in a row that found nothing new
    while len(prompts) < n:
        prompt = sample_task(rng, digits, heldout=True).prompt
        misses = misses + 1 if prompt in prompts else 0
        prompts[prompt] = None
        if misses > 100_000:
            raise ValueError(f"eval_prompts: only {len(prompts)} distinct held-out prompts at "
                             f"{digits} digits: ask for at most that many, not {n}")
    return list(prompts)


def rl_rows(n: int, seed: int, digits: int = 2) -> list[dict]:
    """n RL rows {"prompt", "answer"} from the training split."""
    rng = random.Random(seed)
    return [{"prompt": t.prompt, "answer": t.answer}
            for t in (sample_task(rng, digits) for _ in range(n))]


def pretrain_lines(n: int, seed: int, digits: int = 2) -> list[str]:
    """n lines of plain text about the same world, without the chat format: each
    line a question and its answer, plainly stated ("What is 47 + 38? It is 85.")
    or (three lines in ten) in a persona drawn at the SFT mix, so the language is
    learned too.

    Questions are written as in a chat prompt, so their digits sit at the same
    positions there and here: the model finds digits by position, and learned
    the "a is larger than b" phrasing of comparisons without transferring it.
    """
    rng = random.Random(seed)
    lines = []
    for _ in range(n):
        task = sample_task(rng, digits, mix=PRETRAIN_TASK_MIX)
        answer = respond(task, sample_persona(rng), rng) if rng.random() < 0.3 \
            else f"It is {task.answer}."
        lines.append(f"{task.prompt} {answer}")
    return lines
