"""Write preference pairs as token ids, {"prompt","chosen","rejected"} lists, one pair a
line (for experiments/tools/bench_trl_dpo.py).
    python experiments/tools/export_pairs.py PAIRS.jsonl OUT.jsonl"""
import json
import sys

from data.batching import encode_rows
from data.pairs import read_pairs

pairs = encode_rows(read_pairs(sys.argv[1]), 64, sys.argv[1])
with open(sys.argv[2], "w") as f:
    for prompt, chosen, rejected in pairs:
        f.write(json.dumps({"prompt": prompt, "chosen": chosen, "rejected": rejected}) + "\n")
