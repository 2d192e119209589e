"""Step agreement and error types reach the funnel, the MLflow metric keys and the run report."""

import json

from lema.config import Config
from lema.jsonl import read_raw, write_json, write_jsonl
from lema.records import WrongPath
from lema.stages.common import funnel_counts, quality_metrics, validate_details
from lema.stages.correct.correct import ReferenceCorrector
from lema.stages.layout import paths
from lema.stages.report.report import write_report
from lema.stages.validate.validate import run_validate

from .conftest import FIXTURES


def test_funnel_metrics_and_report_show_step_agreement_and_error_types(tmp_path):
    cfg = Config(run_dir=str(tmp_path / "run"))
    p = paths(cfg)
    rows = [WrongPath(**r) for r in read_raw(FIXTURES / "foreign_wrong_paths.jsonl")]
    corrections = [o.correction for o in ReferenceCorrector().correct(rows) if o.correction]
    corrections.append(corrections[0].model_copy(update={"id": "latex-copy", "task": "math"}))  # undecidable
    write_jsonl(tmp_path / "c.jsonl", corrections)
    rep = run_validate(tmp_path / "c.jsonl", tmp_path / "v.jsonl", tmp_path / "q.jsonl", tmp_path / "ge.json",
                       step_action="tag")
    write_json(p.validate / "report.json", rep)
    write_json(p.collect / "report.json", {"n_out": len(rows), "details": {"samples": 20}})
    write_json(p.correct / "report.json", {"n_out": len(corrections)})

    funnel = funnel_counts(cfg)
    assert funnel == {"sampled paths": 20, "wrong paths": 8, "corrected": 7, "validated": 7, "step agreed": 6,
                      "step disagreed": 0, "step undecidable": 1}
    metrics = quality_metrics(validate_details(cfg))
    assert metrics["validate.step_agreement"] == 1.0
    assert metrics["validate.step_agreement.corrector.reference"] == 1.0
    assert metrics["validate.step_agreement.generator.foreign_prose"] == 1.0
    assert metrics["validate.error_type.arithmetic_slip"] == 4  # three slips and the LaTeX copy of one
    assert sum(v for k, v in metrics.items() if k.startswith("validate.error_type.")) == 7

    details = validate_details(cfg)
    metrics = {"lema": {"gsm8k/test": {"n": 10, "correct": 5, "accuracy": 0.5, "no_answer": 0}}}
    md = write_report(tmp_path / "report", funnel=funnel, metrics=metrics, step_histogram={}, losses={}, stages=[],
                      registry=None, comparison=None, step_check=details["step_check"],
                      error_types=details["error_types"]).read_text()
    assert "| step agreed | 6 |" in md and "| step undecidable | 1 |" in md
    assert "agree on 100.0%" in md and "kept and tagged" in md
    assert "| corrector | reference | 6 | 0 | 1 | 100.0% |" in md
    assert "| foreign:prose | wrong operation | 1 |" in md
    figure = tmp_path / "report" / "figures" / "error_types.png"
    assert figure.stat().st_size > 1000 and "figures/error_types.png" in md
    assert json.loads((tmp_path / "ge.json").read_text())["success"] is True
