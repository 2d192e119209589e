"""Evaluation on bundled, out-of-distribution and user-declared sets, through `lema evaluate`
with a real vLLM engine on the tiny model: per-set accuracy, maj@k / pass@k from sampled
answers, the math-verify disagreement audit, and the paired comparison in the report."""

import json
import shutil

import pytest
import yaml

from lema.grading.answers import is_correct, math_verify_grade
from lema.records import EvalRow
from lema.stages.evaluate.evaluate import summarize

from .conftest import DATA, ROOT


def test_graders_can_disagree_and_the_audit_counts_it():
    text = "I think it is 5"  # lema needs a committed answer (boxed / "the answer is"); math-verify takes any
    assert not is_correct(text, "5", "math") and math_verify_grade(text, "5")
    rows = [EvalRow(id=str(i), task="math", eval_set="math500/test", model="m", question="q", gold_answer="5",
                    prediction=text, pred_answer=None, extracted=False, correct=False, math_verify_correct=mv,
                    grader_disagreement=mv) for i, mv in enumerate([True, False, False])]
    assert summarize(rows)["math500/test"]["grader_disagreements"] == 1
    gsm = EvalRow(id="g", task="gsm8k", eval_set="gsm8k/test", model="m", question="q", gold_answer="5",
                  prediction=text, pred_answer="5", extracted=True, correct=True)
    assert "grader_disagreements" not in summarize([gsm])["gsm8k/test"]


@pytest.mark.slow
def test_lema_evaluate_on_svamp_and_a_user_set_with_maj_at_k(tiny_model, tmp_path, monkeypatch):
    from lema.cli import main
    from lema.config import load_config
    from lema.stages import common as pl
    from lema.stages import layout
    from lema.stages.report.report import write_report

    mine = tmp_path / "my_bench.jsonl"
    mine.write_text("".join(json.dumps({"qid": f"b{i}", "text": f"Tom has {i} apples and buys {i + 2} more. "
                                        "How many apples does he have?", "solution": 2 * i + 2})
                            + "\n" for i in range(1, 4))
                    + json.dumps({"qid": "b4", "text": "When does the show end?", "solution": "5:45"}) + "\n")
    cfg_data = yaml.safe_load((ROOT / "configs" / "tiny.yaml").read_text())
    cfg_data["run_dir"] = str(tmp_path / "run")
    cfg_data["data"] = {"dir": str(DATA), "eval_sets": {
        "svamp/test": 3, "math500/test": 2,
        "my-bench": {"path": str(mine), "fields": {"question": "text", "answer": "solution", "id": "qid"},
                     "answer_type": "numeric", "on_invalid": "skip"}}}
    cfg_data["evaluate"] = {"max_tokens": 24, "samples": 2, "backend": "vllm"}
    cfg_file = tmp_path / "eval.yaml"
    cfg_file.write_text(yaml.safe_dump(cfg_data))
    cfg = load_config(cfg_file)
    p = layout.paths(cfg)
    for v in layout.VARIANTS:  # stand-ins for the two fine-tuned models: the real tiny model, twice
        shutil.copytree(tiny_model, p.model(v))

    assert main(["evaluate", "--config", str(cfg_file)]) == 0

    metrics = {}
    for v in layout.VARIANTS:
        m = json.loads((p.eval(v) / "metrics.json").read_text())
        assert set(m) == {"svamp/test", "math500/test", "my-bench"}
        assert (m["svamp/test"]["n"], m["math500/test"]["n"], m["my-bench"]["n"]) == (3, 2, 3)
        for s in m.values():
            assert 0 <= s["pass@2"] <= 1 and 0 <= s["maj@2"] <= s["pass@2"]
            assert s["correct"] + s["wrong_answer"] + s["no_answer"] == s["n"]
        assert "grader_disagreements" in m["math500/test"] and "grader_disagreements" not in m["my-bench"]
        rows = [json.loads(x) for x in (p.eval(v) / "rows.jsonl").read_text().splitlines()]
        assert {r["id"] for r in rows if r["eval_set"] == "my-bench"} == {"my-bench-b1", "my-bench-b2", "my-bench-b3"}
        assert all(len(r["samples"]) == 2 and len(r["sample_answers"]) == 2 for r in rows)
        report = json.loads((p.eval(v) / "report.json").read_text())  # the skipped row is counted and reported
        assert report["n_quarantined"] == 1 and report["details"]["skipped_invalid"]["my-bench"]["rows"] == [
            {"line": 4, "why": "field 'solution': not a number: '5:45'"}]
        flagged = [json.loads(x) for x in (p.eval(v) / "disagreements.jsonl").read_text().splitlines()]
        assert len(flagged) == m["math500/test"]["grader_disagreements"]
        metrics[v] = m

    cmp = pl.comparison(cfg)
    assert set(cmp) == {"svamp/test", "math500/test", "my-bench"} and cmp["my-bench"]["n"] == 3
    md = write_report(tmp_path / "report", funnel={"sampled paths": 0}, metrics=metrics, step_histogram={},
                      losses={}, stages=[], registry=None, comparison=cmp).read_text()
    for s in ("svamp/test", "my-bench"):
        assert f"| lema | {s} | 3 |" in md and f"| {s} | 3 |" in md  # accuracy row and paired row
