"""Validate stage: a Great Expectations suite over corrections.

Checks that need lema's own logic (answer equivalence, step counting, the step
checker's verdict, ``lema.grading.step_check``) become derived columns first; GE
then owns the verdicts, the per-row failure lists and the machine-readable result.
Failing rows go to quarantine with the names of every expectation they failed;
rows the step checker disagrees with may instead be kept, tagged.
"""

from __future__ import annotations

import logging
import os
import re
import time
from collections import Counter
from pathlib import Path

from lema.grading.answers import answers_equal, extract_answer
from lema.grading.step_check import ERROR_TYPES, agreement, check_path
from lema.grading.steps import split_steps
from lema.jsonl import iter_jsonl, write_json, write_jsonl
from lema.records import Correction, Quarantined, StageReport
from lema.stages.correct.correct import error_type_counts, parse_correction

STEP_ACTIONS = ("quarantine", "tag")

THREE_PARTS = (r"(?is)^\W*incorrect\s*step\W*(?:step\s*)?\d+.*?\n\W*explanation\W*\S.*?"
               r"\n\W*correct(?:ed)?\s*solution\W*\S")


class NgramIndex:
    """Word n-grams of the evaluation questions, to measure how much of a training
    question appears verbatim in any one of them (normalised: lowercase, no punctuation)."""

    def __init__(self, questions: list[str], n: int = 8):
        self.n = n
        self.index: dict[tuple[str, ...], set[int]] = {}
        for i, q in enumerate(questions):
            for g in self.grams(q):
                self.index.setdefault(g, set()).add(i)

    def grams(self, text: str) -> set[tuple[str, ...]]:
        words = re.sub(r"[^\w\s]", " ", text.lower()).split()
        if len(words) < self.n:
            return {tuple(words)} if words else set()
        return {tuple(words[i : i + self.n]) for i in range(len(words) - self.n + 1)}

    def max_overlap(self, text: str) -> float:
        """Largest share of the text's n-grams found in a single evaluation question."""
        grams = self.grams(text)
        if not grams or not self.index:
            return 0.0
        hits = Counter(i for g in grams for i in self.index.get(g, ()))
        return max(hits.values(), default=0) / len(grams)


def paths_frame(rows, index: "NgramIndex"):
    """Collected paths: provenance present, grade consistent with the gold answer, no eval leakage."""
    import pandas as pd

    return pd.DataFrame.from_records([{
        "path_len": len(r.path.strip()), "prompt_hash": r.prompt_hash or "", "generator": r.generator,
        "grade_consistent": r.correct == answers_equal(r.pred_answer, r.gold_answer, r.task),
        "eval_overlap": index.max_overlap(r.question)} for r in rows])


def paths_suite(leakage_threshold: float = 0.5):
    import great_expectations as gx

    E = gx.expectations
    return named_suite("lema_paths", [
        ("path_non_empty", E.ExpectColumnValuesToBeBetween(column="path_len", min_value=1)),
        ("prompt_hash_recorded", E.ExpectColumnValueLengthsToBeBetween(column="prompt_hash", min_value=8)),
        ("generator_named", E.ExpectColumnValueLengthsToBeBetween(column="generator", min_value=1)),
        ("grade_consistent", E.ExpectColumnValuesToBeInSet(column="grade_consistent", value_set=[True])),
        ("no_test_set_leakage", E.ExpectColumnValuesToBeBetween(column="eval_overlap", min_value=0.0,
                                                                max_value=leakage_threshold)),
    ])


def sft_frame(rows, index: "NgramIndex"):
    """SFT sets: non-empty prompt/completion, known kinds, corrections well-formed, no eval leakage."""
    import pandas as pd

    return pd.DataFrame.from_records([{
        "prompt_len": len(r.prompt.strip()), "completion_len": len(r.completion.strip()), "kind": r.kind,
        "well_formed": r.kind != "correction" or parse_correction(r.completion).incorrect_step is not None,
        "eval_overlap": index.max_overlap(r.prompt)} for r in rows])


def sft_suite(leakage_threshold: float = 0.5):
    import great_expectations as gx

    E = gx.expectations
    return named_suite("lema_sft", [
        ("prompt_non_empty", E.ExpectColumnValuesToBeBetween(column="prompt_len", min_value=1)),
        ("completion_non_empty", E.ExpectColumnValuesToBeBetween(column="completion_len", min_value=1)),
        ("known_kind", E.ExpectColumnValuesToBeInSet(column="kind", value_set=["cot", "correction"])),
        ("correction_well_formed", E.ExpectColumnValuesToBeInSet(column="well_formed", value_set=[True])),
        ("no_test_set_leakage", E.ExpectColumnValuesToBeBetween(column="eval_overlap", min_value=0.0,
                                                                max_value=leakage_threshold)),
    ])


def validate_file(kind: str, input_path: str | Path, output_path: str | Path, quarantine_path: str | Path,
                  result_path: str | Path, eval_questions: list[str], leakage_ngram: int = 8,
                  leakage_threshold: float = 0.5, min_pass_rate: float = 0.0) -> StageReport:
    """The same GE machinery on collected paths (`paths`) or SFT sets (`sft`)."""
    from lema.records import SampledPath, SFTExample

    model, frame, suite = {"paths": (SampledPath, paths_frame, paths_suite),
                           "sft": (SFTExample, sft_frame, sft_suite)}[kind]
    rows = list(iter_jsonl(input_path, model))
    index = NgramIndex(eval_questions, leakage_ngram)
    ge_result, failures = (run_suite(frame(rows, index), lambda: suite(leakage_threshold)) if rows
                           else ({"success": True}, {}))
    write_jsonl(output_path, [r for i, r in enumerate(rows) if i not in failures])
    write_jsonl(quarantine_path, [Quarantined(stage=f"validate:{kind}", reasons=sorted(set(failures[i])),
                                              record=rows[i].model_dump(), source=str(input_path))
                                  for i in sorted(failures)])
    write_json(result_path, ge_result)
    rate = 1 - len(failures) / len(rows) if rows else 1.0
    if rate < min_pass_rate:
        raise ValidationFailed(f"validate {kind}: pass rate {rate:.1%} is below the floor {min_pass_rate:.1%}")
    return StageReport(stage=f"validate:{kind}", n_in=len(rows), n_out=len(rows) - len(failures),
                       n_quarantined=len(failures), details={"pass_rate": rate,
                       "failed_expectations": dict(Counter(n for v in failures.values() for n in v))},
                       outputs={"valid": str(output_path), "quarantine": str(quarantine_path)})


class ValidationFailed(RuntimeError):
    """The share of valid corrections fell below the configured floor."""


def correction_frame(rows: list[Correction]):
    import pandas as pd

    records = []
    for r in rows:
        parsed = parse_correction(r.correction)
        pred = extract_answer(r.corrected_solution, r.task)
        records.append({
            "id": r.id, "path": r.path, "correction": r.correction, "explanation": r.explanation,
            "incorrect_step": r.incorrect_step, "n_path_steps": len(split_steps(r.path)),
            "parsed_step_matches": parsed.incorrect_step == r.incorrect_step,
            "explanation_not_copy": r.explanation.strip() not in r.corrected_solution,
            "final_answer_is_gold": answers_equal(r.final_answer, r.gold_answer, r.task)
            and answers_equal(pred, r.gold_answer, r.task),
            "error_type": r.error_type or "",
            # None (undecidable) is not counted by GE: `mostly` is the agreement rate where both name a step.
            "step_agrees": {"agree": True, "disagree": False}.get(r.step_check or ""),
        })
    df = pd.DataFrame.from_records(records, columns=[
        "id", "path", "correction", "explanation", "incorrect_step", "n_path_steps", "parsed_step_matches",
        "explanation_not_copy", "final_answer_is_gold", "error_type", "step_agrees"])
    df["step_agrees"] = df["step_agrees"].astype(object)
    # The first copy of a correction is kept; later copies are the duplicates.
    df["first_copy"] = ~df.duplicated(subset=["id", "path", "correction"], keep="first")
    return df


def named_suite(name: str, expectations: list[tuple[str, object]]):
    """A GE suite whose expectations carry short names in their meta (used as quarantine reasons)."""
    import great_expectations as gx

    suite = gx.ExpectationSuite(name=name)
    for short, exp in expectations:
        exp.meta = {"name": short}
        suite.add_expectation(exp)
    return suite


def correction_suite(leakage_threshold: float = 1.0, step_mostly: float = 0.8):
    """The expectation suite; each expectation carries a short name in its meta."""
    import great_expectations as gx

    E = gx.expectations
    return named_suite("lema_corrections", [
        ("three_parts_present", E.ExpectColumnValuesToMatchRegex(column="correction", regex=THREE_PARTS)),
        ("incorrect_step_parsed", E.ExpectColumnValuesToBeInSet(column="parsed_step_matches", value_set=[True])),
        ("incorrect_step_positive", E.ExpectColumnValuesToBeBetween(column="incorrect_step", min_value=1)),
        ("incorrect_step_within_path", E.ExpectColumnPairValuesAToBeGreaterThanB(
            column_A="n_path_steps", column_B="incorrect_step", or_equal=True)),
        ("explanation_non_empty", E.ExpectColumnValueLengthsToBeBetween(column="explanation", min_value=10)),
        ("explanation_not_copy_of_solution", E.ExpectColumnValuesToBeInSet(column="explanation_not_copy",
                                                                           value_set=[True])),
        ("final_answer_equals_gold", E.ExpectColumnValuesToBeInSet(column="final_answer_is_gold",
                                                                   value_set=[True])),
        ("no_duplicate_corrections", E.ExpectColumnValuesToBeInSet(column="first_copy", value_set=[True])),
        ("no_test_set_leakage", E.ExpectColumnValuesToBeBetween(column="eval_overlap", min_value=0.0,
                                                                max_value=leakage_threshold)),
        ("error_type_known", E.ExpectColumnValuesToBeInSet(column="error_type", value_set=list(ERROR_TYPES))),
        ("step_agreement", E.ExpectColumnValuesToBeInSet(column="step_agrees", value_set=[True],
                                                         mostly=step_mostly)),
    ])


def step_checked(rows: list[Correction]) -> list[Correction]:
    """Each correction tagged with the step checker's verdict: agree, disagree or undecidable, and why."""
    out = []
    for r in rows:
        check = check_path(r)
        out.append(r.model_copy(update={"step_check": agreement(r.incorrect_step, check),
                                        "checker_step": check.step, "step_check_reason": check.reason}))
    return out


def agreement_table(rows: list[Correction], key: str) -> dict[str, dict]:
    """{generator or corrector: {agree, disagree, undecidable, agreement_rate}}; the rate is over rows where
    both name a step (None when there are none)."""
    groups: dict[str, Counter] = {}
    for r in rows:
        groups.setdefault(getattr(r, key), Counter())[r.step_check] += 1
    return {g: _rates(n) for g, n in sorted(groups.items())}


def _rates(n: Counter) -> dict:
    decided = n["agree"] + n["disagree"]
    return {"agree": n["agree"], "disagree": n["disagree"], "undecidable": n["undecidable"],
            "agreement_rate": n["agree"] / decided if decided else None}


def expectation_succeeded(ge_result: dict, name: str) -> bool:
    """The suite-level verdict of one named expectation (True when it did not run: no rows)."""
    for r in ge_result.get("results") or []:
        if ((r.get("expectation_config") or {}).get("meta") or {}).get("name") == name:
            return bool(r.get("success"))
    return True


def run_suite(df, make_suite, docs_dir: str | Path | None = None):
    """Validate a dataframe; returns (GE result as dict, {row index: [failed expectation names]}).

    Runs as a GE checkpoint in a scratch file context so that Data Docs (HTML) are
    built too; ``make_suite`` is called once that context exists, as GE 1.x requires.
    """
    import shutil
    import tempfile

    import great_expectations as gx

    logging.getLogger("great_expectations").setLevel(logging.ERROR)
    os.environ.setdefault("GX_ANALYTICS_ENABLED", "False")
    with tempfile.TemporaryDirectory(prefix="lema-gx-") as project:
        ctx = gx.get_context(mode="file", project_root_dir=project)
        suite = ctx.suites.add(make_suite())
        batch_def = ctx.data_sources.add_pandas("lema").add_dataframe_asset("rows") \
            .add_batch_definition_whole_dataframe("all")
        vd = ctx.validation_definitions.add(gx.ValidationDefinition(name=suite.name, data=batch_def, suite=suite))
        actions = [gx.checkpoint.UpdateDataDocsAction(name="data_docs")] if docs_dir else []
        checkpoint = ctx.checkpoints.add(gx.Checkpoint(name=f"{suite.name}_checkpoint", validation_definitions=[vd],
                                                       actions=actions, result_format="COMPLETE"))
        run = checkpoint.run(batch_parameters={"dataframe": df})
        result = next(iter(run.run_results.values()))
        if docs_dir:
            site = Path(project) / "gx" / "uncommitted" / "data_docs" / "local_site"
            shutil.rmtree(docs_dir, ignore_errors=True)
            shutil.copytree(site, docs_dir)
    failures: dict[int, list[str]] = {}
    for r in result.results:
        name = (r.expectation_config.meta or {}).get("name", r.expectation_config.type)
        if r.exception_info and r.exception_info.get("raised_exception"):
            raise RuntimeError(f"expectation {name} could not run: {r.exception_info.get('exception_message')}")
        for idx in r.result.get("unexpected_index_list") or []:
            failures.setdefault(int(idx if not isinstance(idx, dict) else next(iter(idx.values()))), []).append(name)
    return result.to_json_dict(), failures


def run_validate(input_path: str | Path, output_path: str | Path, quarantine_path: str | Path,
                 result_path: str | Path, min_pass_rate: float = 0.0, eval_questions: list[str] | None = None,
                 leakage_ngram: int = 8, leakage_threshold: float = 0.5,
                 docs_dir: str | Path | None = None, step_mostly: float = 0.8,
                 step_action: str = "quarantine") -> StageReport:
    """Validate corrections; rows where the step checker disagrees with the corrector are quarantined or kept
    and tagged (`step_action`), and the stage fails when they agree on less than `step_mostly` of the rows."""
    if step_action not in STEP_ACTIONS:
        raise ValueError(f"validate.step_check.action {step_action!r}: expected one of {', '.join(STEP_ACTIONS)}")
    t0 = time.time()
    rows = step_checked(list(iter_jsonl(input_path, Correction)))
    if rows:
        df = correction_frame(rows)
        index = NgramIndex(eval_questions or [], leakage_ngram)
        df["eval_overlap"] = [index.max_overlap(r.question) for r in rows]
        ge_result, failures = run_suite(df, lambda: correction_suite(leakage_threshold, step_mostly), docs_dir)
    else:
        ge_result, failures = {"success": True, "results": [], "statistics": {}}, {}
    if step_action == "tag":  # disagreeing rows stay, tagged step_check=disagree
        failures = {i: f for i, names in failures.items() if (f := [n for n in names if n != "step_agreement"])}
    valid = [r for i, r in enumerate(rows) if i not in failures]
    quarantined = [Quarantined(stage="validate", reasons=sorted(set(failures[i])), record=rows[i].model_dump(),
                               source=str(input_path)) for i in sorted(failures)]
    write_jsonl(output_path, valid)
    write_jsonl(quarantine_path, quarantined)
    write_json(result_path, ge_result)
    pass_rate = len(valid) / len(rows) if rows else 1.0
    report = StageReport(stage="validate", n_in=len(rows), n_out=len(valid), n_quarantined=len(quarantined),
                         seconds=time.time() - t0,
                         details={"pass_rate": pass_rate,
                                  "failed_expectations": dict(Counter(n for v in failures.values() for n in v)),
                                  "step_check": {"action": step_action, "mostly": step_mostly,
                                                 **_rates(Counter(r.step_check for r in rows)),
                                                 "valid": dict(Counter(r.step_check for r in valid)),
                                                 "by_generator": agreement_table(rows, "generator"),
                                                 "by_corrector": agreement_table(rows, "corrector")},
                                  "error_types": error_type_counts(valid)},
                         outputs={"valid": str(output_path), "quarantine": str(quarantine_path),
                                  "ge_result": str(result_path)})
    if pass_rate < min_pass_rate:
        raise ValidationFailed(f"validate: pass rate {pass_rate:.1%} is below the floor {min_pass_rate:.1%} "
                               f"({len(quarantined)} of {len(rows)} rows quarantined in {quarantine_path})")
    if not expectation_succeeded(ge_result, "step_agreement"):
        rate = report.details["step_check"]["agreement_rate"]
        raise ValidationFailed(f"validate: the step checker agrees with the corrector on {rate:.1%} of the rows "
                               f"where both name a step, below validate.step_check.mostly {step_mostly:.1%} "
                               f"(see step_check_reason in {output_path} and {quarantine_path})")
    return report
