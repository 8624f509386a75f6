"""A small GPT in plain PyTorch, its samplers and its checkpoints.

- `GPT.forward(idx)` returns logits for every position, (B, T, V): the same
  call trains the model and gives the per-token log-probs every loss needs
  (losses.answer_logps), so there is one code path for both. On CUDA the forward
  runs under bf16 autocast (model.autocast); elsewhere in float32.
- `sample` draws completions for a batch of prompts of different lengths with a
  KV cache: one prefill per prompt, then the cache is copied into G rows for a
  GRPO group. `sample_naive` recomputes the whole sequence at every step, one
  prompt at a time, and is the reference the tests hold `sample` to.
- Positions are learned absolute embeddings (GPT-2), counted from the start of
  each row, line or prompt. In this world every digit of a question sits at the
  same position in every prompt, and absolute positions let attention find it
  directly; with rotary embeddings (relative offsets only) the same model
  learned two-digit sums several times more slowly.
- `save_checkpoint` / `load_checkpoint`: weights, model config, training
  config and step, written atomically, read with weights_only=True; `load_sft` and
  `policy_and_reference`: where alignment starts, and its frozen reference pi_ref.
"""

import copy
import math
import os
from contextlib import contextmanager, nullcontext
from dataclasses import asdict, dataclass
from pathlib import Path

import torch
import torch.nn as nn
import torch.nn.functional as F

from losses import last_token_index


@dataclass
class GPTConfig:
    vocab_size: int = 512
    block_size: int = 64      # longest sequence (prompt + completion) in tokens
    n_layer: int = 3
    n_head: int = 4
    n_embd: int = 96
    dropout: float = 0.0


class KVCache:
    """Keys and values of every layer for N rows and up to max_len positions."""

    def __init__(self, cfg: GPTConfig, n_rows: int, max_len: int):
        # (L, N, nh, T_max, hs), made at the first write in the keys' dtype (bf16 under autocast)
        self.shape = (cfg.n_layer, n_rows, cfg.n_head, max_len, cfg.n_embd // cfg.n_head)
        self.k = self.v = None
        self.length = 0                                           # positions filled so far

    def append(self, layer: int, k, v):
        """Store a layer's new keys and values (N, nh, T, hs); return all of them so far."""
        if self.k is None:
            self.k, self.v = k.new_zeros(self.shape), v.new_zeros(self.shape)
        end = self.length + k.size(2)
        self.k[layer, :, :, self.length:end] = k
        self.v[layer, :, :, self.length:end] = v
        return self.k[layer, :, :, :end], self.v[layer, :, :, :end]

    def repeat_rows(self, g: int) -> None:
        """Row i becomes rows i*g .. i*g+g-1: one prefill serves a group of g samples."""
        self.k = self.k.repeat_interleave(g, dim=1)
        self.v = self.v.repeat_interleave(g, dim=1)


class CausalSelfAttention(nn.Module):
    def __init__(self, cfg: GPTConfig, layer: int):
        super().__init__()
        self.n_head, self.layer, self.dropout = cfg.n_head, layer, cfg.dropout
        self.qkv = nn.Linear(cfg.n_embd, 3 * cfg.n_embd, bias=False)
        self.proj = nn.Linear(cfg.n_embd, cfg.n_embd, bias=False)

    def forward(self, x, attn_mask=None, cache: KVCache | None = None):
        B, T, C = x.shape
        q, k, v = self.qkv(x).split(C, dim=2)                            # (B, T, C) each
        q, k, v = (t.view(B, T, self.n_head, C // self.n_head).transpose(1, 2)
                   for t in (q, k, v))                                   # (B, nh, T, hs)
        if cache is not None:  # append this step's keys/values, attend over everything so far
            k, v = cache.append(self.layer, k, v)
        y = F.scaled_dot_product_attention(                              # (B, nh, T, hs)
            q, k, v, attn_mask=attn_mask, is_causal=attn_mask is None,
            dropout_p=self.dropout if self.training else 0.0)
        return self.proj(y.transpose(1, 2).reshape(B, T, C))            # (B, T, C)


class Block(nn.Module):
    """Pre-LayerNorm transformer block: x + attn(ln(x)), then x + mlp(ln(x))."""

    def __init__(self, cfg: GPTConfig, layer: int):
        super().__init__()
        self.ln1, self.ln2 = nn.LayerNorm(cfg.n_embd), nn.LayerNorm(cfg.n_embd)
        self.attn = CausalSelfAttention(cfg, layer)
        self.mlp = nn.Sequential(nn.Linear(cfg.n_embd, 4 * cfg.n_embd, bias=False), nn.GELU(),
                                 nn.Linear(4 * cfg.n_embd, cfg.n_embd, bias=False),
                                 nn.Dropout(cfg.dropout))

    def forward(self, x, attn_mask=None, cache=None):
        x = x + self.attn(self.ln1(x), attn_mask, cache)
        return x + self.mlp(self.ln2(x))


class GPT(nn.Module):
    HEAD = "lm"      # what the checkpoint's weights end in (ScoreModel: "score")

    def __init__(self, cfg: GPTConfig):
        super().__init__()
        self.config = cfg
        self.wte = nn.Embedding(cfg.vocab_size, cfg.n_embd)
        self.wpe = nn.Embedding(cfg.block_size, cfg.n_embd)   # learned absolute positions
        self.drop = nn.Dropout(cfg.dropout)
        self.blocks = nn.ModuleList(Block(cfg, i) for i in range(cfg.n_layer))
        self.ln_f = nn.LayerNorm(cfg.n_embd)
        self.apply(self._init_weights)
        for name, p in self.named_parameters():  # GPT-2: scale residual projections by depth
            if name.endswith("attn.proj.weight") or name.endswith("mlp.2.weight"):
                nn.init.normal_(p, std=0.02 / math.sqrt(2 * cfg.n_layer))

    @staticmethod
    def _init_weights(m):
        if isinstance(m, (nn.Linear, nn.Embedding)):
            nn.init.normal_(m.weight, std=0.02)

    def num_params(self) -> int:
        return sum(p.numel() for p in self.parameters())

    def forward(self, idx, positions=None, attn_mask=None, cache: KVCache | None = None):
        """idx (B, T) token ids -> logits (B, T, V) at every position.

        Chat rows pass idx alone (causal attention, positions 0..T-1). Packed
        pretraining windows and the sampler pass positions (B, T) and a boolean
        attn_mask (B, 1, T, T_keys), True where a query may attend to a key; the
        sampler also passes the cache.
        """
        with autocast(idx.device):
            return F.linear(self.features(idx, positions, attn_mask, cache),
                            self.wte.weight)                              # tied: (B, T, V)

    def features(self, idx, positions=None, attn_mask=None, cache: KVCache | None = None):
        """The last layer's normalised hidden states (B, T, C), before the unembedding."""
        B, T = idx.shape
        if positions is None:  # (callers that pass positions keep them below block_size)
            if T > self.config.block_size:
                raise ValueError(f"sequence of {T} tokens is longer than block_size "
                                 f"{self.config.block_size}")
            positions = torch.arange(T, device=idx.device)
        x = self.drop(self.wte(idx) + self.wpe(positions))                # (B, T, C)
        for block in self.blocks:
            x = block(x, attn_mask, cache)
        if cache is not None:
            cache.length += T
        return self.ln_f(x)


class ScoreModel(nn.Module):
    """The GPT with a scalar head in place of the unembedding: one number per position.

    The reward model is read at the last token of prompt + completion (sequence_scores);
    PPO's critic reads it at every position, as the value of the text so far (train_ppo.py).
    """
    HEAD = "score"

    def __init__(self, cfg: GPTConfig):
        super().__init__()
        self.config = cfg
        self.body = GPT(cfg)
        self.head = nn.Linear(cfg.n_embd, 1)
        # N-details (Huang et al. 2022): head weights ~ N(0, 1/sqrt(d + 1)), bias 0
        nn.init.normal_(self.head.weight, std=1 / math.sqrt(cfg.n_embd + 1))
        nn.init.zeros_(self.head.bias)

    @classmethod
    def from_gpt(cls, gpt: GPT) -> "ScoreModel":
        """A score model whose body is a copy of `gpt` (the SFT model) and whose head is new."""
        model = cls(gpt.config).to(gpt.wte.weight.device)
        model.body.load_state_dict(gpt.state_dict())
        return model

    def num_params(self) -> int:
        return sum(p.numel() for p in self.parameters())

    def forward(self, idx):
        """idx (B, T) -> scores (B, T), one per position (causal: each sees its prefix)."""
        with autocast(idx.device):
            return self.head(self.body.features(idx)).squeeze(-1)


def sequence_scores(score_model, inputs, targets, mask):
    """A ScoreModel's score of each whole row, read at its last token (the end token): (N,).
    inputs, targets, mask (N, T) as data.batching.chat_batch lays out prompt + answer rows: the
    whole row is inputs plus the last target, and mask's last 1 is the answer's last token.
    score_model may be wrapped (DDP): it is called, not looked into."""
    ids = torch.cat([inputs, targets[:, -1:]], dim=1)                     # (N, T+1): whole rows
    last = last_token_index(mask) + 1                                     # (N,) its index in ids
    return score_model(ids).float().gather(1, last[:, None]).squeeze(1)


# ------------------------------------------------------------------ LoRA

class LoRALinear(nn.Module):
    """A frozen nn.Linear plus a trainable low-rank update (LoRA, Hu et al. 2021, Eq. 3):
        h = W0 x + (alpha / r) B A x,      W0 (out, in) frozen, A (r, in), B (out, r)
    A starts as the paper's code starts it (nn.Linear's Kaiming-uniform), B at zero, so the
    layer starts exactly as W0. With `enabled` False it is W0 alone."""

    def __init__(self, base: nn.Linear, rank: int, alpha: float):
        super().__init__()
        self.base = base.requires_grad_(False)
        self.lora_A = nn.Parameter(torch.empty(rank, base.in_features, device=base.weight.device))
        self.lora_B = nn.Parameter(torch.zeros(base.out_features, rank, device=base.weight.device))
        nn.init.kaiming_uniform_(self.lora_A, a=math.sqrt(5))
        self.scale = alpha / rank
        self.enabled = True

    def forward(self, x):                                                 # x (..., in)
        y = self.base(x)                                                  # W0 x, (..., out)
        if self.enabled:
            y = y + self.scale * F.linear(F.linear(x, self.lora_A), self.lora_B)  # (a/r) B A x
        return y

    def merged_weight(self) -> torch.Tensor:
        """W0 + (alpha / r) B A: the one matrix the adapted layer computes, (out, in)."""
        return self.base.weight + self.scale * self.lora_B @ self.lora_A


LORA_TARGETS = ("attn.qkv", "attn.proj", "mlp.0", "mlp.2")   # every Linear of every block


def add_lora(model: GPT, rank: int, alpha: float, targets=LORA_TARGETS) -> GPT:
    """Freeze every weight of `model`, then put a LoRALinear around each Linear whose name
    ends with one of `targets`; only the adapters train. Returns the model (changed in place)."""
    model.requires_grad_(False)
    for name, module in list(model.named_modules()):
        if isinstance(module, nn.Linear) and name.endswith(tuple(targets)):
            parent, _, child = name.rpartition(".")
            setattr(model.get_submodule(parent), child, LoRALinear(module, rank, alpha))
    return model


@contextmanager
def adapters_off(model):
    """Inside, every LoRA layer of `model` computes W0 x alone: the base model, the reference."""
    layers = [m for m in model.modules() if isinstance(m, LoRALinear)]
    previous = [m.enabled for m in layers]
    for m in layers:
        m.enabled = False
    try:
        yield model
    finally:
        for m, enabled in zip(layers, previous):
            m.enabled = enabled


class AdaptersOff(nn.Module):
    """The reference of a LoRA policy: the policy itself, called with its adapters off. It
    holds no weights of its own (the policy is not a submodule, so nothing is copied and
    .eval() here leaves the policy's mode alone)."""

    def __init__(self, model: GPT):
        super().__init__()
        object.__setattr__(self, "model", model)
        self.config = model.config

    @property
    def wte(self):                           # the sampler reads the device from it
        return self.model.wte

    def parameters(self, recurse: bool = True):
        return self.model.parameters(recurse)

    def num_params(self) -> int:
        return 0                             # none of its own

    def forward(self, *args, **kwargs):
        with adapters_off(self.model):
            return self.model(*args, **kwargs)


def policy_and_reference(model: GPT, lora_rank: int = 0, lora_alpha: float = 16.0,
                         lora_targets=LORA_TARGETS, reference: bool = True):
    """(policy, reference) from one loaded model, the SFT one: the model itself to train and a
    frozen copy of it as pi_ref; or, with lora_rank r > 0, the model with rank-r adapters on
    lora_targets (only they train) and, as pi_ref, the same model with its adapters off (no
    copy). reference=False (a loss that reads no reference): None in its place. Prints what
    trains."""
    if lora_rank:
        add_lora(model, lora_rank, lora_alpha, lora_targets)
    trainable, total = (sum(p.numel() for p in model.parameters() if p.requires_grad),
                        model.num_params())
    if not trainable:
        raise ValueError(f"--lora_targets {','.join(lora_targets)}: no Linear layer has such a "
                         "name")
    what = f"LoRA rank {lora_rank}, alpha {lora_alpha}" if lora_rank else "full fine-tuning"
    ref = "no reference model while training" if not reference else "as the reference, the " \
        "same model with its adapters off" if lora_rank else "a frozen copy as the reference"
    print(f"{what}: {trainable:,} trainable parameters of {total:,} ({trainable / total:.1%}); "
          f"{ref}")
    if not reference:
        return model, None
    if lora_rank:
        return model, AdaptersOff(model).eval()
    return model, copy.deepcopy(model).eval().requires_grad_(False)


def merged(model: GPT) -> GPT:
    """A plain GPT whose Linear weights are the LoRA layers' merged weights: what a checkpoint
    holds, so it loads as any other. A model without adapters is returned as it is."""
    if not any(isinstance(m, LoRALinear) for m in model.modules()):
        return model
    out = GPT(model.config).to(model.wte.weight.device)
    state = {}
    for name, tensor in model.state_dict().items():
        if ".lora_" in name:
            continue
        state[name.replace(".base.", ".")] = tensor
    for name, module in model.named_modules():
        if isinstance(module, LoRALinear):
            state[f"{name}.weight"] = module.merged_weight().detach()
    out.load_state_dict(state)
    return out


# ------------------------------------------------------------------ sampling

def _pick(logits, u, temperature: float, top_k: int | None):
    """Next tokens (N,) from last-position logits (N, V) and one uniform per row u (N,).

    Inverse-CDF sampling with pre-drawn uniforms, so the cached and the naive
    sampler consume randomness identically and can be compared token for token.
    temperature == 0 is greedy.
    """
    if temperature == 0:
        return logits.argmax(-1)
    logits = logits.float() / temperature
    if top_k is not None and top_k < logits.size(-1):
        kth = logits.topk(top_k, dim=-1).values[:, -1:]                 # (N, 1)
        logits = logits.masked_fill(logits < kth, float("-inf"))
    cdf = logits.softmax(-1).cumsum(-1)                                  # (N, V)
    u = u.to(cdf.dtype).reshape(-1, 1).contiguous()                       # (N, 1)
    return torch.searchsorted(cdf, u).squeeze(1).clamp_max(cdf.size(-1) - 1)


def _uniforms(n_rows, max_new_tokens, generator, device):
    return torch.rand(n_rows, max_new_tokens, generator=generator).to(device)  # (N, T_new)


@torch.no_grad()
def sample(model: GPT, prompts: list[list[int]], *, max_new_tokens: int, end_id: int,
           temperature: float = 1.0, top_k: int | None = None, num_samples: int = 1,
           generator: torch.Generator | None = None):
    """Sample num_samples completions for each prompt with a KV cache.

    prompts: B lists of token ids, any lengths. Returns
        tokens (B*G, T_new) long: row i*G+g is sample g of prompt i, padded with end_id
        mask   (B*G, T_new) bool: True on sampled tokens, up to and including the first end_id
    """
    device, G, B = model.wte.weight.device, num_samples, len(prompts)
    P = max(len(p) for p in prompts)
    if P + max_new_tokens > model.config.block_size:
        raise ValueError(f"prompt ({P}) + max_new_tokens ({max_new_tokens}) exceeds "
                         f"block_size {model.config.block_size}")
    # Left-pad so every prompt ends at column P-1; padding is hidden by the mask
    # and positions count from each prompt's own first token.
    pad = torch.tensor([P - len(p) for p in prompts], device=device)                 # (B,)
    idx = torch.full((B, P), end_id, dtype=torch.long, device=device)
    for i, p in enumerate(prompts):
        idx[i, P - len(p):] = torch.tensor(p, dtype=torch.long)
    cols = torch.arange(P, device=device)
    valid = cols[None, :] >= pad[:, None]                                            # (B, P)
    positions = (cols[None, :] - pad[:, None]).clamp_min(0)                          # (B, P)
    causal = torch.ones(P, P, dtype=torch.bool, device=device).tril()
    # A query sees earlier real tokens, and itself (so padding rows are not all -inf).
    prefill_mask = causal & (valid[:, None, :] | torch.eye(P, dtype=torch.bool, device=device))

    cache = KVCache(model.config, B, P + max_new_tokens)
    logits = model(idx, positions, prefill_mask[:, None], cache)[:, -1]              # (B, V)

    cache.repeat_rows(G)                                                             # N = B*G rows
    logits, valid = logits.repeat_interleave(G, 0), valid.repeat_interleave(G, 0)
    next_pos = positions[:, -1].repeat_interleave(G) + 1                             # (N,)
    u = _uniforms(B * G, max_new_tokens, generator, device)
    tokens = torch.full((B * G, max_new_tokens), end_id, dtype=torch.long, device=device)
    mask = torch.zeros(B * G, max_new_tokens, dtype=torch.bool, device=device)
    done = torch.zeros(B * G, dtype=torch.bool, device=device)
    for t in range(max_new_tokens):
        nxt = _pick(logits, u[:, t], temperature, top_k).masked_fill(done, end_id)  # (N,)
        tokens[:, t], mask[:, t] = nxt, ~done
        done = done | (nxt == end_id)
        if t == max_new_tokens - 1 or bool(done.all()):
            return tokens[:, :t + 1], mask[:, :t + 1]
        valid = torch.cat([valid, torch.ones_like(done)[:, None]], dim=1)           # (N, P+t+1)
        logits = model(nxt[:, None], (next_pos + t)[:, None], valid[:, None, None, :],
                       cache)[:, -1]


@torch.no_grad()
def sample_naive(model: GPT, prompts: list[list[int]], *, max_new_tokens: int, end_id: int,
                 temperature: float = 1.0, top_k: int | None = None, num_samples: int = 1,
                 generator: torch.Generator | None = None):
    """Reference for `sample`: one row at a time, the full forward at every step, no cache."""
    device, G = model.wte.weight.device, num_samples
    u = _uniforms(len(prompts) * G, max_new_tokens, generator, device)
    rows = []
    for r in range(len(prompts) * G):
        seq, out = list(prompts[r // G]), []
        while len(out) < max_new_tokens and (not out or out[-1] != end_id):
            logits = model(torch.tensor([seq], device=device))[:, -1]               # (1, V)
            out.append(int(_pick(logits, u[r, len(out)][None], temperature, top_k)))
            seq.append(out[-1])
        rows.append(out)
    width = max(len(o) for o in rows)
    tokens = torch.full((len(rows), width), end_id, dtype=torch.long, device=device)
    mask = torch.zeros(len(rows), width, dtype=torch.bool, device=device)
    for r, out in enumerate(rows):
        tokens[r, :len(out)], mask[r, :len(out)] = torch.tensor(out), True
    return tokens, mask


# ------------------------------------------------------------------ devices

def get_device(name: str = "auto") -> torch.device:
    """cuda, then mps, then cpu; or the device named, if it is available."""
    if name == "auto":
        name = "cuda" if torch.cuda.is_available() else \
            "mps" if torch.backends.mps.is_available() else "cpu"
    available = {"cpu": True, "cuda": torch.cuda.is_available(),
                 "mps": torch.backends.mps.is_available()}
    if not available.get(name.split(":")[0], False):
        raise ValueError(f"--device {name} is not available on this machine "
                         f"(available: {', '.join(k for k, v in available.items() if v)})")
    return torch.device(name)


def autocast(device: torch.device):
    """bf16 autocast on CUDA; plain fp32 elsewhere."""
    if device.type == "cuda":
        return torch.autocast("cuda", dtype=torch.bfloat16)
    return nullcontext()


# ------------------------------------------------------------------ checkpoints

def save_checkpoint(path, model: GPT, train_config: dict, step: int, **extra) -> None:
    """Write atomically: a temp file in the same folder, renamed over the old one."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    state = {"model": model.state_dict(), "model_config": asdict(model.config),
             "head": getattr(model, "HEAD", GPT.HEAD), "train_config": train_config,
             "step": step, **extra}
    tmp = path.with_name(path.name + ".tmp")
    try:
        torch.save(state, tmp)
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)       # only left behind when saving failed


class CheckpointError(ValueError):
    """A checkpoint that is missing, unreadable or does not fit; the message names the file."""


def first_line(e: Exception) -> str:
    """An exception as one short line for an error message: its type and first line."""
    lines = str(e).strip().splitlines()
    return f"{type(e).__name__}: {lines[0][:200] if lines else ''}"


# the script that writes each checkpoint a script reads by default
MAKES = {"sft.pt": "train_sft.py", "pretrain.pt": "train_sft.py --stage pretrain",
         "rm.pt": "train_rm.py"}


def how_to_make(path: Path) -> str:
    """For a checkpoint that is not there: a close name beside it ("did you mean"), and for
    one a script makes, the command that makes it in that folder."""
    import difflib
    near = difflib.get_close_matches(path.name, [p.name for p in path.parent.glob("*.pt")]
                                     if path.parent.is_dir() else [], n=1, cutoff=0.6)
    hint = f"; did you mean {path.parent / near[0]}?" if near else ""
    if path.name in MAKES:
        hint += (f"; make it with `python {MAKES[path.name]} --out_dir {path.parent}`, or "
                 "start from one elsewhere with --init_from (e.g. out/sft.pt)")
    return hint


def read_checkpoint(path, device="cpu") -> dict:
    """The checkpoint dict, read with weights_only=True, or a CheckpointError saying why not."""
    path = Path(path)
    if path.is_dir():
        raise CheckpointError(f"{path}: is a folder, not a checkpoint file")
    if not path.is_file():
        raise CheckpointError(f"{path}: no such checkpoint{how_to_make(path)}")
    try:
        ckpt = torch.load(path, map_location=device, weights_only=True)
    except Exception as e:  # truncated, not a torch file, or a pickle weights_only refuses
        raise CheckpointError(f"{path}: not a readable checkpoint ({first_line(e)})") from None
    if not isinstance(ckpt, dict) or not {"model", "model_config"} <= set(ckpt):
        raise CheckpointError(f"{path}: not a checkpoint of this project "
                              "(no 'model' and 'model_config' entries)")
    return ckpt


def load_sft(path, device, allow_pretrained: bool = False) -> GPT:
    """The SFT model that alignment starts from (and copies as its reference). A pretraining
    checkpoint is refused unless allow_pretrained (to see what skipping SFT does); another
    stage's is loaded with a warning."""
    model, ckpt = load_checkpoint(path, device)
    if ckpt.get("stage") == "pretrain" and not allow_pretrained:
        raise CheckpointError(f"{path} is a pretraining checkpoint; alignment starts from an SFT "
                              f"one (train_sft.py writes {Path(path).with_name('sft.pt')}; "
                              "--allow_pretrained starts from it anyway)")
    if ckpt.get("stage") != "sft":
        print(f"warning: {path} is a '{ckpt.get('stage')}' checkpoint, not SFT; alignment "
              "expects an SFT model as its start and its reference")
    return model


def load_checkpoint(path, device="cpu", cls=GPT) -> tuple[GPT, dict]:
    """(model, checkpoint dict); the checkpoint is read with weights_only=True. cls is GPT
    (a language model) or ScoreModel (a reward model), and must be what the file holds."""
    ckpt = read_checkpoint(path, device)
    head = ckpt.get("head", GPT.HEAD)
    if head != cls.HEAD:
        kinds = {GPT.HEAD: "a language model", ScoreModel.HEAD: "a reward model (a scalar head)"}
        raise CheckpointError(f"{path}: holds {kinds.get(head, head)}, where "
                              f"{kinds[cls.HEAD]} is needed")
    try:
        model = cls(GPTConfig(**ckpt["model_config"])).to(device)
        model.load_state_dict(ckpt["model"])
    except (TypeError, RuntimeError) as e:
        raise CheckpointError(f"{path}: the weights do not fit the model config it holds "
                              f"({first_line(e)})") from None
    return model, ckpt
