import json

import pytest

from lema.jsonl import read_raw, write_jsonl
from lema.records import WrongPath
from lema.stages.correct.correct import ReferenceCorrector
from lema.stages.validate.validate import ValidationFailed, run_validate

from .conftest import FIXTURES


@pytest.fixture()
def corrections():
    rows = [WrongPath(**r) for r in read_raw(FIXTURES / "foreign_wrong_paths.jsonl")]
    return [o.correction for o in ReferenceCorrector().correct(rows) if o.correction]


def test_valid_corrections_pass_the_suite(tmp_path, corrections):
    src = tmp_path / "c.jsonl"
    write_jsonl(src, corrections)
    rep = run_validate(src, tmp_path / "v.jsonl", tmp_path / "q.jsonl", tmp_path / "ge.json")
    assert (rep.n_in, rep.n_out, rep.n_quarantined) == (len(corrections), len(corrections), 0)
    ge = json.loads((tmp_path / "ge.json").read_text())
    assert ge["success"] is True and ge["statistics"]["evaluated_expectations"] == 11
    assert {r["step_check"] for r in read_raw(tmp_path / "v.jsonl")} == {"agree"}  # the same checks localised them
    assert rep.details["step_check"]["by_corrector"] == {"reference": {"agree": 6, "disagree": 0, "undecidable": 0,
                                                                       "agreement_rate": 1.0}}


def test_bad_corrections_are_quarantined_with_expectation_names(tmp_path, corrections):
    good = corrections[0]
    bad = [
        good.model_copy(update={"final_answer": "73", "corrected_solution": "Step 2: The answer is 73.",
                                "correction": good.correction.replace("The answer is 72", "The answer is 73")}),
        good.model_copy(update={"incorrect_step": 9, "correction": good.correction.replace("Step 2.", "Step 9.")}),
        good.model_copy(update={"correction": "Step 2 is wrong. The answer is 72.", "explanation": ""}),
        good.model_copy(update={"explanation": "Step 2: Natalia sold 48/2 = 24 clips in May."}),
    ]
    rows = [good] + bad + [good]  # the duplicate of `good` is caught too
    src = tmp_path / "c.jsonl"
    write_jsonl(src, rows)
    rep = run_validate(src, tmp_path / "v.jsonl", tmp_path / "q.jsonl", tmp_path / "ge.json")
    assert rep.n_in == len(rows) == rep.n_out + rep.n_quarantined
    q = read_raw(tmp_path / "q.jsonl")
    reasons = [set(r["reasons"]) for r in q]
    assert "final_answer_equals_gold" in reasons[0]
    assert "incorrect_step_within_path" in reasons[1]
    assert {"three_parts_present", "explanation_non_empty"} <= reasons[2]
    assert "explanation_not_copy_of_solution" in reasons[3]
    assert any("no_duplicate_corrections" in r for r in reasons)
    assert rep.details["failed_expectations"]["final_answer_equals_gold"] == 1


def test_pass_rate_floor_fails_loudly(tmp_path, corrections):
    broken = [c.model_copy(update={"final_answer": "0"}) for c in corrections]
    src = tmp_path / "c.jsonl"
    write_jsonl(src, broken)
    with pytest.raises(ValidationFailed, match="below the floor"):
        run_validate(src, tmp_path / "v.jsonl", tmp_path / "q.jsonl", tmp_path / "ge.json", min_pass_rate=0.5)
    assert len(read_raw(tmp_path / "q.jsonl")) == len(broken)  # quarantine written before failing


def test_leakage_into_evaluation_sets_is_quarantined_and_data_docs_are_built(tmp_path, corrections):
    from lema.data import load_bundled

    from .conftest import DATA

    test_q = load_bundled("gsm8k/test", DATA)[0].question
    leaked = corrections[0].model_copy(update={"question": test_q + " Explain."})
    src = tmp_path / "c.jsonl"
    write_jsonl(src, [leaked] + corrections[1:])
    rep = run_validate(src, tmp_path / "v.jsonl", tmp_path / "q.jsonl", tmp_path / "ge.json",
                       eval_questions=[test_q, "An unrelated question about trains and apples today."],
                       docs_dir=tmp_path / "docs")
    q = read_raw(tmp_path / "q.jsonl")
    assert [r["record"]["question"] for r in q] == [leaked.question]
    assert "no_test_set_leakage" in q[0]["reasons"]
    assert rep.n_out == len(corrections) - 1
    html = list((tmp_path / "docs").rglob("*.html"))
    assert (tmp_path / "docs" / "index.html").exists() and len(html) >= 3
    assert "lema_corrections" in (tmp_path / "docs" / "index.html").read_text()


def test_ngram_overlap_measure():
    from lema.stages.validate.validate import NgramIndex

    idx = NgramIndex(["Tom has five red apples and gives two of them to his sister Mary today"], n=4)
    assert idx.max_overlap("tom has five red apples and gives two of them to his sister mary today") == 1.0
    assert idx.max_overlap("A completely different question about the speed of a train") == 0.0


def test_the_same_suites_validate_paths_and_sft_sets(tmp_path):
    from lema.data import load_bundled
    from lema.records import SampledPath, SFTExample
    from lema.stages.validate.validate import validate_file

    from .conftest import DATA

    test_q = load_bundled("gsm8k/test", DATA)[3].question
    base = dict(id="q1", task="gsm8k", question="Tom has 3 apples and buys 2 more. How many now?",
                gold_solution="3 + 2 = 5\n#### 5", gold_answer="5", generator="g", model="m", prompt_hash="abcdef0123",
                sampling={}, sample_index=0)
    paths = [SampledPath(**base, path="Step 1: The answer is 5.", pred_answer="5", correct=True),
             SampledPath(**base, path="Step 1: The answer is 6.", pred_answer="6", correct=True),  # mis-graded
             SampledPath(**(base | {"question": test_q}), path="x 1", pred_answer="1", correct=False)]  # leaked
    write_jsonl(tmp_path / "p.jsonl", paths)
    rep = validate_file("paths", tmp_path / "p.jsonl", tmp_path / "pv.jsonl", tmp_path / "pq.jsonl",
                        tmp_path / "pge.json", eval_questions=[test_q])
    assert (rep.n_in, rep.n_out, rep.n_quarantined) == (3, 1, 2)
    reasons = [set(r["reasons"]) for r in read_raw(tmp_path / "pq.jsonl")]
    assert reasons == [{"grade_consistent"}, {"no_test_set_leakage"}]
    sft = [SFTExample(id="1", task="gsm8k", kind="cot", prompt="Question: q\nAnswer:\n", completion="Step 1: 1"),
           SFTExample(id="2", task="gsm8k", kind="correction", prompt="Question: q", completion="no format"),
           SFTExample(id="3", task="gsm8k", kind="cot", prompt="Question: q", completion=" ")]
    write_jsonl(tmp_path / "s.jsonl", sft)
    rep = validate_file("sft", tmp_path / "s.jsonl", tmp_path / "sv.jsonl", tmp_path / "sq.jsonl",
                        tmp_path / "sge.json", eval_questions=[])
    assert rep.n_out == 1 and rep.details["failed_expectations"] == {"correction_well_formed": 1,
                                                                    "completion_non_empty": 1}


def _step_rows(corrections):
    """Rows that agree, one that disagrees (the corrector names step 1, the checker step 2) and one undecidable."""
    good = [c for c in corrections if c.incorrect_step == 2]
    moved = good.pop()
    wrong_step = moved.model_copy(update={"incorrect_step": 1, "correction": moved.correction.replace(
        "Incorrect Step: Step 2.", "Incorrect Step: Step 1."), "generator": "g2"})
    latex = good.pop().model_copy(update={"task": "math", "generator": "g2"})
    return good + [wrong_step, latex]


@pytest.mark.parametrize("action", ["quarantine", "tag"])
def test_step_agreement_quarantines_or_tags_disagreeing_rows_and_tags_undecidable_ones(tmp_path, corrections,
                                                                                        action):
    rows = _step_rows(corrections)
    src = tmp_path / "c.jsonl"
    write_jsonl(src, rows)
    rep = run_validate(src, tmp_path / "v.jsonl", tmp_path / "q.jsonl", tmp_path / "ge.json", step_mostly=0.5,
                       step_action=action)
    valid, q = read_raw(tmp_path / "v.jsonl"), read_raw(tmp_path / "q.jsonl")
    tags = {r["step_check"] for r in valid}
    undecidable = [r for r in valid if r["step_check"] == "undecidable"]
    assert len(undecidable) == 1 and undecidable[0]["checker_step"] is None and "math" in undecidable[0][
        "step_check_reason"]
    if action == "quarantine":
        assert tags == {"agree", "undecidable"} and [r["reasons"] for r in q] == [["step_agreement"]]
        assert q[0]["record"]["step_check"] == "disagree" and q[0]["record"]["checker_step"] == 2
    else:
        assert tags == {"agree", "disagree", "undecidable"} and q == [] and rep.n_out == len(rows)
        assert [r["checker_step"] for r in valid if r["step_check"] == "disagree"] == [2]
    sc = rep.details["step_check"]
    n_agree = len(rows) - 2
    assert (sc["agree"], sc["disagree"], sc["undecidable"]) == (n_agree, 1, 1)
    assert sc["agreement_rate"] == n_agree / (n_agree + 1)
    assert sc["by_generator"]["g2"] == {"agree": 0, "disagree": 1, "undecidable": 1, "agreement_rate": 0.0}
    assert sc["valid"]["disagree" if action == "tag" else "agree"] >= 1
    ge = json.loads((tmp_path / "ge.json").read_text())
    step = next(r for r in ge["results"] if r["expectation_config"]["meta"]["name"] == "step_agreement")
    assert step["success"] is True and step["result"]["unexpected_count"] == 1
    assert step["result"]["element_count"] - step["result"]["missing_count"] == n_agree + 1  # undecidable not counted


def test_step_agreement_below_mostly_fails_the_stage(tmp_path, corrections):
    rows = _step_rows(corrections)
    src = tmp_path / "c.jsonl"
    write_jsonl(src, rows)
    with pytest.raises(ValidationFailed, match="step checker agrees with the corrector on .* below"):
        run_validate(src, tmp_path / "v.jsonl", tmp_path / "q.jsonl", tmp_path / "ge.json", step_mostly=0.9,
                     step_action="tag")
    assert len(read_raw(tmp_path / "v.jsonl")) == len(rows)  # outputs are written before failing


def test_error_type_outside_the_list_is_quarantined_and_types_are_counted(tmp_path, corrections):
    rows = [corrections[0].model_copy(update={"error_type": "carelessness"}),
            corrections[1].model_copy(update={"error_type": None})] + corrections[2:]
    src = tmp_path / "c.jsonl"
    write_jsonl(src, rows)
    rep = run_validate(src, tmp_path / "v.jsonl", tmp_path / "q.jsonl", tmp_path / "ge.json")
    assert [r["reasons"] for r in read_raw(tmp_path / "q.jsonl")] == [["error_type_known"]] * 2
    counted = rep.details["error_types"]
    assert sum(n for g in counted.values() for n in g.values()) == len(rows) - 2
    assert {t for g in counted.values() for t in g} <= {"arithmetic slip", "wrong operation",
                                                         "wrong operand or quantity"}
