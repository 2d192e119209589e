"""The client for OpenAI-compatible endpoints, shared by the LLM corrector and the OpenAI generation backend.

Built so that paid calls are never made twice, never lost and never over budget:
- every successful response can go to a content-addressed cache (key = model,
  full prompt, sampling params, attempt index), written atomically as it arrives,
  so a crashed or repeated run resumes without re-sending anything that succeeded;
- identical requests in flight at once share one HTTP request;
- retries with exponential backoff and jitter on 429/5xx/connection errors/
  timeouts/unreadable bodies, honouring Retry-After;
- a budget (requests, tokens, dollars) that reserves a request's worst case
  before it is sent and settles to the billed usage after, so no concurrency
  level can overshoot a cap;
- exact, summable usage records (``Usage``), so shards of one stage add up.
The Batch API side lives in ``lema.llm.batch``.  The API key is read from
OPENAI_API_KEY by the SDK and never stored or logged.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import os
import random
from pathlib import Path

from lema.config import BudgetConfig, CorrectorConfig
from lema.llm.budget import Amount, Budget, BudgetExceeded
from lema.llm.cache import ResponseCache
from lema.llm.wire import Request, Response, Usage

RETRYABLE_STATUS = {408, 409, 429, 500, 502, 503, 504}


class OpenAITransport:
    """OpenAI-compatible client with retries, cache, in-flight de-duplication, budget and usage accounting.

    Use inside ``async with transport:`` (one client per event loop), or ``complete_many`` from sync code.
    """

    def __init__(self, *, base_url: str | None = None, timeout_s: float = 60.0, max_retries: int = 6,
                 backoff_base_s: float = 1.0, backoff_max_s: float = 60.0, concurrency: int = 32,
                 cache: ResponseCache | None = None, budget: Budget | None = None):
        self.base_url = base_url or os.environ.get("OPENAI_BASE_URL")
        self.timeout_s = timeout_s
        self.max_retries = max_retries
        self.backoff_base_s = backoff_base_s
        self.backoff_max_s = backoff_max_s
        self.concurrency = concurrency
        self.cache = cache
        self.budget = budget
        self.usage = Usage()
        self.stopped: str | None = None  # why no new request may start (the budget ran out)
        self._known_prompt_tokens: dict[str, int] = {}
        self._counted: set[str] = set()  # cache keys whose cost is in the budget's spent amount
        self._client = None

    @classmethod
    def for_corrector(cls, cfg: CorrectorConfig, cache_dir: str | Path) -> OpenAITransport:
        return cls(base_url=cfg.base_url, timeout_s=cfg.timeout_s, max_retries=cfg.max_retries,
                   backoff_base_s=cfg.backoff_base_s, backoff_max_s=cfg.backoff_max_s, concurrency=cfg.concurrency,
                   cache=ResponseCache(cache_dir), budget=Budget(cfg.budget, cfg.prices.get(cfg.model), cfg.model))

    # -- accounting --------------------------------------------------------------
    def _prompt_key(self, req: Request) -> str:
        return hashlib.sha256(f"{req.api}\0{req.model}\0{req.prompt}".encode()).hexdigest()

    def worst_case(self, req: Request, discount: float = 1.0) -> Amount:
        """The most a request can cost: its prompt (billed count if seen before, else the byte bound) plus
        max_tokens for each of its n completions."""
        prompt = self._known_prompt_tokens.get(self._prompt_key(req)) or req.prompt_token_bound()
        budget = self.budget or Budget(BudgetConfig())
        return budget.amount(prompt, req.max_tokens * req.n, discount)

    def account(self, req: Request | None, resp: Response, discount: float = 1.0) -> Amount:
        """Record a paid response in the usage; returns what it cost."""
        u = self.usage
        u.succeeded += 1
        u.prompt_tokens += resp.prompt_tokens
        u.completion_tokens += resp.completion_tokens
        if req is not None and resp.prompt_tokens:
            self._known_prompt_tokens[self._prompt_key(req)] = resp.prompt_tokens
        actual = (self.budget or Budget(BudgetConfig())).amount(resp.prompt_tokens, resp.completion_tokens, discount)
        u.cost_usd += actual.cost_usd
        return actual

    def cached(self, req: Request) -> Response | None:
        """A cached response (a cache hit)."""
        resp = self.count_cached(req)
        if resp is not None:
            self.usage.cache_hits += 1
        return resp

    def count_cached(self, req: Request) -> Response | None:
        """A cached response, its cost counted against the budget (once per key): the caps bound what the
        stage's output cost, so a retried or resumed run never buys more than one uninterrupted run would.
        Callers count what they will reuse before buying anything, whatever order requests then run in."""
        if self.cache is None:
            return None
        key = req.cache_key()
        entry = self.cache.get(key)
        if entry is None:
            return None
        resp = Response.from_cache(entry)
        if self.budget is not None and key not in self._counted:
            self._counted.add(key)
            self.budget.spent += self.budget.amount(resp.prompt_tokens, resp.completion_tokens,
                                                    entry.get("discount", 1.0))
        return resp

    def keep(self, key: str, resp: Response, discount: float = 1.0) -> None:
        """Store a bought response (its cost is already in the budget's spent amount)."""
        self._counted.add(key)
        if self.cache is not None:
            self.cache.put(key, resp.to_cache(discount))

    # -- online requests ---------------------------------------------------------
    async def __aenter__(self) -> OpenAITransport:
        from openai import AsyncOpenAI

        self._client = AsyncOpenAI(base_url=self.base_url, api_key=os.environ.get("OPENAI_API_KEY", "EMPTY"),
                                   timeout=self.timeout_s, max_retries=0)
        self._sem = asyncio.Semaphore(self.concurrency)
        self._budget_changed = asyncio.Condition()
        self._inflight: dict[str, asyncio.Future] = {}
        return self

    async def __aexit__(self, *exc) -> None:
        await self._client.close()
        self._client = None

    async def complete(self, req: Request) -> Response:
        """The response to a request: from the cache, from an identical request in flight, or bought."""
        if self._client is None:
            raise RuntimeError("OpenAITransport.complete runs inside `async with transport:`")
        hit = self.cached(req)
        if hit is not None:
            return hit
        key = req.cache_key()
        shared = self._inflight.get(key)
        if shared is not None:
            self.usage.deduplicated += 1
            return await asyncio.shield(shared)
        fut = asyncio.get_running_loop().create_future()
        self._inflight[key] = fut
        try:
            resp = await self._buy(req, key)
        except asyncio.CancelledError:
            fut.cancel()
            raise
        except BaseException as e:
            fut.set_exception(e)
            fut.exception()  # retrieved here: waiters, if any, re-raise it; none is not an error
            raise
        else:
            fut.set_result(resp)
            return resp
        finally:
            del self._inflight[key]

    async def _buy(self, req: Request, key: str) -> Response:
        async with self._sem:
            reserved = await self._reserve(req) if self.budget else Amount()
            actual = Amount()
            try:
                resp = await self._send(req)
                actual = self.account(req, resp)
                self.keep(key, resp)
                return resp
            finally:
                if self.budget:
                    async with self._budget_changed:
                        self.budget.settle(reserved, actual)
                        self._budget_changed.notify_all()

    async def _reserve(self, req: Request) -> Amount:
        """Reserve the request's worst case; wait while requests in flight may free room; stop when none can."""
        amount = self.worst_case(req)
        async with self._budget_changed:
            while True:
                if self.stopped:
                    self.usage.not_sent_for_budget += 1
                    raise BudgetExceeded(self.stopped)
                reason = self.budget.over(amount)
                if reason is None:
                    self.budget.reserved += amount
                    return amount
                if not self.budget.in_flight:
                    self.stopped = reason
                    self.usage.not_sent_for_budget += 1
                    raise BudgetExceeded(reason)
                await self._budget_changed.wait()

    async def _send(self, req: Request) -> Response:
        """One logical request: retried until it succeeds or retries run out."""
        import httpx
        from openai import APIConnectionError, APIResponseValidationError, APIStatusError, APITimeoutError

        last = "none"
        for attempt in range(self.max_retries + 1):
            wait = min(self.backoff_max_s, self.backoff_base_s * 2 ** attempt) * random.uniform(0.5, 1.0)
            try:
                self.usage.requests += 1
                # The SDK's client (auth, headers, typed errors) with a plain JSON body: its per-call
                # request transformation costs ~1 ms, which serialises under high concurrency.
                raw = await self._client.post(req.path, body=req.body(), cast_to=httpx.Response)
                return Response.from_body(json.loads(raw.text), req.api)
            except APIStatusError as e:
                last = f"http_{e.status_code}"
                self.usage.error(last)
                if e.status_code not in RETRYABLE_STATUS:
                    raise
                retry_after = retry_after_s(e.response.headers)
                if retry_after is not None:
                    wait = min(self.backoff_max_s, retry_after)
            except APITimeoutError:
                last = "timeout"
                self.usage.error(last)
            except APIConnectionError:
                last = "connection"
                self.usage.error(last)
            except (APIResponseValidationError, json.JSONDecodeError, httpx.HTTPError, KeyError, AttributeError,
                    IndexError, TypeError):
                last = "bad_body"
                self.usage.error(last)
            if attempt == self.max_retries:
                break
            self.usage.retries += 1
            await asyncio.sleep(wait)
        raise RuntimeError(f"gave up after {self.max_retries + 1} tries (last error: {last})")

    def complete_many(self, requests: list[Request], desc: str = "openai") -> list[Response]:
        """Responses in request order, from sync code; the first failure is raised."""
        from tqdm.asyncio import tqdm_asyncio

        async def run() -> list[Response]:
            async with self:
                return list(await tqdm_asyncio.gather(*(self.complete(r) for r in requests), desc=desc))

        return asyncio.run(run())

    def sync_client(self):
        """A blocking SDK client for the Batch API's file and batch calls (not billed; the SDK retries them)."""
        from openai import OpenAI

        return OpenAI(base_url=self.base_url, api_key=os.environ.get("OPENAI_API_KEY", "EMPTY"),
                      timeout=self.timeout_s, max_retries=self.max_retries)


def retry_after_s(headers) -> float | None:
    for name, scale in (("retry-after-ms", 1e-3), ("retry-after", 1.0)):
        value = headers.get(name) if headers is not None else None
        if value:
            try:
                return float(value) * scale
            except ValueError:
                return None
    return None


def safe_error(e: BaseException) -> str:
    """Error text without anything that could carry a key (the SDK never puts it there; be sure)."""
    text = str(e)[:200]
    key = os.environ.get("OPENAI_API_KEY")
    return text.replace(key, "***") if key else text
