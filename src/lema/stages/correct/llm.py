"""LLM corrector: the correction task sent to a GPT-4-class model through the shared transport.

The task (``lema.stages.correct.task``) renders prompts and judges answers; the transport
(``lema.llm.transport``, ``lema.llm.batch``) buys them: cache, retries, budget, Batch API.
This module only decides what to ask: n attempts per wrong path, keeping the
first that validates, and in hybrid mode arithmetic slips go to the free
reference corrector instead.
"""

from __future__ import annotations

import asyncio
from pathlib import Path

from lema.config import CorrectorConfig
from lema.llm.budget import BudgetExceeded
from lema.llm.cache import ResponseCache
from lema.llm.transport import OpenAITransport, safe_error
from lema.llm.wire import Request, Usage
from lema.records import WrongPath
from lema.stages.correct.reference import ReferenceCorrector
from lema.stages.correct.task import CorrectionTask, Outcome

__all__ = ["BudgetExceeded", "LLMCorrector", "ResponseCache", "Usage"]


class LLMCorrector:
    def __init__(self, cfg: CorrectorConfig, cache_dir: str | Path, hybrid: bool = False,
                 transport: OpenAITransport | None = None):
        if not cfg.model:
            raise ValueError("corrector.model is required for the llm corrector (e.g. gpt-4o)")
        self.cfg = cfg
        self.hybrid = hybrid
        self.name = "hybrid" if hybrid else "llm"
        self.task = CorrectionTask(shots=cfg.shots)
        self.prompt_hash = self.task.prompt_hash
        self.transport = transport or OpenAITransport.for_corrector(cfg, cache_dir)
        self.reference = ReferenceCorrector()
        self._pending: str | None = None  # a batch still running when the run stopped waiting

    @property
    def usage(self) -> Usage:
        return self.transport.usage

    @property
    def stopped(self) -> str | None:
        return self._pending or (f"budget: {self.transport.stopped}" if self.transport.stopped else None)

    def request(self, prompt: str, attempt: int) -> Request:
        c = self.cfg
        return Request(api=c.api, model=c.model, prompt=prompt, temperature=c.temperature, top_p=c.top_p,
                       max_tokens=c.max_tokens, attempt=attempt)

    # -- online ------------------------------------------------------------------
    def _count_cached(self, paths: list[WrongPath], prompts: list[str]) -> None:
        """Count the answers this run will reuse against the budget before anything is bought."""
        for wp, prompt in zip(paths, prompts, strict=True):
            for attempt in range(self.cfg.n):
                response = self.transport.count_cached(self.request(prompt, attempt))
                if response is None or self.task.check(response.text, wp, corrector=self.name)[0] is not None:
                    break

    async def _correct_one(self, wp: WrongPath, prompt: str) -> Outcome:
        reasons: list[str] = []
        for attempt in range(self.cfg.n):
            try:
                response = await self.transport.complete(self.request(prompt, attempt))
            except BudgetExceeded as e:
                return _stopped(reasons, f"budget: {e}")
            except Exception as e:  # noqa: BLE001 - recorded as the row's reason, never lost
                reasons.append(f"attempt {attempt + 1}: request failed: {type(e).__name__}: {safe_error(e)}")
                continue
            correction, problems = self.task.check(response.text, wp, corrector=self.name)
            if correction is not None:
                return Outcome(correction)
            reasons.append(f"attempt {attempt + 1}: " + "; ".join(problems))
        return Outcome(None, "llm: no valid correction: " + " | ".join(reasons))

    async def _run(self, paths: list[WrongPath], prompts: list[str]) -> list[Outcome]:
        from tqdm.asyncio import tqdm_asyncio

        async with self.transport:
            return list(await tqdm_asyncio.gather(*(self._correct_one(p, q) for p, q in zip(paths, prompts)),
                                                  desc=f"correct ({self.cfg.model})"))

    # -- Batch API ---------------------------------------------------------------
    def _correct_batch(self, paths: list[WrongPath], prompts: list[str]) -> list[Outcome]:
        """Attempt rounds as batches; answers are cached exactly like online responses."""
        from lema.llm.batch import complete_batch

        c = self.cfg
        outcomes: list[Outcome | None] = [None] * len(paths)
        reasons: list[list[str]] = [[] for _ in paths]
        for attempt in range(c.n):
            todo = [i for i, o in enumerate(outcomes) if o is None]
            if not todo:
                break
            requests = {i: self.request(prompts[i], attempt) for i in todo}
            result = complete_batch(self.transport, list(requests.values()), discount=c.batch_discount,
                                    poll_s=c.batch_poll_s, wait_s=c.batch_wait_s)
            for i in todo:
                key = requests[i].cache_key()
                response = result.responses.get(key)
                if key in result.not_sent:
                    outcomes[i] = _stopped(reasons[i], f"budget: {result.not_sent[key]}")
                elif key in result.failed:
                    reasons[i].append(f"attempt {attempt + 1}: {result.failed[key]}")
                elif response is not None:
                    correction, problems = self.task.check(response.text, paths[i], corrector=f"{self.name}:batch")
                    if correction is not None:
                        outcomes[i] = Outcome(correction)
                    else:
                        reasons[i].append(f"attempt {attempt + 1}: " + "; ".join(problems))
            if result.pending:
                self._pending = result.pending
                break
        return [o if o is not None else
                (_stopped(r, self._pending) if self._pending else
                 Outcome(None, "llm: no valid correction: " + " | ".join(r)))
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
        prompts = [self.task.render(wp) for wp in todo]
        self._count_cached(todo, prompts)
        if not todo:
            results = []
        elif self.cfg.batch:
            results = self._correct_batch(todo, prompts)
        else:
            results = asyncio.run(self._run(todo, prompts))
        for i, out in zip(llm_idx, results, strict=True):
            outcomes[i] = out
        return [o for o in outcomes if o is not None]

    def report_details(self) -> dict:
        return {"usage": self.usage.as_dict(), "model": self.cfg.model, "stopped": self.stopped,
                "budget": self.cfg.budget.model_dump(), "prompt_hash": self.prompt_hash}


def _stopped(reasons: list[str], why: str) -> Outcome:
    """A row the run stopped before finishing: not attempted at all, or after some failed attempts."""
    if not reasons:
        return Outcome(None, f"not attempted: {why}")
    return Outcome(None, "llm: no valid correction: " + " | ".join(reasons) + f" | stopped: {why}")
