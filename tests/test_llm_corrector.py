"""LLM corrector against a loopback server speaking the OpenAI protocol, with faults injected."""

import json
import os
import signal
import subprocess
import sys
import time

import pytest
import yaml

from lema.config import CorrectorConfig
from lema.correct import run_correct
from lema.data import load_bundled
from lema.jsonl import read_raw, write_jsonl
from lema.llm_corrector import LLMCorrector, ResponseCache

from .conftest import DATA, FIXTURES
from .openai_fault_server import FaultServer, Faults

SECRET = "sk-test-DO-NOT-LEAK-4242"


def wrong_paths(n: int) -> list[dict]:
    rows = []
    for p in load_bundled("gsm8k/train", DATA)[:n]:
        wrong = int(p.gold_answer) + 1
        rows.append({"id": p.id, "task": "gsm8k", "question": p.question, "gold_solution": p.gold_solution,
                     "gold_answer": p.gold_answer, "generator": "test",
                     "path": f"Step 1: I count everything once: 2 + 2 = 4.\nStep 2: The answer is {wrong}."})
    return rows


@pytest.fixture()
def server():
    s = FaultServer().start()
    yield s
    s.stop()


@pytest.fixture(autouse=True)
def api_key(monkeypatch):
    monkeypatch.setenv("OPENAI_API_KEY", SECRET)


def cfg(url: str, **kw) -> CorrectorConfig:
    base = dict(kind="llm", model="gpt-4o-mini", base_url=url, timeout_s=0.5, max_retries=8, backoff_base_s=0.01,
                backoff_max_s=0.1, n=3, concurrency=8)
    return CorrectorConfig(**(base | kw))


def _run(tmp_path, rows, corrector):
    src = tmp_path / "wrong.jsonl"
    write_jsonl(src, rows)
    return run_correct(src, tmp_path / "out.jsonl", tmp_path / "q.jsonl", corrector)


def test_faulty_endpoint_loses_nothing_and_never_pays_twice(tmp_path, server):
    server.faults = Faults(rate_429=0.1, rate_500=0.1, rate_slow=0.05, rate_truncated=0.05, rate_nonjson=0.05,
                           rate_malformed=0.3, slow_seconds=1.5)
    rows = wrong_paths(40)
    c = LLMCorrector(cfg(server.url), tmp_path / "cache")
    rep = _run(tmp_path, rows, c)
    assert rep.n_in == 40 == rep.n_out + rep.n_quarantined
    out, q = read_raw(tmp_path / "out.jsonl"), read_raw(tmp_path / "q.jsonl")
    assert {r["id"] for r in out} | {r["record"]["id"] for r in q} == {r["id"] for r in rows}
    assert all(r["reasons"][0].startswith("llm: no valid correction") for r in q)
    assert rep.n_out >= 30  # 3 attempts at 30% malformed
    cached = list((tmp_path / "cache").rglob("*.json"))
    # every delivered (paid) response was cached exactly once: nothing was re-sent after it succeeded
    assert sum(server.stats.delivered.values()) == len(cached) == c.usage.succeeded
    assert set(server.stats.faults) == {"429", "500", "slow", "truncated", "nonjson"}
    assert c.usage.retries >= sum(server.stats.faults.values()) - 2
    assert rep.details["usage"]["cost_usd"] > 0
    # a rerun is served from the cache: zero requests
    before = server.stats.requests
    rep2 = _run(tmp_path, rows, LLMCorrector(cfg(server.url), tmp_path / "cache"))
    assert server.stats.requests == before and rep2.n_out == rep.n_out
    # the key never reaches artifacts, caches or reports
    for f in [*cached, tmp_path / "out.jsonl", tmp_path / "q.jsonl"]:
        assert SECRET not in f.read_text()
    assert SECRET not in json.dumps(rep.model_dump())


def test_budget_cap_stops_cleanly_and_resumes(tmp_path, server):
    rows = wrong_paths(10)
    c = LLMCorrector(cfg(server.url, concurrency=1, budget={"max_requests": 4}), tmp_path / "cache")
    rep = _run(tmp_path, rows, c)
    assert rep.n_out == 4 and rep.n_quarantined == 6 and sum(server.stats.delivered.values()) == 4
    assert all("budget" in r["reasons"][0] for r in read_raw(tmp_path / "q.jsonl"))
    rep2 = _run(tmp_path, rows, LLMCorrector(cfg(server.url), tmp_path / "cache"))
    assert rep2.n_out == 10 and sum(server.stats.delivered.values()) == 10


def test_hybrid_sends_arithmetic_slips_to_the_reference_corrector(tmp_path, server):
    rows = read_raw(FIXTURES / "foreign_wrong_paths.jsonl")
    c = LLMCorrector(cfg(server.url), tmp_path / "cache", hybrid=True)
    rep = _run(tmp_path, rows, c)
    slips = [r for r in rows if r["expected_kind"] == "arithmetic"]
    assert rep.details["usage"]["saved_by_hybrid"] == len(slips) == 3
    assert len(server.stats.delivered) == len(rows) - len(slips)
    by_id = {r["id"]: r for r in read_raw(tmp_path / "out.jsonl")}
    assert all(by_id[r["id"]]["corrector"] == "hybrid:reference" for r in slips)


def test_cache_key_depends_on_everything_asked():
    base = {"model": "m", "prompt": "p", "temperature": 0.7, "attempt": 0}
    keys = {ResponseCache.key(base | change) for change in
            ({}, {"model": "m2"}, {"prompt": "p2"}, {"temperature": 0.0}, {"attempt": 1})}
    assert len(keys) == 5


@pytest.mark.slow
def test_sigkill_mid_run_then_resume(tmp_path):
    server = FaultServer(latency=0.3).start()
    try:
        rows = wrong_paths(24)
        src = tmp_path / "wrong.jsonl"
        write_jsonl(src, rows)
        conf = tmp_path / "c.yaml"
        conf.write_text(yaml.safe_dump({"corrector": cfg(server.url, concurrency=2).model_dump()}))
        cmd = [sys.executable, "-m", "lema.cli", "correct", "--config", str(conf), "--corrector", "llm",
               "--input", str(src), "--output", str(tmp_path / "out.jsonl"), "--cache-dir", str(tmp_path / "cache")]
        env = dict(os.environ, OPENAI_API_KEY=SECRET)
        proc = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        deadline = time.time() + 120
        while time.time() < deadline and len(list((tmp_path / "cache").rglob("*.json"))) < 6:
            time.sleep(0.1)
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        assert not (tmp_path / "out.jsonl").exists()
        done_before = len(list((tmp_path / "cache").rglob("*.json")))
        assert 6 <= done_before < 24
        subprocess.run(cmd, env=env, check=True, capture_output=True)
        out = read_raw(tmp_path / "out.jsonl")
        assert len(out) == 24
        assert sum(server.stats.delivered.values()) == len({r["question"] for r in rows}) == 24
    finally:
        server.stop()


def test_batch_mode_is_discounted_and_resumable(tmp_path, server):
    rows = wrong_paths(12)
    server.batch_delay = 1.0
    # first run stops waiting before the batch completes: nothing lost, batch id kept
    c1 = LLMCorrector(cfg(server.url, batch=True, batch_poll_s=0.1, batch_wait_s=0.2), tmp_path / "cache")
    rep1 = _run(tmp_path, rows, c1)
    assert rep1.n_out == 0 and rep1.n_quarantined == 12 and server.stats.batches_created == 1
    assert all("still running" in r["reasons"][0] for r in read_raw(tmp_path / "q.jsonl"))
    # the rerun collects the same batch instead of submitting a new one
    c2 = LLMCorrector(cfg(server.url, batch=True, batch_poll_s=0.1), tmp_path / "cache")
    rep2 = _run(tmp_path, rows, c2)
    assert rep2.n_out == 12 and server.stats.batches_created == 1
    assert sum(server.stats.delivered.values()) == 12
    assert all(r["corrector"] == "llm:batch" for r in read_raw(tmp_path / "out.jsonl"))
    # the same answers bought online cost twice as much
    online_dir = tmp_path / "online"
    online_dir.mkdir()
    online = LLMCorrector(cfg(server.url), online_dir / "cache")
    _run(online_dir, rows, online)
    assert c2.usage.cost_usd > 0 and abs(c2.usage.cost_usd - online.usage.cost_usd / 2) < 1e-9
