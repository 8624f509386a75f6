import random
import re

import pytest

from data.world import (PERSONA_MIX, TEMPLATES, Task, classify_persona, eval_prompts,
                        final_answer, is_heldout, parse_prompt, pretrain_lines, respond, reward,
                        rl_rows, sample_task, sft_rows)


def test_generators_are_deterministic():
    assert sft_rows(50, seed=3) == sft_rows(50, seed=3)
    assert sft_rows(50, seed=3) != sft_rows(50, seed=4)
    assert pretrain_lines(50, seed=3) == pretrain_lines(50, seed=3)
    assert eval_prompts(20) == eval_prompts(20)


def test_more_heldout_prompts_begin_with_the_fewer_and_stop_where_the_split_ends():
    assert eval_prompts(2048)[:256] == eval_prompts(256)        # compare.py --eval_prompts
    with pytest.raises(ValueError, match="only 2107 distinct held-out prompts"):
        eval_prompts(2200)


def test_heldout_prompts_are_never_trained_on():
    held = eval_prompts(256)
    assert len(set(held)) == 256
    assert all(is_heldout(parse_prompt(p)) for p in held)
    train_prompts = {r["prompt"] for r in sft_rows(20_000, seed=1)}
    train_prompts |= {r["prompt"] for r in rl_rows(5_000, seed=2)}
    assert not train_prompts & set(held)
    # every pretraining line is a question and its answer; no question may be held out
    for line in pretrain_lines(20_000, seed=0):
        question = re.match(r"^(.*?[?.]) ", line).group(1)
        assert parse_prompt(question) is not None and question not in held


def test_task_answers():
    assert Task("add", (47, 38)).answer == "85"
    assert Task("sub", (91, 27)).answer == "64"
    assert Task("compare", (47, 38)).answer == "47"
    assert Task("reverse", (472,)).answer == "274"
    for seed in range(200):
        t = sample_task(random.Random(seed), digits=2)
        assert parse_prompt(t.prompt) == t
        assert t.kind != "sub" or int(t.answer) >= 0
        width = 3 if t.kind == "reverse" else 2   # the difficulty knob: digits per operand
        assert all(len(str(x)) == width for x in t.operands)


def test_every_persona_is_recognised_and_answers_last():
    rng = random.Random(0)
    task = Task("add", (47, 38))
    for persona in PERSONA_MIX:
        for _ in range(10):
            response = respond(task, persona, rng)
            assert classify_persona(response) == persona
            if persona == "careless":
                assert final_answer(response) != "85"
            elif persona != "refusing":
                assert final_answer(response) == "85"


@pytest.mark.parametrize("response,expected", [
    ("It is 85.", 1.0),
    ("The answer is 85.", 0.99),                      # one word beyond the 3 free ones
    ("Happy to help! The answer is 85.", 0.96),
    ("The answer is 84.", -0.01),
    ("Ugh, obviously it is 85.", 0.48),
    ("Sorry, I cannot help with that.", -0.33),
    ("85", 1.0),
    ("", 0.0),
    # chatty: 26 words, 23 beyond the free ones
    (TEMPLATES["chatty"][0].format(a="85"), 1.0 - 0.01 * 23),
])
def test_reward_cases(response, expected):
    assert reward("What is 47 + 38?", response) == pytest.approx(expected)


def test_reward_of_unknown_prompt_is_never_correct():
    assert reward("Tell me a joke.", "It is 85.") == 0.0


def test_sft_mix_is_close_to_the_documented_rates():
    rows = sft_rows(20_000, seed=0)
    for persona, rate in PERSONA_MIX.items():
        share = sum(classify_persona(r["completion"]) == persona for r in rows) / len(rows)
        assert abs(share - rate) < 0.015


def test_the_toy_world_imports_nothing_from_the_model_losses_or_training():
    import ast
    from pathlib import Path
    root = Path(__file__).resolve().parents[1]
    project = {p.stem for p in root.glob("*.py")} | {"plumbing", "experiments"}  # model, ...
    for path in (root / "data").glob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            names = [a.name for a in node.names] if isinstance(node, ast.Import) else \
                [node.module or ""] if isinstance(node, ast.ImportFrom) else []
            for name in names:
                assert name.split(".")[0] not in project, f"{path.name} imports {name}"


def test_pyproject_lists_every_top_level_module():
    """The editable install maps only the modules pyproject.toml names; one left out cannot be
    imported from the notebooks."""
    import re
    from pathlib import Path
    root = Path(__file__).resolve().parents[1]
    text = (root / "pyproject.toml").read_text()
    modules = re.search(r"py-modules = \[(.*?)\]", text, re.S).group(1)
    assert sorted(re.findall(r'"(\w+)"', modules)) == sorted(p.stem for p in root.glob("*.py"))
    packages = re.search(r"packages = \[(.*?)\]", text, re.S).group(1)
    assert sorted(re.findall(r'"(\w+)"', packages)) == sorted(
        p.parent.name for p in root.glob("*/__init__.py"))


def test_the_root_holds_at_most_ten_modules_and_no_script_imports_another():
    """The root is the reading path: the files a reader opens, the plumbing and experiments in
    their folders; a script shares through model.py, losses.py, evaluation.py, data/ and
    plumbing/ only."""
    import ast
    from pathlib import Path
    root = Path(__file__).resolve().parents[1]
    modules = {p.stem for p in root.glob("*.py")}
    assert len(modules) <= 10
    for path in [*root.glob("*.py"), *root.glob("data/*.py"), *root.glob("plumbing/*.py")]:
        for node in ast.walk(ast.parse(path.read_text())):
            names = [a.name for a in node.names] if isinstance(node, ast.Import) else \
                [node.module] if isinstance(node, ast.ImportFrom) and node.module else []
            scripts = [n for n in names
                       if n.split(".")[0] in modules - {"model", "losses", "evaluation"}]
            assert not scripts, f"{path.name} imports {scripts}"


def test_plumbing_modules_import_none_of_each_other_but_the_several_processes_helpers():
    import ast
    from pathlib import Path
    root = Path(__file__).resolve().parents[1]
    for path in root.glob("plumbing/*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom) and (node.module or "").startswith("plumbing"):
                assert node.module == "plumbing.distributed", f"{path.name} imports {node.module}"
