import json

import pytest

from lema.data import load_bundled, load_split
from lema.jsonl import DataError, read_jsonl
from lema.records import WrongPath

from .conftest import DATA


def test_bundled_splits_and_math_partition():
    assert len(load_bundled("gsm8k/train", DATA)) == 7473
    assert len(load_bundled("gsm8k/test", DATA)) == 1319
    train = load_bundled("math/train", DATA)
    evals = load_bundled("math500/test", DATA)
    assert (len(train), len(evals)) == (4500, 500)
    assert not {p.question for p in train} & {p.question for p in evals}
    p = evals[0]
    assert p.task == "math" and p.level and p.subject and p.gold_answer
    g = load_bundled("gsm8k/train", DATA)[0]
    assert g.gold_answer == "72" and g.level is None and g.id.startswith("gsm8k-")


def test_limit_and_unknown_split():
    assert len(load_split("gsm8k/test", data_dir=DATA, limit=5)) == 5
    with pytest.raises(ValueError, match="unknown split"):
        load_bundled("gsm8k/validation", DATA)


def test_broken_json_line_names_file_and_line(tmp_path):
    d = tmp_path / "gsm8k"
    d.mkdir()
    (d / "test.jsonl").write_text('{"question": "q", "answer": "a\\n#### 1"}\n{"question": "q2", "answer": \n')
    with pytest.raises(DataError, match=r"test\.jsonl:2: broken JSON"):
        load_bundled("gsm8k/test", tmp_path)


def test_missing_field_names_field(tmp_path):
    d = tmp_path / "gsm8k"
    d.mkdir()
    (d / "test.jsonl").write_text('{"question": "q", "answer": "x\\n#### 1"}\n{"question": "q2"}\n')
    with pytest.raises(DataError, match=r"test\.jsonl:2: field 'answer': field required"):
        load_bundled("gsm8k/test", tmp_path)


def test_missing_gold_answer_line(tmp_path):
    d = tmp_path / "gsm8k"
    d.mkdir()
    (d / "train.jsonl").write_text(json.dumps({"question": "q", "answer": "no marker"}) + "\n")
    with pytest.raises(DataError, match=r"train\.jsonl:1: field 'answer': no '#### <answer>' line"):
        load_bundled("gsm8k/train", tmp_path)


def test_wrong_path_schema_error(tmp_path):
    f = tmp_path / "wrong.jsonl"
    f.write_text(json.dumps({"id": "1", "task": "gsm8k", "question": "q", "gold_solution": "s",
                             "gold_answer": "1", "generator": "g"}) + "\n")
    with pytest.raises(DataError, match=r"wrong\.jsonl:1: field 'path'"):
        read_jsonl(f, WrongPath)


def test_svamp_is_bundled_and_its_equations_grade_correct():
    from lema.grading.answers import is_correct

    problems = load_split("svamp/test", data_dir=DATA)
    assert len(problems) == 1000 and len({p.id for p in problems}) == 1000
    p = problems[0]
    assert p.task == "gsm8k" and p.gold_answer == "145" and p.question.endswith("How big is each group of bananas?")
    assert all(is_correct(p.gold_solution, p.gold_answer, "gsm8k") for p in problems)  # "( 290.0 / 2.0 ) = 145.0"


def _spec(**kw):
    from lema.config import EvalSetConfig

    return EvalSetConfig.model_validate(kw)


def test_user_jsonl_set_with_field_mapping(tmp_path):
    from lema.data import load_eval_set

    f = tmp_path / "mine.jsonl"
    f.write_text("\n".join(json.dumps(r) for r in [
        {"uid": 7, "ctx": "Ann has 3 apples.", "ask": "How many after buying 1,000 more?", "target": "1,003",
         "difficulty": 2, "topic": "add"},
        {"uid": 8, "ctx": "Bo has 2.5 kg.", "ask": "Double it?", "target": 5.0, "difficulty": 1, "topic": "mul"},
    ]) + "\n")
    spec = _spec(path=str(f), fields={"question": ["ctx", "ask"], "answer": "target", "id": "uid",
                                      "level": "difficulty", "subject": "topic"}, answer_type="numeric")
    ps = load_eval_set("mine", spec)
    assert [(p.id, p.task, p.gold_answer, p.level, p.subject) for p in ps] == [
        ("mine-7", "gsm8k", "1003", "2", "add"), ("mine-8", "gsm8k", "5", "1", "mul")]
    assert ps[0].question == "Ann has 3 apples. How many after buying 1,000 more?"
    assert len(load_eval_set("mine", spec.model_copy(update={"limit": 1}))) == 1
    assert len(load_eval_set("mine", spec.model_copy(update={"limit": 1}), full=True)) == 2

    latex = tmp_path / "tex.jsonl"
    latex.write_text(json.dumps({"problem": "Half of one?", "solution": "So \\boxed{\\frac{1}{2}}."}) + "\n")
    (p,) = load_eval_set("tex", _spec(path=str(latex), fields={"question": "problem", "answer": "solution"},
                                      answer_type="latex"))
    assert p.task == "math" and p.gold_answer == "\\frac{1}{2}" and p.id.startswith("tex-")


@pytest.mark.parametrize("rows,match", [
    ([{"q": "x?", "a": 1}, {"q": "y?"}], r"mine\.jsonl:2: field 'a': missing \(declared as the answer field\)"),
    ([{"q": "x?", "a": "seven"}], r"mine\.jsonl:1: field 'a': not a number: 'seven'"),
    ([{"q": "", "a": 1}], r"mine\.jsonl:1: field 'q': expected non-empty text"),
    ([{"q": "x?", "a": True}], r"mine\.jsonl:1: field 'a': expected a number"),
])
def test_user_set_errors_name_file_line_and_field(tmp_path, rows, match):
    from lema.data import load_eval_set

    f = tmp_path / "mine.jsonl"
    f.write_text("".join(json.dumps(r) + "\n" for r in rows))
    with pytest.raises(DataError, match=match):
        load_eval_set("mine", _spec(path=str(f), fields={"question": "q", "answer": "a"}))


def test_eval_sets_config_keeps_the_short_form_and_accepts_declared_sets(tmp_path):
    from pydantic import ValidationError

    from lema.config import DataConfig, EvalSetConfig

    cfg = DataConfig.model_validate({"eval_sets": {"gsm8k/test": 200, "svamp/test": None,
                                                   "mine": {"path": "x.jsonl", "fields": {"answer": "y"}}}})
    assert cfg.eval_sets["gsm8k/test"] == 200 and cfg.eval_sets["svamp/test"] is None
    assert isinstance(cfg.eval_sets["mine"], EvalSetConfig) and cfg.eval_sets["mine"].fields.answer == "y"
    with pytest.raises(ValidationError, match="exactly one of 'path'"):
        DataConfig.model_validate({"eval_sets": {"mine": {"fields": {"answer": "y"}}}})
    with pytest.raises(ValidationError, match="answer_typo"):
        DataConfig.model_validate({"eval_sets": {"mine": {"path": "x", "answer_typo": "latex"}}})


def test_paper_eval_config_evaluates_the_full_sets():
    from lema.config import load_config
    from lema.stages import common as pl

    from .conftest import ROOT

    cfg = load_config(ROOT / "configs" / "paper-eval.yaml", {"data.dir": str(DATA)})
    sets = pl.eval_sets(cfg)
    assert {k: len(v) for k, v in sets.items()} == {"gsm8k/test": 1319, "math500/test": 500, "svamp/test": 1000}
    assert cfg.evaluate.max_tokens >= 512 and cfg.evaluate.samples == 0


def test_atomic_write_leaves_the_old_file_or_the_new_one_never_half(tmp_path):
    """The one atomic write (jsonl, json, the LLM response cache, Batch ids): an error mid-write keeps the old
    file and no temp file; concurrent writers each land whole."""
    from concurrent.futures import ThreadPoolExecutor

    from lema.jsonl import atomic_open, write_json, write_jsonl
    from lema.llm.cache import ResponseCache

    target = tmp_path / "rows.jsonl"
    write_jsonl(target, [{"a": 1}])
    with pytest.raises(RuntimeError):
        with atomic_open(target) as fh:
            fh.write('{"a": 2}\n{"a"')
            raise RuntimeError("killed mid-write")
    assert target.read_text() == '{"a": 1}\n' and sorted(p.name for p in tmp_path.iterdir()) == ["rows.jsonl"]
    big = {"x": "y" * 200_000}
    with ThreadPoolExecutor(4) as pool:
        list(pool.map(lambda i: write_json(tmp_path / "state.json", big | {"i": i}), range(16)))
    assert json.loads((tmp_path / "state.json").read_text())["x"] == big["x"]
    cache = ResponseCache(tmp_path / "cache")
    key = cache.key({"prompt": "p"})
    cache.put(key, {"text": "t"})
    assert cache.get(key) == {"text": "t"} and not list((tmp_path / "cache").rglob("*.tmp"))
