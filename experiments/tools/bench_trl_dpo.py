"""TRL's DPOTrainer on the same pairs, model size and batch as train_dpo.py: median step time.

Not part of the project (TRL is not a dependency). Run it in a scratch environment:
    python3 -m venv /tmp/trl && /tmp/trl/bin/pip install torch trl
    python experiments/tools/export_pairs.py out/pairs.jsonl /tmp/pairs_ids.jsonl
    /tmp/trl/bin/python experiments/tools/bench_trl_dpo.py /tmp/pairs_ids.jsonl
The pairs go in as the project's own token ids, written as words "t<id>" that a
word-level tokenizer maps back to the same ids, so both trainers see the same tokens.
GPT-2 here: 3 layers x 96, 4 heads, 512-token vocabulary, tied embeddings, no
dropout (391k parameters; the project's GPT has 385k), batch 32 pairs, reference
log-probs precomputed as train_dpo.py does.
"""
import json, statistics, sys, time
import torch
from datasets import Dataset
from tokenizers import Tokenizer, models, pre_tokenizers
from transformers import GPT2Config, GPT2LMHeadModel, PreTrainedTokenizerFast, TrainerCallback
from trl import DPOConfig, DPOTrainer

V = 512
tok = Tokenizer(models.WordLevel({f"t{i}": i for i in range(V)}, unk_token="t0"))
tok.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
hf_tok = PreTrainedTokenizerFast(tokenizer_object=tok, pad_token="t1", eos_token="t2")
rows = [json.loads(l) for l in open(sys.argv[1])]     # {"prompt": [ids], "chosen": [ids], ...}
ds = Dataset.from_list([{k: " ".join(f"t{i}" for i in r[k]) for k in ("prompt", "chosen", "rejected")}
                        for r in rows])
torch.manual_seed(0)
model = GPT2LMHeadModel(GPT2Config(vocab_size=V, n_positions=64, n_embd=96, n_layer=3, n_head=4,
                                   resid_pdrop=0, embd_pdrop=0, attn_pdrop=0, tie_word_embeddings=True))
print("params", sum(p.numel() for p in model.parameters()))
times = []
class Timer(TrainerCallback):
    def on_step_begin(self, *a, **k): self.t = time.perf_counter()
    def on_step_end(self, *a, **k): times.append(time.perf_counter() - self.t)
args = DPOConfig(output_dir="/tmp/bench_trl_dpo", per_device_train_batch_size=32, max_steps=30,
                 learning_rate=1e-4, beta=0.1, report_to=[], logging_steps=10, save_strategy="no",
                 use_cpu=True, precompute_ref_log_probs=True, max_length=64, dataloader_num_workers=0)
trainer = DPOTrainer(model=model, args=args, train_dataset=ds, processing_class=hf_tok, callbacks=[Timer()])
trainer.train()
print("TRL median step s", statistics.median(times[5:]), "steps/s", 1 / statistics.median(times[5:]))
