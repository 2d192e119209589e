"""Stage `validate`: keep well-formed corrections that reach the gold answer and whose first wrong step the step
checker confirms (Great Expectations suite)."""

from __future__ import annotations

from lema.config import Config
from lema.jsonl import write_json
from lema.records import StageReport
from lema.stages.common import eval_sets
from lema.stages.layout import paths
from lema.stages.validate.validate import run_validate


def run(cfg: Config, rnd: int = 1) -> StageReport:
    p = paths(cfg, rnd)
    v = cfg.validate_
    eval_questions = [q.question for problems in eval_sets(cfg, full=True).values() for q in problems]
    report = run_validate(p.file("correct/corrections.jsonl"), p.file("validate/valid.jsonl"),
                          p.file("validate/quarantine.jsonl"), p.file("validate/ge_result.json"), v.min_pass_rate,
                          eval_questions=eval_questions, leakage_ngram=v.leakage_ngram,
                          leakage_threshold=v.leakage_threshold,
                          docs_dir=p.file("validate/data_docs") if v.data_docs else None,
                          step_mostly=v.step_check.mostly, step_action=v.step_check.action)
    write_json(p.file("validate/report.json"), report)
    return report
