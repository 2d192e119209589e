"""Generation backends on a real tiny model: vLLM engine, transformers, and the
OpenAI-compatible client against a real `vllm serve` on loopback."""

import os
import socket
import subprocess
import sys
import time

import httpx
import pytest

from lema.llm.backends import OpenAIBackend, Sampling, TransformersBackend, VLLMBackend

pytestmark = pytest.mark.slow

PROMPTS = [f"Question: Tom has {i} apples and buys {i + 2} more. How many apples does he have?\nAnswer:\n"
           for i in range(1, 9)]


@pytest.fixture(scope="module")
def vllm_backend(tiny_model):
    b = VLLMBackend(str(tiny_model), seed=0, dtype="float32")
    yield b
    b.close()


def test_vllm_sampling_shape_and_stop(vllm_backend):
    out = vllm_backend.generate(PROMPTS, Sampling(n=3, temperature=1.0, max_tokens=40, stop=("Step 2",)))
    assert len(out) == len(PROMPTS) and all(len(c) == 3 for c in out)
    assert all("Step 2" not in c.text and 0 < c.n_tokens <= 40 for cs in out for c in cs)


def test_vllm_greedy_matches_transformers(vllm_backend, tiny_model):
    s = Sampling(n=1, temperature=0.0, max_tokens=12)
    a = [c[0].text for c in vllm_backend.generate(PROMPTS, s)]
    assert a == [c[0].text for c in vllm_backend.generate(PROMPTS, s)]  # greedy is deterministic
    hf = TransformersBackend(str(tiny_model), batch_size=4)
    b = [c[0].text for c in hf.generate(PROMPTS, s)]
    same = sum(x.strip() == y.strip() for x, y in zip(a, b))
    assert same >= len(PROMPTS) // 2, list(zip(a, b))


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def vllm_server(tiny_model):
    port = _free_port()
    env = dict(os.environ, VLLM_ENABLE_V1_MULTIPROCESSING="0")
    proc = subprocess.Popen([sys.executable, "-m", "vllm.entrypoints.openai.api_server", "--model", str(tiny_model),
                             "--served-model-name", "tiny", "--host", "127.0.0.1", "--port", str(port),
                             "--dtype", "float32", "--gpu-memory-utilization", "0.1", "--seed", "0", "--enforce-eager"],
                            env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    url = f"http://127.0.0.1:{port}"
    deadline = time.time() + 240
    while time.time() < deadline:
        if proc.poll() is not None:
            pytest.fail(f"vllm serve exited: {proc.stderr.read()[-2000:]}")
        try:
            if httpx.get(f"{url}/health", timeout=2).status_code == 200:
                break
        except httpx.HTTPError:
            time.sleep(2)
    else:
        proc.kill()
        pytest.fail("vllm serve did not become healthy in 240 s")
    yield f"{url}/v1"
    proc.terminate()
    proc.wait(30)


def test_openai_backend_against_vllm_serve(vllm_server, monkeypatch):
    monkeypatch.setenv("OPENAI_API_KEY", "test-key-not-secret")
    b = OpenAIBackend("tiny", base_url=vllm_server, concurrency=4)
    out = b.generate(PROMPTS[:4], Sampling(n=2, temperature=0.8, max_tokens=16, stop=("\nQuestion:",)))
    assert len(out) == 4 and all(len(c) == 2 for c in out)
    assert all(isinstance(c.text, str) and "\nQuestion:" not in c.text for cs in out for c in cs)
    greedy = b.generate(PROMPTS[:2], Sampling(n=1, temperature=0.0, max_tokens=10))
    assert greedy == b.generate(PROMPTS[:2], Sampling(n=1, temperature=0.0, max_tokens=10))


def test_llm_corrector_against_vllm_serve_quarantines_malformed_answers(vllm_server, tmp_path, monkeypatch):
    """The tiny model cannot write corrections; every row must still end corrected or quarantined, with reasons."""
    from lema.config import CorrectorConfig
    from lema.jsonl import read_raw
    from lema.stages.correct.correct import run_correct
    from lema.stages.correct.llm import LLMCorrector

    from .conftest import FIXTURES

    monkeypatch.setenv("OPENAI_API_KEY", "test-key-not-secret")
    cfg = CorrectorConfig(kind="llm", model="tiny", base_url=vllm_server, api="completions", shots=1, n=2,
                          max_tokens=48, timeout_s=60)
    src = FIXTURES / "foreign_wrong_paths.jsonl"
    corrector = LLMCorrector(cfg, tmp_path / "cache")
    rep = run_correct(src, tmp_path / "out.jsonl", tmp_path / "q.jsonl", corrector)
    n = len(read_raw(src))
    assert rep.n_in == n == rep.n_out + rep.n_quarantined
    q = read_raw(tmp_path / "q.jsonl")
    assert rep.n_quarantined >= n - 2 and all("attempt 1:" in r["reasons"][0] for r in q if r["record"]["path"].strip())
    assert rep.details["usage"]["succeeded"] == len(list((tmp_path / "cache").rglob("*.json"))) > 0
