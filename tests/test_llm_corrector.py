"""LLM corrector against a loopback server speaking the OpenAI protocol, with faults injected."""

import json
import os
import signal
import subprocess
import sys
import time

import httpx
import pytest
import yaml

from lema.config import BudgetConfig, CorrectorConfig
from lema.data import load_bundled
from lema.jsonl import read_raw, write_jsonl
from lema.llm.backends import OpenAIBackend, Sampling
from lema.llm.budget import share_of
from lema.llm.cache import ResponseCache
from lema.llm.wire import Usage
from lema.records import WrongPath
from lema.stages.correct.correct import run_correct
from lema.stages.correct.llm import LLMCorrector

from .conftest import DATA, FIXTURES
from .openai_fault_server import Faults, FaultServer

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


# -- budget: token and dollar caps, online and Batch ------------------------------------------------------------

def _worst(c: LLMCorrector, rows) -> int:
    """The largest worst case (tokens) any single request of these rows may reserve."""
    return max(c.transport.worst_case(c.request(c.task.render(WrongPath(**r)), 0)).tokens for r in rows)


@pytest.mark.parametrize("batch", [False, True], ids=["online", "batch"])
def test_token_cap_is_never_passed_and_usage_is_exact(tmp_path, server, batch):
    server.latency, server.batch_delay = 0.05, 0.1  # requests overlap: concurrency must not overshoot the cap
    rows = wrong_paths(20)
    kw = dict(concurrency=16, n=1, max_tokens=40, batch=batch, batch_poll_s=0.05)
    probe = LLMCorrector(cfg(server.url, **kw), tmp_path / "probe")
    worst = _worst(probe, rows)  # the prompt's byte bound + max_tokens: ~5x what the stand-in bills
    cap = 2 * worst
    c = LLMCorrector(cfg(server.url, **kw, budget={"max_tokens": cap}), tmp_path / "cache")
    rep = _run(tmp_path, rows, c)
    billed = server.stats.billed_tokens
    assert 0 < billed <= cap
    # it stopped only when nothing was in flight and the next request's worst case no longer fitted
    assert billed + worst > cap
    if batch:  # each batch holds what fits; the next one what fits once the answers are billed
        assert server.stats.batches_created >= 2 and server.stats.batch_requests == rep.n_out
    # usage is what the server billed, to the token
    assert (c.usage.prompt_tokens, c.usage.completion_tokens) == (server.stats.billed_prompt_tokens,
                                                                  server.stats.billed_completion_tokens)
    assert rep.n_out == c.usage.succeeded == sum(server.stats.delivered.values()) >= 2
    assert rep.n_quarantined == 20 - rep.n_out
    assert all("budget: token cap" in r["reasons"][0] for r in read_raw(tmp_path / "q.jsonl"))
    assert rep.details["usage"]["not_sent_for_budget"] >= 1 and "token cap" in rep.details["stopped"]


@pytest.mark.parametrize("batch", [False, True], ids=["online", "batch"])
def test_dollar_cap_is_never_passed(tmp_path, server, batch):
    server.latency, server.batch_delay = 0.05, 0.1
    rows = wrong_paths(20)
    kw = dict(concurrency=16, n=1, max_tokens=40, batch=batch, batch_poll_s=0.05)
    probe = LLMCorrector(cfg(server.url, **kw), tmp_path / "probe")
    price = probe.cfg.prices["gpt-4o-mini"]
    discount = probe.cfg.batch_discount if batch else 1.0
    worst_usd = max(probe.transport.worst_case(probe.request(probe.task.render(WrongPath(**r)), 0), discount).cost_usd
                    for r in rows)
    cap = 2.5 * worst_usd
    c = LLMCorrector(cfg(server.url, **kw, budget={"max_cost_usd": cap}), tmp_path / "cache")
    rep = _run(tmp_path, rows, c)
    billed_usd = discount * (server.stats.billed_prompt_tokens * price.input
                             + server.stats.billed_completion_tokens * price.output) / 1e6
    assert 0 < c.usage.cost_usd <= cap and abs(c.usage.cost_usd - billed_usd) < 1e-12
    assert c.usage.cost_usd + worst_usd > cap
    assert rep.n_out >= 2 and all("budget: cost cap" in r["reasons"][0] for r in read_raw(tmp_path / "q.jsonl"))


def test_batch_budget_submits_what_fits_and_a_rerun_never_resubmits(tmp_path, server):
    rows = wrong_paths(12)
    server.batch_delay = 0.6
    base = dict(batch=True, n=1, batch_poll_s=0.05)
    # run 1: the cap admits 4 requests; their batch is still running when the run stops waiting
    c1 = LLMCorrector(cfg(server.url, **base, batch_wait_s=0.1, budget={"max_requests": 4}), tmp_path / "cache")
    rep1 = _run(tmp_path, rows, c1)
    assert rep1.n_out == 0 and server.stats.batch_requests == 4
    q = [r["reasons"][0] for r in read_raw(tmp_path / "q.jsonl")]
    assert sum("still running" in r for r in q) == 4 and sum("budget: request cap 4" in r for r in q) == 8
    # run 2, no cap: collects the open batch and submits only the 8 others
    c2 = LLMCorrector(cfg(server.url, **base), tmp_path / "cache")
    rep2 = _run(tmp_path, rows, c2)
    assert rep2.n_out == 12 and server.stats.batches_created == 2 and server.stats.batch_requests == 12
    assert sum(server.stats.delivered.values()) == 12 and c2.usage.succeeded == 12


def test_cost_cap_needs_a_price(tmp_path):
    with pytest.raises(ValueError, match="no entry for model 'unpriced'"):
        LLMCorrector(cfg("http://127.0.0.1:9/v1", model="unpriced", budget={"max_cost_usd": 1.0}), tmp_path)


def test_identical_requests_in_flight_are_bought_once(tmp_path, server):
    server.latency = 0.1
    rows = [dict(wrong_paths(1)[0], id=f"dup-{i}") for i in range(6)]
    c = LLMCorrector(cfg(server.url, concurrency=6), tmp_path / "cache")
    rep = _run(tmp_path, rows, c)
    assert rep.n_out == 6 and sum(server.stats.delivered.values()) == 1 == c.usage.succeeded
    assert c.usage.deduplicated + c.usage.cache_hits == 5


def test_usage_records_sum_across_shards(tmp_path, server):
    rows = wrong_paths(10)
    shards = [LLMCorrector(cfg(server.url), tmp_path / f"cache{i}") for i in range(2)]
    for i, c in enumerate(shards):
        (tmp_path / f"s{i}").mkdir()
        _run(tmp_path / f"s{i}", rows[i::2], c)
    total = Usage.total(c.usage for c in shards)
    assert total == shards[0].usage + shards[1].usage == sum(c.usage for c in shards)
    assert total.succeeded == sum(server.stats.delivered.values())
    assert total.total_tokens == server.stats.billed_tokens
    seen = httpx.get(f"{server.url}/stats").json()  # what a test with the server in another process reads
    assert seen["delivered"] == total.succeeded and seen["max_delivered_per_prompt"] == 1
    assert Usage.model_validate(json.loads(json.dumps(total.as_dict()))) == total  # survives a JSON artifact
    merged = Usage(errors={"http_429": 1}) + Usage(errors={"http_429": 2, "timeout": 1})
    assert merged.errors == {"http_429": 3, "timeout": 1}


def test_openai_generation_backend_shares_the_transport(server):
    server.faults = Faults(rate_429=0.2, rate_500=0.2)
    backend = OpenAIBackend("gen", base_url=server.url, concurrency=4, max_retries=10)
    backend.transport.backoff_base_s, backend.transport.backoff_max_s = 0.01, 0.05
    prompts = [f"Question: {i} + 1?\nCorrect answer: {i + 1}" for i in range(8)]
    out = backend.generate(prompts, Sampling(n=3, temperature=0.8, max_tokens=32))
    assert len(out) == 8 and all(len(cs) == 3 for cs in out)
    assert all(f"The answer is {i + 1}." in c.text for i, cs in enumerate(out) for c in cs)
    assert backend.usage.succeeded == 8 and backend.usage.retries == sum(server.stats.faults.values()) > 0
    assert backend.usage.completion_tokens == server.stats.billed_completion_tokens


def test_a_collected_batch_keeps_answers_nobody_asked_for_this_time(tmp_path, server):
    rows = wrong_paths(8)
    server.batch_delay = 0.4
    base = dict(batch=True, n=1, batch_poll_s=0.05)
    _run(tmp_path, rows, LLMCorrector(cfg(server.url, **base, batch_wait_s=0.05), tmp_path / "cache"))
    assert server.stats.batch_requests == 8  # still running when the run stopped waiting
    half = LLMCorrector(cfg(server.url, **base), tmp_path / "cache")
    assert _run(tmp_path, rows[:4], half).n_out == 4
    assert half.usage.succeeded == 8  # all 8 answers were paid for and are kept
    again = LLMCorrector(cfg(server.url, **base), tmp_path / "cache")
    assert _run(tmp_path, rows, again).n_out == 8
    assert again.usage.cache_hits == 8 and server.stats.batches_created == 1 and server.stats.batch_requests == 8


def test_shares_of_a_budget_add_up_to_at_most_the_whole():
    caps = BudgetConfig(max_requests=10, max_tokens=1001, max_cost_usd=0.3)
    parts = [share_of(caps, 3)] * 3
    assert sum(p.max_requests for p in parts) <= 10 and sum(p.max_tokens for p in parts) <= 1001
    assert sum(p.max_cost_usd for p in parts) <= 0.3 + 1e-12
    assert share_of(BudgetConfig(), 4) == BudgetConfig()


@pytest.mark.parametrize("budget", [{"max_requests": 3}, {"max_tokens": 3000}, {"max_cost_usd": 0.0006}],
                         ids=["requests", "tokens", "dollars"])
def test_a_rerun_with_the_same_cap_never_spends_it_twice(tmp_path, server, budget):
    """The caps bound what the stage's answers cost, cached ones included: a retry after a crash cannot spend
    the budget a second time."""
    rows = wrong_paths(10)
    conf = cfg(server.url, n=1, max_tokens=40, budget=budget)
    first = _run(tmp_path, rows, LLMCorrector(conf, tmp_path / "cache"))
    bought = sum(server.stats.delivered.values())
    assert 0 < first.n_out == bought < 10
    again = LLMCorrector(conf, tmp_path / "cache")
    second = _run(tmp_path, rows, again)
    assert again.usage.cache_hits == bought and second.n_out == bought + again.usage.succeeded
    price = conf.prices["gpt-4o-mini"]
    total = {"max_requests": sum(server.stats.delivered.values()), "max_tokens": server.stats.billed_tokens,
             "max_cost_usd": (server.stats.billed_prompt_tokens * price.input
                              + server.stats.billed_completion_tokens * price.output) / 1e6}
    (cap_name, cap), = budget.items()
    assert total[cap_name] <= cap + 1e-12  # both runs together
    if cap_name == "max_requests":
        assert again.usage.succeeded == 0


def test_a_batch_created_by_a_run_killed_before_recording_it_is_adopted(tmp_path, server):
    """Killed between creating a batch and storing its id: the next run finds the batch by its input file."""
    from openai import OpenAI

    from lema.llm.batch import STATE, SUBMITTING

    rows = wrong_paths(6)
    conf = cfg(server.url, batch=True, n=1, batch_poll_s=0.05)
    c = LLMCorrector(conf, tmp_path / "cache")
    requests = [c.request(c.task.render(WrongPath(**r)), 0) for r in rows]
    # what the killed run did: upload, record the intent, create the batch, and die before recording its id
    client = OpenAI(base_url=server.url, api_key=SECRET)
    lines = "\n".join(json.dumps({"custom_id": r.cache_key(), "method": "POST", "url": r.endpoint, "body": r.body()})
                      for r in requests)
    upload = client.files.create(file=("x.jsonl", lines.encode()), purpose="batch")
    (tmp_path / "cache" / STATE).write_text(json.dumps(
        {f"{SUBMITTING}{upload.id}": {"keys": sorted(r.cache_key() for r in requests), "status": "submitting"}}))
    client.batches.create(input_file_id=upload.id, endpoint="/v1/chat/completions", completion_window="24h")
    rep = _run(tmp_path, rows, c)
    assert rep.n_out == 6 and server.stats.batches_created == 1 and server.stats.batch_requests == 6
    assert list(json.loads((tmp_path / "cache" / STATE).read_text()).values())[0]["status"] == "collected"


def test_a_submission_that_never_reached_the_server_is_forgotten(tmp_path, server):
    from lema.llm.batch import STATE, SUBMITTING

    rows = wrong_paths(4)
    (tmp_path / "cache").mkdir()
    (tmp_path / "cache" / STATE).write_text(json.dumps({f"{SUBMITTING}file-never-made": {"keys": [],
                                                                                          "status": "submitting"}}))
    rep = _run(tmp_path, rows, LLMCorrector(cfg(server.url, batch=True, n=1, batch_poll_s=0.05), tmp_path / "cache"))
    assert rep.n_out == 4 and server.stats.batches_created == 1
    assert not any(k.startswith(SUBMITTING) for k in json.loads((tmp_path / "cache" / STATE).read_text()))


@pytest.mark.parametrize("error_type,reason", [("Wrong operation.", None), (None, "no 'Error Type' part"),
                                               ("a typo", "'a typo' is not one of")])
def test_error_type_is_parsed_and_an_unknown_or_missing_one_is_quarantined(tmp_path, server, error_type, reason):
    server.faults = Faults(error_type=error_type)
    rep = _run(tmp_path, wrong_paths(2), LLMCorrector(cfg(server.url, n=1), tmp_path / "cache"))
    if reason is None:
        assert rep.n_out == 2 and {r["error_type"] for r in read_raw(tmp_path / "out.jsonl")} == {"wrong operation"}
        assert rep.details["error_types"] == {"test": {"wrong operation": 2}}
        return
    q = read_raw(tmp_path / "q.jsonl")
    assert rep.n_out == 0 and len(q) == 2 and all(reason in r["reasons"][0] for r in q)
