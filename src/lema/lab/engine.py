"""The lab's model, training loop and decoding: a tiny Llama (transformers) and a plain torch loop.

A small loop of our own rather than `lema.stages.train.train`: every arm must see exactly the same
optimiser settings and schedule, the loss only on completion tokens, and it must run
with nothing but torch + transformers (the GPU box has no TRL).
"""

from __future__ import annotations

import math
import random
from dataclasses import dataclass

from lema.lab.tokenizer import WordTokenizer


@dataclass(frozen=True)
class ModelSpec:
    hidden_size: int = 192
    num_layers: int = 4
    num_heads: int = 3
    intermediate_size: int = 768
    max_length: int = 320


@dataclass(frozen=True)
class TrainSpec:
    epochs: float = 2.0
    learning_rate: float = 1e-3
    batch_size: int = 32
    warmup_ratio: float = 0.05
    weight_decay: float = 0.0
    max_grad_norm: float = 1.0


@dataclass(frozen=True)
class Example:
    """One training sequence: the loss sees only the completion."""
    prompt: str
    completion: str
    kind: str = "cot"


def new_model(spec: ModelSpec, tok: WordTokenizer, seed: int):
    """Fresh weights, a function of the seed only (so every arm of a seed starts from the same weights)."""
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    torch.manual_seed(seed)
    cfg = LlamaConfig(vocab_size=len(tok), hidden_size=spec.hidden_size, intermediate_size=spec.intermediate_size,
                      num_hidden_layers=spec.num_layers, num_attention_heads=spec.num_heads,
                      num_key_value_heads=spec.num_heads, max_position_embeddings=spec.max_length,
                      pad_token_id=tok.pad_id, bos_token_id=tok.eos_id, eos_token_id=tok.eos_id,
                      tie_word_embeddings=True)
    return LlamaForCausalLM(cfg)


def completion_tokens(examples: list[Example], tok: WordTokenizer) -> int:
    """Trained tokens (the completion and its end-of-sequence token): what token matching counts."""
    return sum(tok.count(e.completion) + 1 for e in examples)


def train(model, examples: list[Example], tok: WordTokenizer, spec: TrainSpec, seed: int, device: str,
          max_length: int, log=None) -> dict:
    """AdamW, linear warm-up then cosine decay, loss on completion tokens; the same for every arm."""
    import torch

    if not examples:
        raise ValueError("no training examples")
    encoded = []
    for e in examples:
        p, c = tok.encode(e.prompt), tok.encode(e.completion) + [tok.eos_id]
        ids = (p + c)[:max_length]
        encoded.append((ids, len(p)))
    rng = random.Random(seed)
    order: list[int] = []
    full, frac = int(spec.epochs), spec.epochs - int(spec.epochs)
    for _ in range(full):
        perm = list(range(len(encoded)))
        rng.shuffle(perm)
        order += perm
    if frac:
        perm = list(range(len(encoded)))
        rng.shuffle(perm)
        order += perm[: int(frac * len(perm))]
    batches = [order[i: i + spec.batch_size] for i in range(0, len(order), spec.batch_size)]
    total = len(batches)
    warm = max(1, int(spec.warmup_ratio * total))
    model.to(device).train()
    opt = torch.optim.AdamW(model.parameters(), lr=spec.learning_rate, weight_decay=spec.weight_decay)
    sched = torch.optim.lr_scheduler.LambdaLR(
        opt, lambda s: (s + 1) / warm if s < warm
        else 0.5 * (1 + math.cos(math.pi * (s - warm) / max(1, total - warm))))
    torch.manual_seed(seed)
    losses = []
    for step, batch in enumerate(batches):
        width = max(len(encoded[i][0]) for i in batch)
        ids = torch.full((len(batch), width), tok.pad_id, dtype=torch.long)
        labels = torch.full((len(batch), width), -100, dtype=torch.long)
        mask = torch.zeros((len(batch), width), dtype=torch.long)
        for row, i in enumerate(batch):
            seq, plen = encoded[i]
            ids[row, : len(seq)] = torch.tensor(seq)
            labels[row, plen: len(seq)] = torch.tensor(seq[plen:])
            mask[row, : len(seq)] = 1
        out = model(input_ids=ids.to(device), attention_mask=mask.to(device), labels=labels.to(device))
        out.loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), spec.max_grad_norm)
        opt.step()
        sched.step()
        opt.zero_grad(set_to_none=True)
        losses.append(out.loss.item())
        if log and (step + 1) % 200 == 0:
            log(f"step {step + 1}/{total} loss {sum(losses[-50:]) / len(losses[-50:]):.3f}")
    model.eval()
    return {"steps": total, "examples": len(examples), "final_loss": sum(losses[-20:]) / len(losses[-20:])}


def complete(model, prompts: list[str], tok: WordTokenizer, device: str, max_new_tokens: int,
             temperature: float = 0.0, seed: int = 0, batch_size: int = 256) -> list[str]:
    """Greedy (temperature 0) or plain temperature sampling, batched with left padding."""
    import torch

    model.to(device).eval()
    torch.manual_seed(seed)
    out: list[str] = []
    for start in range(0, len(prompts), batch_size):
        chunk = [tok.encode(p) for p in prompts[start: start + batch_size]]
        width = max(len(c) for c in chunk)
        ids = torch.full((len(chunk), width), tok.pad_id, dtype=torch.long)
        mask = torch.zeros((len(chunk), width), dtype=torch.long)
        for row, c in enumerate(chunk):
            ids[row, width - len(c):] = torch.tensor(c)
            mask[row, width - len(c):] = 1
        kw = dict(do_sample=True, temperature=temperature, top_k=0, top_p=1.0) if temperature > 0 else \
            dict(do_sample=False)
        with torch.no_grad():
            gen = model.generate(input_ids=ids.to(device), attention_mask=mask.to(device),
                                 max_new_tokens=max_new_tokens, eos_token_id=tok.eos_id, pad_token_id=tok.pad_id,
                                 **kw)
        for row in gen[:, width:].tolist():
            out.append(tok.decode(row))
    return out
