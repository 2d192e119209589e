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
