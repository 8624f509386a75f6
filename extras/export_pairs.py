"""Write preference pairs as token ids, {"prompt","chosen","rejected"} lists, one pair a
line (for extras/bench_trl_dpo.py).   python extras/export_pairs.py PAIRS.jsonl OUT.jsonl"""
import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from data.batching import read_jsonl  # noqa: E402
from train_dpo import encode_pairs  # noqa: E402

pairs = encode_pairs(read_jsonl(sys.argv[1], ("prompt", "chosen", "rejected")), 64, sys.argv[1])
with open(sys.argv[2], "w") as f:
    for prompt, chosen, rejected in pairs:
        f.write(json.dumps({"prompt": prompt, "chosen": chosen, "rejected": rejected}) + "\n")
