"""A loopback stand-in for a paid OpenAI-compatible API, with injected faults.

Speaks the real wire protocol (POST /v1/chat/completions and /v1/completions,
the Batch API's /v1/files and /v1/batches, JSON bodies, `usage`, `Retry-After`) so the real `openai` SDK talks to it.
Faults are drawn per request at configured rates: 429 with Retry-After, 500,
responses slower than the client's timeout, truncated bodies, non-JSON bodies,
and well-formed but useless answers.  The server counts the successful
responses it delivered per prompt and their tokens, which is what a paid API
would bill (GET /v1/stats reports them to a client in another process).

    python tests/openai_fault_server.py --port 8123 --latency 0.2    # for the benchmark
"""

from __future__ import annotations

import argparse
import asyncio
import json
import random
import re
import threading
import time
from collections import Counter
from dataclasses import dataclass, field

from aiohttp import web


@dataclass
class Faults:
    rate_429: float = 0.0
    rate_500: float = 0.0
    rate_slow: float = 0.0
    rate_truncated: float = 0.0
    rate_nonjson: float = 0.0
    rate_malformed: float = 0.0
    slow_seconds: float = 3.0
    retry_after: float = 0.05
    error_type: str | None = "Misread question."  # what well-formed answers name (None: no Error Type line)


@dataclass
class Stats:
    requests: int = 0
    delivered: Counter = field(default_factory=Counter)  # prompt -> successful responses delivered
    faults: Counter = field(default_factory=Counter)
    batches_created: int = 0
    batch_requests: int = 0  # requests submitted inside batches
    billed_prompt_tokens: int = 0  # what a paid API would bill: usage of the responses delivered
    billed_completion_tokens: int = 0

    def bill(self, prompt: str, response: dict) -> None:
        self.delivered[prompt] += 1
        self.billed_prompt_tokens += response["usage"]["prompt_tokens"]
        self.billed_completion_tokens += response["usage"]["completion_tokens"]

    @property
    def billed_tokens(self) -> int:
        return self.billed_prompt_tokens + self.billed_completion_tokens


def answer_for(prompt: str, malformed: bool, error_type: str | None = "Misread question.") -> str:
    """A correction in lema's format, using the last 'Correct answer:' in the prompt."""
    gold = re.findall(r"Correct answer: (.+)", prompt)
    if malformed or not gold:
        return "I think the student did fine overall, but I am not sure."
    kind = f"**Error Type:** {error_type}\n" if error_type is not None else ""
    return (f"**Incorrect Step:** Step 1.\n{kind}"
            f"**Explanation:** The first step misreads what the question asks for.\n"
            f"**Correct Solution:**\nStep 1: The answer is {gold[-1].strip()}.")


class FaultServer:
    def __init__(self, faults: Faults | None = None, latency: float = 0.0, seed: int = 0, host: str = "127.0.0.1",
                 port: int = 0):
        self.faults = faults or Faults()
        self.latency = latency
        self.rng = random.Random(seed)
        self.stats = Stats()
        self.host, self.port = host, port
        self._loop: asyncio.AbstractEventLoop | None = None
        self._runner: web.AppRunner | None = None
        self._thread: threading.Thread | None = None
        self.files: dict[str, bytes] = {}
        self.batches: dict[str, dict] = {}
        self.batch_delay = 0.5

    # -- protocol ------------------------------------------------------------
    async def handle(self, request: web.Request) -> web.StreamResponse:
        arrived = time.monotonic()
        body = await request.json()
        chat = request.path.endswith("/chat/completions")
        prompt = body["messages"][-1]["content"] if chat else body["prompt"]
        self.stats.requests += 1
        f = self.faults
        draw = self.rng.random()
        edges = [("429", f.rate_429), ("500", f.rate_500), ("slow", f.rate_slow), ("truncated", f.rate_truncated),
                 ("nonjson", f.rate_nonjson)]
        fault, acc = None, 0.0
        for name, rate in edges:
            acc += rate
            if draw < acc:
                fault = name
                break
        if fault:
            self.stats.faults[fault] += 1
        # Fixed latency measured from arrival: the server's own work is inside it, not added to it.
        response = self.completion(body, chat, prompt) if fault in (None, "truncated", "slow") else None
        data = json.dumps(response).encode() if response is not None else b""
        if self.latency:
            await asyncio.sleep(max(0.0, self.latency - (time.monotonic() - arrived)))
        if fault == "429":
            return web.json_response({"error": {"message": "rate limited", "type": "rate_limit_error"}}, status=429,
                                     headers={"Retry-After": str(f.retry_after)})
        if fault == "500":
            return web.json_response({"error": {"message": "boom", "type": "server_error"}}, status=500)
        if fault == "nonjson":
            return web.Response(text="<html><body>502 Bad Gateway</body></html>", content_type="text/html")
        if fault == "slow":
            await asyncio.sleep(f.slow_seconds)
            if request.transport is None or request.transport.is_closing():
                return web.Response(status=499)  # the client gave up; nothing was delivered
        if fault == "truncated":
            resp = web.StreamResponse(status=200, headers={"Content-Type": "application/json"})
            resp.content_length = len(data)
            await resp.prepare(request)
            await resp.write(data[: len(data) // 2])
            request.transport.close()
            return resp
        if request.transport is None or request.transport.is_closing():
            return web.Response(status=499)  # the client is gone: nothing delivered, nothing billed
        self.stats.bill(prompt, response)
        return web.Response(body=data, content_type="application/json")

    def completion(self, body: dict, chat: bool, prompt: str) -> dict:
        """`n` choices (in reverse index order, as servers may send them); a token is a word here."""
        texts = [answer_for(prompt, self.rng.random() < self.faults.rate_malformed, self.faults.error_type)
                 for _ in range(body.get("n") or 1)]
        n_prompt, n_completion = len(prompt.split()), sum(len(t.split()) for t in texts)
        choices = [{"index": i, "message": {"role": "assistant", "content": t}, "finish_reason": "stop"} if chat
                   else {"index": i, "text": t, "finish_reason": "stop", "logprobs": None} for i, t in enumerate(texts)]
        return {"id": f"cmpl-{self.stats.requests}", "object": "chat.completion" if chat else "text_completion",
                "created": int(time.time()), "model": body.get("model", "fake"), "choices": choices[::-1],
                "usage": {"prompt_tokens": n_prompt, "completion_tokens": n_completion,
                          "total_tokens": n_prompt + n_completion}}

    # -- Batch API -------------------------------------------------------------
    async def upload_file(self, request: web.Request) -> web.Response:
        form = await request.post()
        data = form["file"].file.read()
        fid = f"file-{len(self.files) + 1}"
        self.files[fid] = data
        return web.json_response({"id": fid, "object": "file", "bytes": len(data), "created_at": int(time.time()),
                                  "filename": form["file"].filename, "purpose": form.get("purpose", "batch"),
                                  "status": "processed"})

    async def file_content(self, request: web.Request) -> web.Response:
        return web.Response(body=self.files[request.match_info["fid"]], content_type="application/octet-stream")

    def _batch_obj(self, bid: str) -> dict:
        b = self.batches[bid]
        return {"id": bid, "object": "batch", "endpoint": b["endpoint"], "input_file_id": b["input_file_id"],
                "completion_window": "24h", "status": b["status"], "created_at": b["created_at"],
                "output_file_id": b.get("output_file_id"), "metadata": b.get("metadata"),
                "request_counts": {"total": b["total"], "completed": b.get("done", 0), "failed": 0}}

    async def create_batch(self, request: web.Request) -> web.Response:
        body = await request.json()
        bid = f"batch_{len(self.batches) + 1}"
        lines = [json.loads(x) for x in self.files[body["input_file_id"]].decode().splitlines() if x.strip()]
        self.batches[bid] = {"endpoint": body["endpoint"], "input_file_id": body["input_file_id"],
                             "status": "in_progress", "created_at": int(time.time()), "total": len(lines),
                             "metadata": body.get("metadata")}
        self.stats.batches_created += 1
        self.stats.batch_requests += len(lines)

        async def finish():
            await asyncio.sleep(self.batch_delay)
            out = []
            for line in lines:
                chat = line["url"].endswith("/chat/completions")
                req = line["body"]
                prompt = req["messages"][-1]["content"] if chat else req["prompt"]
                response = self.completion(req, chat, prompt)
                self.stats.bill(prompt, response)
                out.append(json.dumps({"id": f"req-{len(out)}", "custom_id": line["custom_id"], "error": None,
                                       "response": {"status_code": 200, "request_id": f"r{len(out)}",
                                                    "body": response}}))
            fid = f"file-{len(self.files) + 1}"
            self.files[fid] = "\n".join(out).encode()
            self.batches[bid].update(status="completed", output_file_id=fid, done=len(lines))

        asyncio.ensure_future(finish())
        return web.json_response(self._batch_obj(bid))

    async def list_batches(self, request: web.Request) -> web.Response:
        data = [self._batch_obj(bid) for bid in reversed(list(self.batches))]  # newest first, as OpenAI lists
        return web.json_response({"object": "list", "data": data, "has_more": False,
                                  "first_id": data[0]["id"] if data else None,
                                  "last_id": data[-1]["id"] if data else None})

    async def get_batch(self, request: web.Request) -> web.Response:
        return web.json_response(self._batch_obj(request.match_info["bid"]))

    async def get_stats(self, request: web.Request) -> web.Response:
        """What was billed, for tests that run the server in another process (GET /v1/stats, not OpenAI's)."""
        st = self.stats
        return web.json_response({"requests": st.requests, "delivered": sum(st.delivered.values()),
                                  "max_delivered_per_prompt": max(st.delivered.values(), default=0),
                                  "faults": dict(st.faults), "batches_created": st.batches_created,
                                  "batch_requests": st.batch_requests, "billed_prompt_tokens": st.billed_prompt_tokens,
                                  "billed_completion_tokens": st.billed_completion_tokens})

    # -- lifecycle -------------------------------------------------------------
    async def _start(self) -> None:
        app = web.Application()
        app.router.add_post("/v1/chat/completions", self.handle)
        app.router.add_post("/v1/completions", self.handle)
        app.router.add_post("/v1/files", self.upload_file)
        app.router.add_get("/v1/files/{fid}/content", self.file_content)
        app.router.add_post("/v1/batches", self.create_batch)
        app.router.add_get("/v1/batches", self.list_batches)
        app.router.add_get("/v1/batches/{bid}", self.get_batch)
        app.router.add_get("/v1/stats", self.get_stats)
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        site = web.TCPSite(self._runner, self.host, self.port, backlog=1024)
        await site.start()
        self.port = site._server.sockets[0].getsockname()[1]

    def start(self) -> FaultServer:
        self._loop = asyncio.new_event_loop()
        ready = threading.Event()

        def run():
            asyncio.set_event_loop(self._loop)
            self._loop.run_until_complete(self._start())
            ready.set()
            self._loop.run_forever()

        self._thread = threading.Thread(target=run, daemon=True)
        self._thread.start()
        ready.wait(10)
        return self

    def stop(self) -> None:
        if self._loop and self._runner:
            asyncio.run_coroutine_threadsafe(self._runner.cleanup(), self._loop).result(10)
            self._loop.call_soon_threadsafe(self._loop.stop)
            self._thread.join(10)

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}/v1"


if __name__ == "__main__":
    ap = argparse.ArgumentParser()
    ap.add_argument("--port", type=int, default=8123)
    ap.add_argument("--latency", type=float, default=0.0)
    ap.add_argument("--seconds", type=float, default=600, help="stop by itself after this long")
    a = ap.parse_args()
    server = FaultServer(latency=a.latency, port=a.port).start()
    print(f"listening on {server.url}", flush=True)
    time.sleep(a.seconds)
    server.stop()
