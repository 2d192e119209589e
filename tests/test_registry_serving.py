"""Registry records and the serving contract on the tiny model: dataset inputs with digests and sources on every
run, a data version that follows the data (and nothing else), a card on every version, numbers-only DVC metrics,
and `mlflow models serve` of the champion answering a GSM8K question exactly as `lema evaluate` recorded it."""

import hashlib
import json
import os
import shutil
import signal
import subprocess
import sys
from pathlib import Path

import httpx
import pytest

from lema.jsonl import read_raw, write_jsonl
from lema.records import SFTExample
from lema.stages.layout import VARIANTS, paths

from .conftest import DATA, FIXTURES, ROOT, free_port, wait_for_http

MODEL = "serving-test-model"


def _config(run_dir):
    from lema.config import load_config

    return load_config(ROOT / "configs" / "tiny.yaml",
                       {"data.dir": str(DATA), "run_dir": str(run_dir), "evaluate.backend": "transformers",
                        "data.eval_sets": {"gsm8k/test": 3, "math500/test": 1}})


def _data(cfg) -> None:
    """The files a real run leaves for the register stage: SFT sets, wrong paths, validated corrections."""
    p = paths(cfg)
    for v, n in (("cot", 2), ("lema", 3)):
        write_jsonl(p.sft / f"{v}.jsonl", [SFTExample(id=f"q{i}", task="gsm8k", kind="cot", prompt=f"Question: {i}?\n"
                                                      "Answer:\n", completion=f"The answer is {i}.") for i in range(n)])
    p.collect.mkdir(parents=True, exist_ok=True)
    shutil.copy(FIXTURES / "foreign_wrong_paths.jsonl", p.collect / "wrong.jsonl")
    write_jsonl(p.validate / "valid.jsonl", [{"id": "q1", "path": "1 + 1 = 3", "incorrect_step": 1,
                                              "sampling": {"temperature": 1.0}}])


@pytest.fixture(scope="module")
def registered(tmp_path_factory, tiny_model):
    """Both variants (the tiny model) evaluated by the evaluate stage, then registered in a SQLite store."""
    from lema.registry.store import register_models
    from lema.stages.evaluate.stage import run as evaluate
    from lema.stages.register.stage import candidates, promotion_numbers, serving_contract

    cfg = _config(tmp_path_factory.mktemp("serving") / "run")
    p = paths(cfg)
    for v in VARIANTS:
        shutil.copytree(tiny_model, p.model(v))
        evaluate(cfg, v)
    _data(cfg)
    uri = f"sqlite:///{p.root / 'mlflow.db'}"
    os.environ.pop("MLFLOW_TRACKING_URI", None)
    cands = candidates(cfg)
    cwd = os.getcwd()
    os.chdir(p.root)  # as the stage runs (the store's artifacts: mlartifacts/ beside its mlflow.db)
    try:
        report = register_models(cands, uri=uri, experiment="serving", model_name=MODEL, primary_metric="gsm8k/test",
                                 params=cfg.model_dump(mode="json", by_alias=True), run_artifacts=[],
                                 stage_metrics={}, tags={"git_commit": "abc"}, seed=cfg.seed,
                                 serving=serving_contract(cfg))
    finally:
        os.chdir(cwd)
    return cfg, uri, cands, report, promotion_numbers(report)


def test_every_run_has_its_dataset_inputs_with_digests_and_sources(registered):
    from mlflow import MlflowClient

    cfg, uri, _, report, _ = registered
    p = paths(cfg)
    client = MlflowClient(tracking_uri=uri)
    for v in VARIANTS:
        inputs = client.get_run(report.details["run_ids"][v]).inputs.dataset_inputs
        got = {(i.dataset.name, next(t.value for t in i.tags if t.key == "mlflow.data.context")): i.dataset
               for i in inputs}
        expected = {(f"sft/{v}", "training"), ("gsm8k/test", "evaluation"), ("math500/test", "evaluation")}
        if v == "lema":
            expected |= {("wrong-paths", "wrong-paths"), ("corrections", "corrections")}
        assert set(got) == expected
        sft = got[(f"sft/{v}", "training")]
        assert sft.digest == hashlib.md5((p.sft / f"{v}.jsonl").read_bytes()).hexdigest()  # DVC's md5 of the file
        assert str(p.sft / f"{v}.jsonl") in sft.source and json.loads(sft.profile)["num_rows"] == (2 if v == "cot"
                                                                                                   else 3)
        gsm = got[("gsm8k/test", "evaluation")]
        assert str(DATA / "gsm8k" / "test.jsonl") in gsm.source and json.loads(gsm.profile)["num_rows"] == 3
    wrong = client.get_run(report.details["run_ids"]["lema"]).inputs.dataset_inputs
    assert any(i.dataset.digest == hashlib.md5((p.collect / "wrong.jsonl").read_bytes()).hexdigest() for i in wrong)


def test_data_version_follows_the_data_and_nothing_else(registered, tmp_path):
    """Same SFT and eval bytes under another config, code and dvc.lock: same version; one changed row: new."""
    from lema.registry.datasets import variant_records
    from lema.registry.provenance import data_version
    from mlflow import MlflowClient

    cfg, uri, cands, report, _ = registered
    client = MlflowClient(tracking_uri=uri)
    tagged = {v: client.get_model_version(MODEL, report.details["versions"][v]).tags["data_version"] for v in VARIANTS}
    assert tagged == {c["name"]: data_version(c["datasets"]) for c in cands} == report.details["data_versions"]
    assert tagged["cot"] != tagged["lema"]  # each version: the SFT set it trained on

    other = _config(tmp_path / "run")  # another run dir, other training parameters, a dvc.lock beside it
    other.train.learning_rate = 0.5
    shutil.copytree(cfg.run_path, other.run_path, ignore=shutil.ignore_patterns("model", "mlflow.db"))
    (tmp_path / "dvc.lock").write_text("schema: '2.0'\nstages: {train: {cmd: changed}}\n")
    assert {v: data_version(variant_records(other, v)) for v in VARIANTS} == tagged

    q = paths(other)
    with (q.sft / "cot.jsonl").open("a") as fh:  # one more training row for cot only
        fh.write(SFTExample(id="new", task="gsm8k", kind="cot", prompt="Q\n", completion="A").model_dump_json() + "\n")
    changed = {v: data_version(variant_records(other, v)) for v in VARIANTS}
    assert changed["cot"] != tagged["cot"] and changed["lema"] == tagged["lema"]
    rows = read_raw(q.eval("lema") / "rows.jsonl")  # an evaluation question's gold answer changes
    rows[0]["gold_answer"] = "123456"
    write_jsonl(q.eval("lema") / "rows.jsonl", rows)
    assert data_version(variant_records(other, "lema")) != tagged["lema"]


def test_every_version_carries_its_model_card_and_metrics_are_numbers(registered, tmp_path):
    from mlflow import MlflowClient

    _, uri, _, report, metrics = registered
    client = MlflowClient(tracking_uri=uri)
    for v, version in report.details["versions"].items():
        mv = client.get_model_version(MODEL, version)
        assert mv.description.startswith(f"# {MODEL} v{version} ({v})") and "## Serving" in mv.description
        assert "sft/" + v in mv.description and "## Data" in mv.description
        card = client.download_artifacts(report.details["run_ids"][v], "model_card.md", str(tmp_path))
        assert open(card).read() == mv.description
    other = next(v for v in VARIANTS if v != report.details["candidate"])
    assert "not selected" in client.get_model_version(MODEL, report.details["versions"][other]).description

    def leaves(x):
        return [y for v in x.values() for y in leaves(v)] if isinstance(x, dict) else [x]

    assert all(isinstance(x, (int, float, bool)) for x in leaves(metrics))
    assert metrics["promoted"] is True and metrics["compared"] is False
    assert "model_card" not in json.dumps(report.details)


def test_logged_model_declares_params_input_example_and_prompt(registered, tmp_path):
    import mlflow
    from lema.registry.store import download_champion

    cfg, uri, _, _, _ = registered
    mlflow.set_tracking_uri(uri)
    try:
        info = mlflow.models.get_model_info(f"models:/{MODEL}@champion")
        local = mlflow.artifacts.download_artifacts(f"models:/{MODEL}@champion", dst_path=str(tmp_path / "m"))
    finally:
        mlflow.set_tracking_uri(None)
    params = {p.name: p for p in info.signature.params.params}
    assert set(params) == {"max_new_tokens", "temperature", "top_p", "stop"}
    assert params["max_new_tokens"].default == cfg.evaluate.max_tokens and params["stop"].default == cfg.evaluate.stop
    assert [c.name for c in info.signature.inputs.inputs] == ["question", "task"]
    assert info.saved_input_example_info is not None and os.path.exists(os.path.join(local, "input_example.json"))
    import yaml

    mlmodel = yaml.safe_load(open(os.path.join(local, "MLmodel")))
    prompt = mlmodel["flavors"]["python_function"]["config"]["prompts"]["gsm8k"]
    assert prompt["template"] == "Question: {{question}}\nAnswer:\n"
    got = download_champion(uri, MODEL, tmp_path / "hf")  # the next round's generator: a plain HF directory
    assert (tmp_path / "hf" / "config.json").exists() and (tmp_path / "hf" / "tokenizer.json").exists()
    assert got["variant"] == "lema"


@pytest.mark.slow
def test_served_champion_answers_as_evaluate_recorded_under_params(registered):
    cfg, uri, _, report, _ = registered
    champ = report.details["champion"]
    rows = read_raw(paths(cfg).eval(champ) / "rows.jsonl")
    port = free_port()
    # as from an activated venv: MLflow's scoring server execs `uvicorn` from PATH
    env = dict(os.environ, MLFLOW_TRACKING_URI=uri,
               PATH=f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}")
    proc = subprocess.Popen([sys.executable, "-m", "mlflow", "models", "serve", "-m", f"models:/{MODEL}@champion",
                             "--env-manager", "local", "-h", "127.0.0.1", "-p", str(port), "-w", "1"],
                            env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
                            start_new_session=True)  # the server's workers go down with its process group
    url = f"http://127.0.0.1:{port}"
    try:
        wait_for_http(proc, f"{url}/ping", "mlflow models serve", tries=300)

        def ask(row, **params):
            body = {"dataframe_records": [{"question": row["question"], "task": row["task"]}], "params": params}
            r = httpx.post(f"{url}/invocations", json=body, timeout=120)
            assert r.status_code == 200, r.text
            return r.json()["predictions"][0]

        e = cfg.evaluate
        for row in (rows[0], next(r for r in rows if r["task"] == "math")):
            full = ask(row, max_new_tokens=e.max_tokens, temperature=0.0, stop=e.stop)
            assert full == row["prediction"]  # the answer only, exactly as recorded; the prompt is not echoed
            assert not full.startswith("Question:")
        assert ask(rows[0]) == rows[0]["prediction"]  # no params: the evaluation's settings are the defaults
        short = ask(rows[0], max_new_tokens=5)
        assert short and len(short) < len(rows[0]["prediction"]) and rows[0]["prediction"].startswith(short)
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(30)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
