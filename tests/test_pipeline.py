"""The whole LeMa loop on the tiny config with every real component:
vLLM engine, TRL SFTTrainer, Great Expectations, MLflow registry."""

import json

import pytest

from lema.config import load_config
from lema.jsonl import read_jsonl, read_raw
from lema.pipeline import paths, run_all
from lema.records import Correction, EvalRow, SampledPath, SFTExample

from .conftest import DATA, ROOT

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    root = tmp_path_factory.mktemp("run")
    cfg = load_config(ROOT / "configs" / "tiny.yaml", {"run_dir": str(root), "data.dir": str(DATA)})
    results = run_all(cfg)
    return cfg, results


def test_every_stage_ran_and_counts_chain(run):
    cfg, results = run
    names = [n for n, _, _ in results]
    assert names == ["base-model", "collect", "correct", "validate", "build-sft", "train:cot", "train:lema",
                     "evaluate:cot", "evaluate:lema", "register", "report"]
    assert not any(skipped for _, _, skipped in results)
    reports = {n: r for n, r, _ in results}
    p = paths(cfg)
    sampled = read_jsonl(p.collect / "paths.jsonl", SampledPath)
    n_gen = cfg.generators[0].n
    assert len(sampled) == cfg.data.train_limit * n_gen == reports["collect"].details["samples"]
    wrong = [s for s in sampled if not s.correct]
    assert reports["collect"].n_out == len(wrong)
    assert all(s.prompt_hash and s.sampling["temperature"] == 1.0 for s in sampled)
    # nothing is lost between stages
    assert reports["correct"].n_in == len(wrong) == reports["correct"].n_out + reports["correct"].n_quarantined
    assert reports["validate"].n_in == reports["correct"].n_out
    assert reports["validate"].n_out + reports["validate"].n_quarantined == reports["validate"].n_in
    valid = read_jsonl(p.validate / "valid.jsonl", Correction)
    assert len(valid) == reports["validate"].n_out > 0
    sft = read_jsonl(p.sft / "lema.jsonl", SFTExample)
    cot = read_jsonl(p.sft / "cot.jsonl", SFTExample)
    assert sum(e.kind == "correction" for e in sft) == len(valid)
    assert len(cot) == cfg.sft.cot_limit and all(e.kind == "cot" for e in cot)
    assert all(e.prompt.endswith("Correction:\n") for e in sft if e.kind == "correction")
    assert all(e.prompt_hash for e in sft) and len({e.prompt_hash for e in sft}) == 2  # CoT and correction


def test_models_trained_and_evaluated(run):
    cfg, _ = run
    p = paths(cfg)
    for v in ("cot", "lema"):
        assert (p.model(v) / "model.safetensors").exists()
        rows = read_jsonl(p.eval(v) / "rows.jsonl", EvalRow)
        assert len(rows) == sum(cfg.data.eval_sets.values()) and all(r.prompt_hash for r in rows)
        metrics = json.loads((p.eval(v) / "metrics.json").read_text())
        for s, m in metrics.items():
            mine = [r for r in rows if r.eval_set == s]
            assert m["correct"] == sum(r.correct for r in mine)
            assert m["no_answer"] + m["wrong_answer"] + m["correct"] == m["n"]
        loss = json.loads((p.train(v) / "loss.json").read_text())
        assert loss and all(h["loss"] > 0 for h in loss)


def test_registry_has_both_versions_and_a_champion(run):
    from mlflow import MlflowClient

    cfg, _ = run
    reg = json.loads((paths(cfg).register / "report.json").read_text())["details"]
    client = MlflowClient(tracking_uri=reg["tracking_uri"])
    champion = client.get_model_version_by_alias(cfg.register_.model_name, "champion")
    # a fresh registry: the run's better variant becomes champion, the other is recorded as not selected
    assert str(champion.version) == reg["versions"][reg["candidate"]]
    assert champion.tags["variant"] == reg["champion"] == reg["candidate"]
    assert champion.tags["promotion.reason"] == "no current champion"
    other = next(v for k, v in reg["versions"].items() if k != reg["candidate"])
    assert client.get_model_version(cfg.register_.model_name, other).tags["promotion.decision"] == "not-selected"
    assert {"git_commit", "data_version", "config_hash"} <= set(champion.tags)
    assert "MLFLOW_TRACKING_URI" not in __import__("os").environ  # the run did not leak its store
    run_data = client.get_run(champion.run_id).data
    assert "gsm8k_test.accuracy" in run_data.metrics and "funnel.validated" in run_data.metrics
    assert run_data.params["train.epochs"] == str(cfg.train.epochs)


def test_report_written(run):
    cfg, _ = run
    p = paths(cfg)
    md = (p.report / "report.md").read_text()
    for png in ("funnel.png", "accuracy.png", "incorrect_steps.png", "loss.png"):
        assert (p.report / png).stat().st_size > 1000 and png in md
    summary = json.loads((p.root / "summary.json").read_text())
    assert set(summary["comparison"]) == set(cfg.data.eval_sets)


def test_rerun_skips_everything_then_param_change_reruns_downstream(run):
    cfg, _ = run
    again = run_all(cfg)
    assert all(skipped for _, _, skipped in again)
    changed = cfg.model_copy(update={"evaluate": cfg.evaluate.model_copy(update={"max_tokens": 4})})
    third = {n: skipped for n, _, skipped in run_all(changed)}
    assert all(third[n] for n in ("base-model", "collect", "correct", "validate", "build-sft", "train:cot",
                                  "train:lema"))
    assert not any(third[n] for n in ("evaluate:cot", "evaluate:lema", "register", "report"))
    q = read_raw(paths(cfg).correct / "quarantine.jsonl")
    assert all(r["reasons"] for r in q)
