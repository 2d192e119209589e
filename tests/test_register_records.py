"""Promotion records are honest: a first registration says no comparison was made (card, tags,
report); a second one records the exact McNemar p, the bootstrap interval and the minimum
detectable difference, in all three places, through the one decision rule and formatter."""

import json
from pathlib import Path

from lema.registry.promote import format_decision
from lema.registry.store import register_models
from lema.stages.report.report import write_report
from lema.stats import mcnemar_exact


def _cand(tmp_path: Path, name: str, model: Path, correct: list[bool], tag: str) -> dict:
    rows = tmp_path / f"{tag}-{name}.jsonl"
    rows.write_text("".join(json.dumps({"id": f"q{i}", "eval_set": "gsm8k/test", "correct": c}) + "\n"
                            for i, c in enumerate(correct)))
    n, k = len(correct), sum(correct)
    return {"name": name, "model_dir": model, "rows": rows,
            "metrics": {"gsm8k/test": {"n": n, "correct": k, "accuracy": k / n, "no_answer": 0}}}


def _report(tmp_path: Path, details: dict, tag: str) -> str:
    metrics = {"lema": {"gsm8k/test": {"n": 100, "correct": 40, "accuracy": 0.4, "no_answer": 0}}}
    return write_report(tmp_path / f"report-{tag}", funnel={"sampled paths": 1}, metrics=metrics, step_histogram={},
                        losses={}, stages=[], registry=details, comparison=None).read_text()


def test_first_registration_has_no_statistics_second_has_real_ones(tmp_path, tiny_model, monkeypatch):
    from mlflow import MlflowClient

    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    (tmp_path / "cwd").mkdir()
    monkeypatch.chdir(tmp_path / "cwd")  # a new experiment's artifacts go beside the SQLite store, not to ./mlruns
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    kw = dict(uri=uri, experiment="records", model_name="records-model", primary_metric="gsm8k/test", params={},
              run_artifacts=[], stage_metrics={})
    first = register_models([_cand(tmp_path, "cot", tiny_model, [True] * 20 + [False] * 80, "a"),
                             _cand(tmp_path, "lema", tiny_model, [True] * 40 + [False] * 60, "a")], **kw).details
    client = MlflowClient(tracking_uri=uri)
    v1 = client.get_model_version_by_alias("records-model", "champion")
    d1 = first["decision"]
    assert d1["promote"] and not d1["compared"]
    assert all(d1[k] is None for k in ("n", "diff", "p_value", "ci95", "wins", "losses", "mdd"))
    assert "first version" in v1.description and "McNemar" not in v1.description
    assert v1.tags["promotion.compared"].startswith("false") and "first version" in v1.tags["promotion.summary"]
    assert not {"promotion.p_value", "promotion.ci95", "promotion.diff", "promotion.mdd"} & set(v1.tags)
    md = _report(tmp_path, first, "a")
    assert "first version" in md and "McNemar" not in md and "p=0" not in md

    # second registration on the same 100 questions: 30 questions only the new model gets right
    second = register_models([_cand(tmp_path, "cot", tiny_model, [False] * 100, "b"),
                              _cand(tmp_path, "lema", tiny_model, [True] * 70 + [False] * 30, "b")], **kw).details
    d2 = second["decision"]
    assert d2["promote"] and d2["compared"] and d2["against"] == f"v{v1.version}"
    assert (d2["n"], d2["wins"], d2["losses"]) == (100, 30, 0)
    assert d2["p_value"] == mcnemar_exact(30, 0) and 0 < d2["ci95"][0] < 0.3 < d2["ci95"][1]
    assert d2["mdd"] == 0.12  # 30 discordant pairs: 21 vs 9 is the smallest split with p < 0.05
    v2 = client.get_model_version_by_alias("records-model", "champion")
    line = format_decision(d2)
    assert line in v2.description and "first version" not in v2.description
    assert float(v2.tags["promotion.p_value"]) == float(f"{mcnemar_exact(30, 0):.6g}")
    assert v2.tags["promotion.mdd"] == "0.1200" and v2.tags["promotion.summary"] == line
    assert line in _report(tmp_path, second, "b")
    assert not any((tmp_path / "cwd").iterdir())
    assert client.get_experiment_by_name("records").artifact_location == (tmp_path / "mlartifacts").as_uri()
    assert any((tmp_path / "mlartifacts").rglob("MLmodel"))


def test_registry_calls_download_through_the_server_unless_the_caller_chose(tmp_path, monkeypatch):
    """Inside lema's MLflow block, downloads are proxied by the tracking server (a presigned URL names the
    server's storage endpoint, which a client elsewhere may not reach); a caller's own choice is kept, and the
    environment is restored afterwards."""
    import os

    from lema.registry.store import PROXY_DOWNLOADS, using_tracking_uri

    uri = f"sqlite:///{tmp_path / 'm.db'}"
    monkeypatch.delenv(PROXY_DOWNLOADS, raising=False)
    with using_tracking_uri(uri):
        assert os.environ[PROXY_DOWNLOADS] == "false"
    assert PROXY_DOWNLOADS not in os.environ
    monkeypatch.setenv(PROXY_DOWNLOADS, "true")
    with using_tracking_uri(uri):
        assert os.environ[PROXY_DOWNLOADS] == "true"
    assert os.environ[PROXY_DOWNLOADS] == "true"
