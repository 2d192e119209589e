"""LLM corrector: a GPT-4-class model behind any OpenAI-compatible endpoint.

Built so that paid calls are never made twice and never lost:
- every successful response is stored in a content-addressed cache (key = model,
  full prompt, sampling params, attempt index) atomically as it arrives, so a
  crashed or repeated run resumes without re-sending anything that succeeded;
- retries with exponential backoff and jitter on 429/5xx/connection errors/
  timeouts/unreadable bodies, honouring Retry-After;
- token and cost accounting with a budget cap that stops cleanly;
- n attempts per wrong path, keeping the first that validates;
- hybrid mode: arithmetic slips go to the free reference corrector.
The API key is read from OPENAI_API_KEY by the SDK and never stored or logged.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import os
import random
from dataclasses import dataclass, field
from pathlib import Path

from .answers import answers_equal, extract_answer
from .config import CorrectorConfig
from .correct import Outcome, ReferenceCorrector, parse_correction, render_correction
from .prompts import load_prompt
from .records import Correction, WrongPath
from .steps import format_steps, split_steps

RETRYABLE_STATUS = {408, 409, 429, 500, 502, 503, 504}


class BudgetExceeded(RuntimeError):
    pass


@dataclass
class Usage:
    requests: int = 0          # HTTP requests sent (retries included)
    succeeded: int = 0         # successful responses (paid)
    cache_hits: int = 0
    prompt_tokens: int = 0
    completion_tokens: int = 0
    cost_usd: float = 0.0
    retries: int = 0
    saved_by_hybrid: int = 0
    errors: dict[str, int] = field(default_factory=dict)

    def as_dict(self) -> dict:
        return {k: v for k, v in self.__dict__.items()}


class ResponseCache:
    """One JSON file per successful response, named by the hash of what was asked."""

    def __init__(self, root: str | Path):
        self.root = Path(root)
        self.root.mkdir(parents=True, exist_ok=True)
        self._dirs: set[str] = set()

    @staticmethod
    def key(payload: dict) -> str:
        return hashlib.sha256(json.dumps(payload, sort_keys=True, ensure_ascii=False).encode()).hexdigest()

    def _path(self, key: str) -> Path:
        return self.root / key[:2] / f"{key}.json"

    def get(self, key: str) -> dict | None:
        p = self._path(key)
        if not p.exists():
            return None
        try:
            return json.loads(p.read_text(encoding="utf-8"))
        except json.JSONDecodeError:  # a torn write cannot happen (atomic rename), but never trust a file blindly
            return None

    def put(self, key: str, value: dict) -> None:
        p = self._path(key)
        if key[:2] not in self._dirs:
            p.parent.mkdir(parents=True, exist_ok=True)
            self._dirs.add(key[:2])
        # Write-then-rename: a killed process leaves either the whole entry or none.  (No fsync: that
        # would guard against power loss at a large cost per response; a lost entry is only re-bought.)
        tmp = p.with_name(f".{key}.{os.getpid()}.tmp")
        tmp.write_text(json.dumps(value, ensure_ascii=False), encoding="utf-8")
        os.replace(tmp, p)


def check_correction(text: str, wp: WrongPath) -> tuple[Correction | None, list[str]]:
    """Parse an LLM answer; return the correction or the reasons it is unusable."""
    parsed = parse_correction(text)
    n_steps = len(split_steps(wp.path))
    reasons = []
    if parsed.incorrect_step is None:
        reasons.append("no 'Incorrect Step' part")
    elif not 1 <= parsed.incorrect_step <= max(n_steps, 1):
        reasons.append(f"incorrect step {parsed.incorrect_step} outside the path's {n_steps} steps")
    if not parsed.explanation:
        reasons.append("no 'Explanation' part")
    if not parsed.corrected_solution:
        reasons.append("no 'Correct Solution' part")
    pred = extract_answer(parsed.corrected_solution, wp.task) if parsed.corrected_solution else None
    if parsed.corrected_solution and not answers_equal(pred, wp.gold_answer, wp.task):
        reasons.append(f"final answer {pred!r} does not equal gold {wp.gold_answer!r}")
    if reasons:
        return None, reasons
    return Correction(**wp.model_dump(), incorrect_step=parsed.incorrect_step, explanation=parsed.explanation,
                      corrected_solution=parsed.corrected_solution, final_answer=wp.gold_answer,
                      correction=render_correction(parsed.incorrect_step, parsed.explanation,
                                                   parsed.corrected_solution), corrector="llm"), []


class LLMCorrector:
    def __init__(self, cfg: CorrectorConfig, cache_dir: str | Path, hybrid: bool = False):
        if not cfg.model:
            raise ValueError("corrector.model is required for the llm corrector (e.g. gpt-4o)")
        self.cfg = cfg
        self.hybrid = hybrid
        self.name = "hybrid" if hybrid else "llm"
        self.cache = ResponseCache(cache_dir)
        self.prompt = load_prompt("correction")
        self.prompt_hash = self.prompt.hash(cfg.shots)
        self.usage = Usage()
        self.reference = ReferenceCorrector()
        self.price = cfg.prices.get(cfg.model)
        self.stopped: str | None = None
        self._inflight: dict[str, asyncio.Lock] = {}

    # -- prompt and request --------------------------------------------------
    def render(self, wp: WrongPath) -> str:
        steps = split_steps(wp.path)
        path = format_steps(steps) if steps else wp.path
        return self.prompt.render(shots=self.cfg.shots, question=wp.question, gold_answer=wp.gold_answer, path=path)

    def request_payload(self, prompt: str, attempt: int) -> dict:
        c = self.cfg
        return {"model": c.model, "api": c.api, "prompt": prompt, "temperature": c.temperature, "top_p": c.top_p,
                "max_tokens": c.max_tokens, "attempt": attempt}

    def _check_budget(self) -> None:
        b = self.cfg.budget
        u = self.usage
        if b.max_requests is not None and u.succeeded >= b.max_requests:
            raise BudgetExceeded(f"request cap {b.max_requests} reached")
        if b.max_tokens is not None and u.prompt_tokens + u.completion_tokens >= b.max_tokens:
            raise BudgetExceeded(f"token cap {b.max_tokens} reached")
        if b.max_cost_usd is not None and u.cost_usd >= b.max_cost_usd:
            raise BudgetExceeded(f"cost cap ${b.max_cost_usd} reached")

    def _account(self, usage: dict, discount: float = 1.0) -> None:
        u = self.usage
        u.succeeded += 1
        u.prompt_tokens += usage.get("prompt_tokens", 0)
        u.completion_tokens += usage.get("completion_tokens", 0)
        if self.price:
            u.cost_usd += discount * (usage.get("prompt_tokens", 0) * self.price.input
                                      + usage.get("completion_tokens", 0) * self.price.output) / 1e6

    def _error(self, kind: str) -> None:
        self.usage.errors[kind] = self.usage.errors.get(kind, 0) + 1

    async def _send(self, client, payload: dict) -> dict:
        """One logical request: retried until it succeeds or retries run out."""
        import httpx
        from openai import APIConnectionError, APIResponseValidationError, APIStatusError, APITimeoutError

        c = self.cfg
        for attempt in range(c.max_retries + 1):
            self._check_budget()
            wait = min(c.backoff_max_s, c.backoff_base_s * 2 ** attempt) * random.uniform(0.5, 1.0)
            try:
                self.usage.requests += 1
                # The SDK's client (auth, headers, typed errors) with a plain JSON body: its per-call
                # request transformation costs ~1 ms, which serialises under high concurrency.
                path = "/chat/completions" if c.api == "chat" else "/completions"
                raw = await client.post(path, body=self._body(payload["prompt"]), cast_to=httpx.Response)
                body = json.loads(raw.text)
                choice = body["choices"][0]
                text = (choice["message"]["content"] if c.api == "chat" else choice["text"]) or ""
                usage = body.get("usage") or {}
                return {"text": text, "usage": {k: usage.get(k, 0) for k in ("prompt_tokens", "completion_tokens")}}
            except APIStatusError as e:
                if e.status_code not in RETRYABLE_STATUS:
                    self._error(f"http_{e.status_code}")
                    raise
                self._error(f"http_{e.status_code}")
                retry_after = _retry_after(e.response.headers)
                if retry_after is not None:
                    wait = min(c.backoff_max_s, retry_after)
            except APITimeoutError:
                self._error("timeout")
            except APIConnectionError:
                self._error("connection")
            except (APIResponseValidationError, json.JSONDecodeError, httpx.HTTPError, KeyError, AttributeError,
                    IndexError, TypeError):
                self._error("bad_body")
            if attempt == c.max_retries:
                break
            self.usage.retries += 1
            await asyncio.sleep(wait)
        raise RuntimeError(f"gave up after {c.max_retries + 1} tries")

    async def _correct_one(self, client, sem: asyncio.Semaphore, wp: WrongPath) -> Outcome:
        prompt = self.render(wp)
        reasons: list[str] = []
        for attempt in range(self.cfg.n):
            payload = self.request_payload(prompt, attempt)
            key = ResponseCache.key(payload)
            # Identical requests in flight at once (duplicate paths) wait for one another: one is paid for.
            async with self._inflight.setdefault(key, asyncio.Lock()):
                response = self.cache.get(key)
                if response is not None:
                    self.usage.cache_hits += 1
                else:
                    if self.stopped:
                        return Outcome(None, f"not attempted: {self.stopped}")
                    try:
                        async with sem:
                            response = await self._send(client, payload)
                    except BudgetExceeded as e:
                        self.stopped = f"budget: {e}"
                        return Outcome(None, f"not attempted: {self.stopped}")
                    except Exception as e:  # noqa: BLE001 - recorded as the row's reason, never lost
                        reasons.append(f"attempt {attempt + 1}: request failed: {type(e).__name__}: {_safe(e)}")
                        continue
                    self._account(response["usage"])
                    self.cache.put(key, response)
            correction, problems = check_correction(response["text"], wp)
            if correction is not None:
                correction.correction_prompt_hash = self.prompt_hash
                correction.corrector = self.name
                return Outcome(correction)
            reasons.append(f"attempt {attempt + 1}: " + "; ".join(problems))
        return Outcome(None, "llm: no valid correction: " + " | ".join(reasons))

    async def _run(self, paths: list[WrongPath]) -> list[Outcome]:
        from openai import AsyncOpenAI
        from tqdm.asyncio import tqdm_asyncio

        client = AsyncOpenAI(base_url=self.cfg.base_url or os.environ.get("OPENAI_BASE_URL"),
                             api_key=os.environ.get("OPENAI_API_KEY", "EMPTY"), timeout=self.cfg.timeout_s,
                             max_retries=0)
        sem = asyncio.Semaphore(self.cfg.concurrency)
        try:
            return list(await tqdm_asyncio.gather(*(self._correct_one(client, sem, p) for p in paths),
                                                  desc=f"correct ({self.cfg.model})"))
        finally:
            await client.close()

    # -- Batch API mode ------------------------------------------------------------
    def _body(self, prompt: str) -> dict:
        c = self.cfg
        common = {"model": c.model, "temperature": c.temperature, "top_p": c.top_p, "max_tokens": c.max_tokens}
        if c.api == "chat":
            return common | {"messages": [{"role": "user", "content": prompt}]}
        return common | {"prompt": prompt}

    def _correct_batch(self, paths: list[WrongPath]) -> list[Outcome]:
        """Attempt rounds as batches; answers are cached exactly like online responses."""
        from openai import OpenAI

        from .batch import BatchClient

        c = self.cfg
        client = OpenAI(base_url=c.base_url or os.environ.get("OPENAI_BASE_URL"),
                        api_key=os.environ.get("OPENAI_API_KEY", "EMPTY"), timeout=c.timeout_s, max_retries=c.max_retries)
        endpoint = "/v1/chat/completions" if c.api == "chat" else "/v1/completions"
        batches = BatchClient(client, self.cache.root, endpoint, c.batch_poll_s, c.batch_wait_s)
        prompts = [self.render(wp) for wp in paths]
        outcomes: list[Outcome | None] = [None] * len(paths)
        reasons: list[list[str]] = [[] for _ in paths]
        for attempt in range(c.n):
            todo = [i for i, o in enumerate(outcomes) if o is None]
            keys = {i: ResponseCache.key(self.request_payload(prompts[i], attempt)) for i in todo}
            missing = {keys[i]: self._body(prompts[i]) for i in todo if self.cache.get(keys[i]) is None}
            if missing:
                batch_id = batches.submit_or_resume(missing)
                bodies = batches.wait(batch_id)
                if bodies is None:
                    self.stopped = f"batch {batch_id} still running; rerun to collect it"
                    break
                for key, body in bodies.items():
                    choice = body["choices"][0]
                    text = choice["message"]["content"] if c.api == "chat" else choice["text"]
                    usage = {k: (body.get("usage") or {}).get(k, 0) for k in ("prompt_tokens", "completion_tokens")}
                    self._account(usage, discount=c.batch_discount)
                    self.cache.put(key, {"text": text, "usage": usage})
                batches.mark_collected(batch_id)
            for i in todo:
                response = self.cache.get(keys[i])
                if response is None:
                    reasons[i].append(f"attempt {attempt + 1}: no answer in the batch")
                    continue
                correction, problems = check_correction(response["text"], paths[i])
                if correction is not None:
                    correction.correction_prompt_hash = self.prompt_hash
                    correction.corrector = f"{self.name}:batch"
                    outcomes[i] = Outcome(correction)
                else:
                    reasons[i].append(f"attempt {attempt + 1}: " + "; ".join(problems))
        return [o if o is not None else Outcome(None, f"not attempted: {self.stopped}" if self.stopped and not r
                                                 else "llm: no valid correction: " + " | ".join(r))
                for o, r in zip(outcomes, reasons)]

    def correct(self, paths: list[WrongPath]) -> list[Outcome]:
        outcomes: list[Outcome | None] = [None] * len(paths)
        llm_idx = []
        for i, wp in enumerate(paths):
            if self.hybrid:
                out = self.reference.correct_one(wp)
                if out.correction is not None and out.kind == "arithmetic":
                    out.correction.corrector = "hybrid:reference"
                    outcomes[i] = out
                    self.usage.saved_by_hybrid += 1
                    continue
            llm_idx.append(i)
        todo = [paths[i] for i in llm_idx]
        if not todo:
            results = []
        elif self.cfg.batch:
            results = self._correct_batch(todo)
        else:
            results = asyncio.run(self._run(todo))
        for i, out in zip(llm_idx, results, strict=True):
            outcomes[i] = out
        return [o for o in outcomes if o is not None]

    def report_details(self) -> dict:
        return {"usage": self.usage.as_dict(), "model": self.cfg.model, "stopped": self.stopped,
                "prompt_hash": self.prompt_hash}


def _retry_after(headers) -> float | None:
    for name, scale in (("retry-after-ms", 1e-3), ("retry-after", 1.0)):
        value = headers.get(name) if headers is not None else None
        if value:
            try:
                return float(value) * scale
            except ValueError:
                return None
    return None


def _safe(e: Exception) -> str:
    """Error text without anything that could carry a key (the SDK never puts it there; be sure)."""
    text = str(e)[:200]
    key = os.environ.get("OPENAI_API_KEY")
    return text.replace(key, "***") if key else text
