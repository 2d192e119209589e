"""OpenAI Batch API side of the transport: half price, hours of latency, resumable.

The batch ids and the cache keys they carry are stored next to the response
cache, so a run that stops (or is killed) while a batch is in flight picks the
same batch up on the next run instead of paying for a new one; a key already in
an open batch is never submitted again.  The budget is checked before a batch is
submitted: each request's worst case (prompt bound + max_tokens, at the batch
price) is reserved in order and only the requests that fit are sent; when their
answers settle to the billed usage, what fits then goes in the next batch.
"""

from __future__ import annotations

import io
import json
import time
from dataclasses import dataclass, field
from pathlib import Path

from lema.jsonl import write_json
from lema.llm.budget import Amount, BudgetExceeded
from lema.llm.transport import OpenAITransport
from lema.llm.wire import Request, Response

STATE = "batches.json"
SUBMITTING = "submitting:"  # state entry for a batch being created, by input file id
CLOSED = ("failed", "expired", "cancelled", "collected")


class BatchClient:
    def __init__(self, client, cache_root: Path, endpoint: str, poll_s: float):
        self.client = client
        self.state_file = Path(cache_root) / STATE
        self.endpoint = endpoint
        self.poll_s = poll_s

    def _state(self) -> dict:
        return json.loads(self.state_file.read_text()) if self.state_file.exists() else {}

    def _save(self, state: dict) -> None:
        write_json(self.state_file, state, indent=1)

    def open_batches(self) -> dict[str, set[str]]:
        """{batch id: cache keys} of batches submitted earlier and not yet collected or ended."""
        self._adopt_unrecorded()
        return {bid: set(info["keys"]) for bid, info in self._state().items() if info["status"] not in CLOSED}

    def submit(self, bodies: dict[str, dict]) -> str:
        lines = [json.dumps({"custom_id": k, "method": "POST", "url": self.endpoint, "body": b})
                 for k, b in bodies.items()]
        upload = self.client.files.create(file=("lema-requests.jsonl", io.BytesIO("\n".join(lines).encode())),
                                          purpose="batch")
        # Intent first: a run killed between creating the batch and recording its id finds it again by its
        # input file (see _adopt_unrecorded) instead of paying for a second batch.
        state = self._state()
        state[f"{SUBMITTING}{upload.id}"] = {"keys": sorted(bodies), "status": "submitting", "created": time.time()}
        self._save(state)
        batch = self.client.batches.create(input_file_id=upload.id, endpoint=self.endpoint, completion_window="24h",
                                           metadata={"tool": "lema"})
        self._record(upload.id, batch.id, batch.status)
        return batch.id

    def _record(self, input_file_id: str, batch_id: str, status: str) -> None:
        state = self._state()
        entry = state.pop(f"{SUBMITTING}{input_file_id}")
        state[batch_id] = entry | {"status": status}
        self._save(state)

    def _adopt_unrecorded(self) -> None:
        """Resolve submissions a killed run left half-recorded: adopt the batch made from their input file,
        or forget them if none was made (their keys are then submitted again, never paid twice)."""
        pending = [k[len(SUBMITTING):] for k in self._state() if k.startswith(SUBMITTING)]
        if not pending:
            return
        made = {b.input_file_id: b for b in self.client.batches.list(limit=100) if b.input_file_id in pending}
        for file_id in pending:
            if file_id in made:
                self._record(file_id, made[file_id].id, made[file_id].status)
            else:
                state = self._state()
                del state[f"{SUBMITTING}{file_id}"]
                self._save(state)

    def _set_status(self, batch_id: str, status: str) -> None:
        state = self._state()
        state[batch_id]["status"] = status
        self._save(state)

    def wait(self, batch_id: str, deadline: float) -> tuple[str, dict[str, dict]]:
        """(final status, {cache key: response body}); status "in_progress" etc. if still running at deadline."""
        while True:
            batch = self.client.batches.retrieve(batch_id)
            self._set_status(batch_id, batch.status)
            if batch.status == "completed" or batch.status in CLOSED:
                break
            if time.time() >= deadline:
                return batch.status, {}
            time.sleep(self.poll_s)
        results: dict[str, dict] = {}
        if batch.output_file_id:
            text = self.client.files.content(batch.output_file_id).text
            for line in text.splitlines():
                if line.strip():
                    row = json.loads(line)
                    resp = row.get("response") or {}
                    if resp.get("status_code") == 200:
                        results[row["custom_id"]] = resp["body"]
        return batch.status, results

    def mark_collected(self, batch_id: str) -> None:
        self._set_status(batch_id, "collected")


@dataclass
class BatchResult:
    responses: dict[str, Response] = field(default_factory=dict)  # cache key -> response
    not_sent: dict[str, str] = field(default_factory=dict)        # cache key -> why the budget kept it back
    pending: str | None = None                                    # a batch still running: rerun to collect it
    failed: dict[str, str] = field(default_factory=dict)          # cache key -> batch that ended without it


def complete_batch(transport: OpenAITransport, requests: list[Request], discount: float, poll_s: float,
                   wait_s: float) -> BatchResult:
    """Responses for these requests: cached, collected from an open batch, or bought in new batches as the
    budget allows."""
    if transport.cache is None:
        raise ValueError("the Batch API needs a response cache: batch ids and answers are kept there")
    result = BatchResult()
    keyed = {r.cache_key(): r for r in requests}
    missing = []
    for key, req in keyed.items():
        hit = transport.cached(req)
        if hit is not None:
            result.responses[key] = hit
        else:
            missing.append(key)
    if not missing:
        return result
    endpoints = {keyed[k].endpoint for k in missing}
    if len(endpoints) != 1:
        raise ValueError(f"one batch serves one endpoint, got {sorted(endpoints)}")
    batches = BatchClient(transport.sync_client(), transport.cache.root, endpoints.pop(), poll_s)
    budget = transport.budget
    reserved: dict[str, Amount] = {}

    # Keys in a batch submitted earlier are bought already: collect them, never submit them again.
    waiting: dict[str, list[str]] = {}
    for bid, keys in batches.open_batches().items():
        mine = [k for k in missing if k in keys]
        if mine:
            waiting[bid] = mine
            for k in mine:
                reserved[k] = transport.worst_case(keyed[k], discount)
    covered = {k for keys in waiting.values() for k in keys}
    if budget is not None:
        budget.reserved += sum(reserved.values(), Amount())
    queue = [k for k in missing if k not in covered]
    deadline = time.time() + wait_s
    try:
        # Submit what fits; once its answers settle to their billed usage, submit what fits next; stop when
        # nothing is in flight and the next request's worst case still does not fit.
        while True:
            to_send, refused = [], transport.stopped
            for key in queue:
                if refused:
                    break
                amount = transport.worst_case(keyed[key], discount)
                if budget is not None:
                    try:
                        budget.reserve(amount)
                    except BudgetExceeded as e:
                        refused = str(e)
                        break
                reserved[key] = amount
                to_send.append(key)
            queue = queue[len(to_send):]
            if to_send:
                bid = batches.submit({k: keyed[k].body() for k in to_send})
                transport.usage.batches_submitted += 1
                waiting[bid] = to_send
            if not waiting:
                if refused:
                    transport.stopped = refused
                    result.not_sent.update(dict.fromkeys(queue, refused))
                break
            _collect(transport, batches, waiting, keyed, reserved, discount, deadline, result)
            waiting = {}
            if result.pending:
                if refused:
                    result.not_sent.update(dict.fromkeys(queue, f"{refused}; more may fit once it is collected"))
                break
            if not queue:
                break
    finally:
        if budget is not None:  # still running: released here, reserved again by the run that collects it
            budget.reserved -= sum(reserved.values(), Amount())
    transport.usage.not_sent_for_budget += len(result.not_sent)
    return result


def _collect(transport: OpenAITransport, batches: BatchClient, waiting: dict[str, list[str]],
             keyed: dict[str, Request], reserved: dict[str, Amount], discount: float, deadline: float,
             result: BatchResult) -> None:
    """Wait for these batches; account, cache and settle every answer; note a batch still running."""
    budget = transport.budget
    for bid, keys in waiting.items():
        status, bodies = batches.wait(bid, deadline)
        if status != "completed" and status not in CLOSED:
            result.pending = f"batch {bid} still running; rerun to collect it"
            continue
        for key in keys:
            body = bodies.get(key)
            actual = Amount()
            if body is not None:
                try:
                    resp = Response.from_body(body, keyed[key].api)
                except (KeyError, TypeError, IndexError, AttributeError):
                    transport.usage.error("bad_body")
                    result.failed[key] = f"batch {bid}: unreadable answer"
                else:
                    actual = transport.account(keyed[key], resp, discount)
                    transport.keep(key, resp, discount)
                    result.responses[key] = resp
            else:
                result.failed[key] = f"batch {bid} ended {status} without an answer"
            if budget is not None:
                budget.settle(reserved.pop(key), actual)
        # Answers in the batch for requests not asked this time (another round or input) were paid for too:
        # keep them, so that whoever asks for them later finds them in the cache.
        api = "chat" if batches.endpoint.endswith("/chat/completions") else "completions"
        for key in set(bodies) - set(keys):
            if transport.cache.get(key) is None:
                try:
                    resp = Response.from_body(bodies[key], api)
                except (KeyError, TypeError, IndexError, AttributeError):
                    continue
                transport.account(None, resp, discount)
                transport.cache.put(key, resp.to_cache(discount))
        batches.mark_collected(bid)
