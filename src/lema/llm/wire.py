"""The typed records of one OpenAI-compatible exchange: what is asked (``Request``), what came back
(``Response``) and what it cost (``Usage``, summable across shards)."""

from __future__ import annotations

from collections import Counter
from typing import Literal

from pydantic import BaseModel, ConfigDict

from lema.llm.cache import ResponseCache

# Chat framing (role markers, separators) around a message; generous on purpose: the bound must never be low.
CHAT_OVERHEAD_TOKENS = 16


class Usage(BaseModel):
    """What one run (or shard) sent, got and paid; ``a + b`` merges shards exactly."""

    model_config = ConfigDict(extra="forbid")

    requests: int = 0            # HTTP requests sent (retries included)
    succeeded: int = 0           # successful responses (paid)
    cache_hits: int = 0
    deduplicated: int = 0        # identical requests that waited for one in flight instead of sending
    prompt_tokens: int = 0
    completion_tokens: int = 0
    cost_usd: float = 0.0
    retries: int = 0
    saved_by_hybrid: int = 0
    batches_submitted: int = 0
    not_sent_for_budget: int = 0  # requests the budget kept back
    errors: dict[str, int] = {}

    def __add__(self, other: Usage) -> Usage:
        if not isinstance(other, Usage):
            return NotImplemented
        numbers = {name: getattr(self, name) + getattr(other, name)
                   for name in type(self).model_fields if name != "errors"}
        errors = Counter(self.errors) + Counter(other.errors)
        return Usage(**numbers, errors=dict(sorted(errors.items())))

    def __radd__(self, other) -> Usage:
        return self if other == 0 else self.__add__(other)  # so that sum(usages) works

    @classmethod
    def total(cls, usages) -> Usage:
        return sum(usages, cls())

    @property
    def total_tokens(self) -> int:
        return self.prompt_tokens + self.completion_tokens

    def as_dict(self) -> dict:
        return self.model_dump()

    def error(self, kind: str) -> None:
        self.errors[kind] = self.errors.get(kind, 0) + 1


class Request(BaseModel):
    """One completion request; its cache key covers everything that shapes the answer."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    api: Literal["chat", "completions"] = "chat"
    model: str
    prompt: str
    temperature: float = 1.0
    top_p: float = 1.0
    max_tokens: int
    n: int = 1
    stop: tuple[str, ...] = ()
    seed: int | None = None
    attempt: int = 0  # distinguishes repeated samples of one prompt in the cache; never sent

    @property
    def path(self) -> str:
        return "/chat/completions" if self.api == "chat" else "/completions"

    @property
    def endpoint(self) -> str:
        return "/v1" + self.path

    def body(self) -> dict:
        out = {"model": self.model, "temperature": self.temperature, "top_p": self.top_p,
               "max_tokens": self.max_tokens}
        if self.n != 1:
            out["n"] = self.n
        if self.stop:
            out["stop"] = list(self.stop)
        if self.seed is not None:
            out["seed"] = self.seed
        if self.api == "chat":
            return out | {"messages": [{"role": "user", "content": self.prompt}]}
        return out | {"prompt": self.prompt}

    def cache_key(self) -> str:
        # The fields of the first cache format, plus the newer ones only where they differ from the
        # default, so that caches written by earlier versions of the corrector stay valid.
        payload = {"model": self.model, "api": self.api, "prompt": self.prompt, "temperature": self.temperature,
                   "top_p": self.top_p, "max_tokens": self.max_tokens, "attempt": self.attempt}
        if self.n != 1:
            payload["n"] = self.n
        if self.stop:
            payload["stop"] = list(self.stop)
        if self.seed is not None:
            payload["seed"] = self.seed
        return ResponseCache.key(payload)

    def prompt_token_bound(self) -> int:
        """Most tokens the prompt can be billed for, without the model's tokenizer: byte-level BPE
        never needs more tokens than UTF-8 bytes."""
        return len(self.prompt.encode("utf-8")) + (CHAT_OVERHEAD_TOKENS if self.api == "chat" else 2)


class Response(BaseModel):
    texts: list[str]
    prompt_tokens: int = 0
    completion_tokens: int = 0

    @property
    def text(self) -> str:
        return self.texts[0] if self.texts else ""

    @classmethod
    def from_body(cls, body: dict, api: str) -> Response:
        choices = sorted(body["choices"], key=lambda c: c.get("index", 0))
        texts = [(c["message"]["content"] if api == "chat" else c["text"]) or "" for c in choices]
        usage = body.get("usage") or {}
        return cls(texts=texts, prompt_tokens=usage.get("prompt_tokens") or 0,
                   completion_tokens=usage.get("completion_tokens") or 0)

    def to_cache(self, discount: float = 1.0) -> dict:
        return {"text": self.text, "texts": self.texts, "discount": discount,
                "usage": {"prompt_tokens": self.prompt_tokens, "completion_tokens": self.completion_tokens}}

    @classmethod
    def from_cache(cls, entry: dict) -> Response:
        usage = entry.get("usage") or {}
        return cls(texts=entry.get("texts") or [entry.get("text") or ""], prompt_tokens=usage.get("prompt_tokens", 0),
                   completion_tokens=usage.get("completion_tokens", 0))
