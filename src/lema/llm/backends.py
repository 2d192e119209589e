"""Text generation behind one interface: vLLM offline engine (default),
any OpenAI-compatible HTTP endpoint, or plain ``transformers`` as fallback.

Stages only see ``Backend.generate(prompts, sampling)`` so swapping a tiny CPU
model for a 70B model behind ``vllm serve`` is a config change.
"""

from __future__ import annotations

import gc
import os
from dataclasses import asdict, dataclass, field
from typing import Protocol

# vLLM's engine-core subprocess buys nothing for offline batch work here and
# makes engines awkward to start from tests and KFP components.
os.environ.setdefault("VLLM_ENABLE_V1_MULTIPROCESSING", "0")


@dataclass(frozen=True)
class Sampling:
    n: int = 1
    temperature: float = 0.0
    top_p: float = 1.0
    max_tokens: int = 256
    stop: tuple[str, ...] = ()
    seed: int = 0

    def as_dict(self) -> dict:
        return asdict(self) | {"stop": list(self.stop)}


@dataclass
class Completion:
    text: str
    n_tokens: int


@dataclass
class GenerationStats:
    prompts: int = 0
    completions: int = 0
    tokens: int = 0
    extra: dict = field(default_factory=dict)


class Backend(Protocol):
    name: str

    def generate(self, prompts: list[str], sampling: Sampling,
                 seeds: list[int] | None = None) -> list[list[Completion]]:
        """n completions per prompt, in prompt order; `seeds` (one per prompt) make each prompt's samples
        independent of the batch it is in."""
        ...

    def close(self) -> None: ...


class VLLMBackend:
    """vLLM offline engine: the engine seed, or one sampling seed per prompt when given."""

    name = "vllm"

    def __init__(self, model: str, seed: int = 0, gpu_memory_utilization: float = 0.2,
                 dtype: str = "auto", max_model_len: int | None = None, enforce_eager: bool = True,
                 kv_cache_gib: float | None = 1.0):
        from vllm import LLM

        self.model = model
        extra = {"kv_cache_memory_bytes": int(kv_cache_gib * 2**30)} if kv_cache_gib else {}
        from vllm.platforms import current_platform

        if current_platform.is_cpu():
            # Per-prompt seeds: the CPU sampler cannot rewind a generator after a partial (chunked) prefill.
            extra |= {"enable_chunked_prefill": False, "max_num_batched_tokens": max(8192, max_model_len or 0)}
        self.llm = LLM(model=model, seed=seed, gpu_memory_utilization=gpu_memory_utilization, dtype=dtype,
                       max_model_len=max_model_len, enforce_eager=enforce_eager, **extra)

    def generate(self, prompts: list[str], sampling: Sampling,
                 seeds: list[int] | None = None) -> list[list[Completion]]:
        from vllm import SamplingParams

        def params(seed: int | None):
            return SamplingParams(n=sampling.n, temperature=sampling.temperature,
                                  top_p=sampling.top_p if sampling.temperature > 0 else 1.0,
                                  max_tokens=sampling.max_tokens, stop=list(sampling.stop) or None, seed=seed)

        per_prompt = [params(s) for s in seeds] if seeds is not None else params(None)
        outs = self.llm.generate(prompts, per_prompt, use_tqdm=True)
        return [[Completion(c.text, len(c.token_ids)) for c in o.outputs] for o in outs]

    def close(self) -> None:
        del self.llm
        gc.collect()


class TransformersBackend:
    """Batched ``model.generate``: slow, but needs nothing beyond transformers."""

    name = "transformers"

    def __init__(self, model: str, seed: int = 0, batch_size: int = 32, device: str | None = None):
        import torch
        from transformers import AutoModelForCausalLM, AutoTokenizer

        self.model_name = model
        self.tok = AutoTokenizer.from_pretrained(model)
        self.tok.padding_side = "left"
        if self.tok.pad_token is None:
            self.tok.pad_token = self.tok.eos_token
        self.device = device or ("cuda" if torch.cuda.is_available() else "cpu")
        self.model = AutoModelForCausalLM.from_pretrained(model).to(self.device).eval()
        self.batch_size = batch_size
        self.seed = seed

    def generate(self, prompts: list[str], sampling: Sampling,
                 seeds: list[int] | None = None) -> list[list[Completion]]:
        if seeds is not None:  # one prompt at a time, each under its own seed
            return [self._generate([p], sampling, s)[0] for p, s in zip(prompts, seeds, strict=True)]
        return self._generate(prompts, sampling, self.seed)

    def _generate(self, prompts: list[str], sampling: Sampling, seed: int) -> list[list[Completion]]:
        import torch
        from tqdm.auto import tqdm

        torch.manual_seed(seed)
        results: list[list[Completion]] = []
        for start in tqdm(range(0, len(prompts), self.batch_size), desc="transformers.generate"):
            batch = prompts[start : start + self.batch_size]
            enc = self.tok(batch, return_tensors="pt", padding=True, add_special_tokens=False).to(self.device)
            kwargs = dict(max_new_tokens=sampling.max_tokens, num_return_sequences=sampling.n,
                          pad_token_id=self.tok.pad_token_id, eos_token_id=self.tok.eos_token_id)
            if sampling.temperature > 0:
                kwargs |= dict(do_sample=True, temperature=sampling.temperature, top_p=sampling.top_p)
            else:
                kwargs |= dict(do_sample=False)
            if sampling.stop:
                kwargs |= dict(stop_strings=list(sampling.stop), tokenizer=self.tok)
            with torch.no_grad():
                out = self.model.generate(**enc, **kwargs)
            new = out[:, enc["input_ids"].shape[1] :]
            for i in range(len(batch)):
                comps = []
                for j in range(sampling.n):
                    ids = new[i * sampling.n + j]
                    ids = ids[ids != self.tok.pad_token_id]
                    text = self.tok.decode(ids, skip_special_tokens=True)
                    comps.append(Completion(_cut_at_stop(text, sampling.stop), int(len(ids))))
                results.append(comps)
        return results

    def close(self) -> None:
        del self.model
        gc.collect()


def _cut_at_stop(text: str, stop: tuple[str, ...]) -> str:
    cut = len(text)
    for s in stop:
        i = text.find(s)
        if i >= 0:
            cut = min(cut, i)
    return text[:cut]


class OpenAIBackend:
    """Completions API of any OpenAI-compatible server (``vllm serve``, hosted APIs), through the transport
    the LLM corrector uses (retries with backoff and Retry-After, in-flight de-duplication, usage accounting).

    The key comes from OPENAI_API_KEY only; it is never stored on the object's repr or logged.
    """

    name = "openai"

    def __init__(self, model: str, base_url: str | None = None, concurrency: int = 16, timeout: float = 120.0,
                 max_retries: int = 5):
        from lema.llm.transport import OpenAITransport

        self.model = model
        self.transport = OpenAITransport(base_url=base_url, timeout_s=timeout, max_retries=max_retries,
                                         backoff_base_s=0.5, backoff_max_s=30.0, concurrency=concurrency)

    @property
    def usage(self):
        return self.transport.usage

    def generate(self, prompts: list[str], sampling: Sampling,
                 seeds: list[int] | None = None) -> list[list[Completion]]:
        from lema.llm.wire import Request

        seeds = seeds or [sampling.seed] * len(prompts)
        requests = [Request(api="completions", model=self.model, prompt=p, n=sampling.n,
                            temperature=sampling.temperature, top_p=sampling.top_p, max_tokens=sampling.max_tokens,
                            stop=tuple(sampling.stop), seed=seed) for p, seed in zip(prompts, seeds, strict=True)]
        responses = self.transport.complete_many(requests, desc=f"openai:{self.model}")
        out = []
        for resp in responses:
            per_choice = resp.completion_tokens // max(1, len(resp.texts))
            out.append([Completion(t, per_choice) for t in resp.texts])
        return out

    def close(self) -> None:
        pass


def make_backend(kind: str, model: str, *, seed: int = 0, base_url: str | None = None,
                 vllm_options: dict | None = None) -> Backend:
    if kind == "vllm":
        return VLLMBackend(model, seed=seed, **(vllm_options or {}))
    if kind == "transformers":
        return TransformersBackend(model, seed=seed)
    if kind == "openai":
        return OpenAIBackend(model, base_url=base_url)
    raise ValueError(f"unknown backend {kind!r} (expected vllm, openai or transformers)")
