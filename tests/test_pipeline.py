"""The whole LeMa loop on the tiny config with every real component (vLLM engine, TRL SFTTrainer, Great
Expectations, MLflow registry), run the way a new user would: a fresh clone, then `dvc repro`; then `lema run`
on the same checkout goes through the same DVC project."""

import json

import pytest

from lema.jsonl import read_jsonl, read_raw
from lema.records import Correction, EvalRow, SampledPath, SFTExample
from lema.stages import instances
from lema.stages.layout import Paths

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def run(clone_run):
    repo, cfg, snapshot = clone_run
    return repo, cfg, Paths(repo / cfg.run_dir), snapshot


def test_dvc_repro_ran_every_declared_stage(run):
    _, cfg, _, snapshot = run
    ran = {line.split("'")[1] for line in snapshot["repro_stdout"].splitlines() if line.startswith("Running stage")}
    assert ran == {n.name for n in instances(cfg)}


def test_every_file_in_the_run_dir_is_declared(run):
    """The declaration is the one layout: every file a run leaves is a declared output, metric, plot or kept path
    of a stage (inside a declared directory counts), or lema's own bookkeeping (lock, config.json, the local
    registry, DVC's .gitignore files and a run-dir project's files)."""
    from lema.orchestration.local import RUN_DIR_GITIGNORE

    _, cfg, p, _ = run
    declared = {path for n in instances(cfg) for path in (*n.outputs, *n.kept)}
    own = {line.strip("/") for line in RUN_DIR_GITIGNORE.splitlines() if line} | {
        ".git", ".dvc", ".dvcignore", "dvc.yaml", "dvc.lock", "params.yaml"}  # a run-dir project's own files
    undeclared = []
    for f in p.root.rglob("*"):
        rel = f.relative_to(p.root).as_posix()
        if f.is_dir() or f.name == ".gitignore" or rel.split("/")[0] in own:
            continue
        if not any(rel == d or rel.startswith(d + "/") for d in declared):
            undeclared.append(rel)
    assert not undeclared


def test_counts_chain(run):
    _, cfg, p, _ = run
    reports = {name: json.loads((p.root / f).read_text()) for name, f in
               (("collect", "collect/report.json"), ("correct", "correct/report.json"),
                ("validate", "validate/report.json"))}
    sampled = read_jsonl(p.collect / "paths.jsonl", SampledPath)
    assert len(sampled) == cfg.data.train_limit * cfg.generators[0].n == reports["collect"]["details"]["samples"]
    wrong = [s for s in sampled if not s.correct]
    assert reports["collect"]["n_out"] == len(wrong)
    assert all(s.prompt_hash and s.sampling["temperature"] == 1.0 for s in sampled)
    c, v = reports["correct"], reports["validate"]
    assert c["n_in"] == len(wrong) == c["n_out"] + c["n_quarantined"]
    assert v["n_in"] == c["n_out"] and v["n_out"] + v["n_quarantined"] == v["n_in"]
    valid = read_jsonl(p.validate / "valid.jsonl", Correction)
    assert len(valid) == v["n_out"] > 0
    assert all(c.step_check in ("agree", "undecidable") and c.error_type for c in valid)  # reference corrector
    sft = read_jsonl(p.sft / "lema.jsonl", SFTExample)
    cot = read_jsonl(p.sft / "cot.jsonl", SFTExample)
    assert sum(e.kind == "correction" for e in sft) == len(valid)
    assert len(cot) == cfg.sft.cot_limit and all(e.kind == "cot" for e in cot)
    assert all(e.prompt.endswith("Correction:\n") for e in sft if e.kind == "correction")
    assert all(e.prompt_hash for e in sft) and len({e.prompt_hash for e in sft}) == 2  # CoT and correction
    assert all(r["reasons"] for r in read_raw(p.correct / "quarantine.jsonl"))


def test_models_trained_and_evaluated(run):
    _, cfg, p, _ = run
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

    _, cfg, p, _ = run
    reg = json.loads((p.register / "report.json").read_text())["details"]
    client = MlflowClient(tracking_uri=reg["tracking_uri"])
    champion = client.get_model_version_by_alias(cfg.register_.model_name, "champion")
    assert str(champion.version) == reg["versions"][reg["candidate"]]
    assert champion.tags["variant"] == reg["champion"] == reg["candidate"]
    other = next(v for k, v in reg["versions"].items() if k != reg["candidate"])
    assert client.get_model_version(cfg.register_.model_name, other).tags["promotion.decision"] == "not-selected"
    assert {"git_commit", "data_version", "config_hash"} <= set(champion.tags)
    run_data = client.get_run(champion.run_id).data
    assert "gsm8k_test.accuracy" in run_data.metrics and "funnel.validated" in run_data.metrics
    assert "funnel.step_agreed" in run_data.metrics and any(k.startswith("validate.error_type.")
                                                           for k in run_data.metrics)
    for variant, version in reg["versions"].items():  # a card on every version, dataset inputs on every run
        mv = client.get_model_version(cfg.register_.model_name, version)
        assert mv.description.startswith(f"# {cfg.register_.model_name} v{version} ({variant})")
        inputs = client.get_run(mv.run_id).inputs.dataset_inputs
        contexts = {i.dataset.name: {t.value for t in i.tags if t.key == "mlflow.data.context"} for i in inputs}
        assert contexts[f"sft/{variant}"] == {"training"} and contexts["gsm8k/test"] == {"evaluation"}
        assert mv.tags["data_version"] == reg["data_versions"][variant]
    promotion = json.loads((p.register / "promotion.json").read_text())  # the DVC metric: numbers only
    assert promotion["promoted"] is True and promotion["version"] == {k: int(v) for k, v in reg["versions"].items()}


def test_report_written_with_the_registry_result(run):
    _, cfg, p, _ = run
    md = (p.report / "report.md").read_text()
    for png in ("funnel.png", "accuracy.png", "incorrect_steps.png", "loss.png", "error_types.png"):
        assert (p.report / "figures" / png).stat().st_size > 1000 and f"figures/{png}" in md
    assert "## Step check" in md and "## Error types" in md
    summary = json.loads((p.root / "summary.json").read_text())
    assert set(summary["comparison"]) == set(cfg.data.eval_sets) and summary["registry"]["versions"]


def test_lema_run_uses_the_same_dvc_project_and_reruns_only_what_changed(run, monkeypatch):
    """`lema run` on the clone's params.yaml: DVC finds nothing stale; a changed key reruns its declared
    readers and, as their outputs change, their descendants (every key's readers: test_dvc_kfp)."""
    import yaml

    from lema.config import load_config
    from lema.orchestration.local import run_all
    from lema.stages import descendants, readers

    from .conftest import lema_env

    repo, cfg, p, _ = run
    monkeypatch.chdir(repo)
    for k in ("PATH", "PYTHONPATH"):  # the stage commands run `lema` from PATH, on the clone's source
        monkeypatch.setenv(k, lema_env(repo)[k])
    again = run_all(cfg, config_path="params.yaml")
    assert [n for n, _, _ in again] == [n.name for n in instances(cfg)] and all(s for _, _, s in again)
    params = yaml.safe_load((repo / "params.yaml").read_text())
    params["evaluate"]["max_tokens"] = 4
    (repo / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    changed = load_config("params.yaml")
    third = {n: skipped for n, _, skipped in run_all(changed, config_path="params.yaml")}
    expected = set().union(*(descendants(r, changed) for r in readers("evaluate.max_tokens", changed)))
    assert expected == {"evaluate@cot", "evaluate@lema", "register", "report"}
    assert {n for n, skipped in third.items() if not skipped} == expected
