import pytest

from lema.config import load_config
from lema.data import load_bundled
from lema.prompts import cot_prompt, load_prompt
from lema.registry.store import flatten

from .conftest import DATA, ROOT


def test_cot_prompt_render_and_hash():
    p = cot_prompt("gsm8k")
    zero = p.render(shots=0, question="What is 2 + 2?")
    assert zero == "Question: What is 2 + 2?\nAnswer:\n"
    four = p.render(shots=4, question="What is 2 + 2?")
    assert four.startswith(p.instruction) and four.count("Question:") == 5 and four.endswith(zero)
    assert p.hash(0) != p.hash(4) and p.hash(4) == cot_prompt("gsm8k").hash(4)
    with pytest.raises(ValueError, match="exemplars"):
        p.render(shots=9, question="q")


def test_exemplars_use_the_step_format_and_only_training_questions():
    test_questions = {p.question for p in load_bundled("gsm8k/test", DATA)}
    test_questions |= {p.question for p in load_bundled("math500/test", DATA)}
    for name in ("cot_gsm8k", "cot_math", "correction"):
        prompt = load_prompt(name)
        for ex in prompt.exemplars:
            assert ex["question"] not in test_questions
            text = ex.get("solution") or ex["correction"]
            assert "Step 1:" in text or "Incorrect Step:" in text
            assert text.rstrip().splitlines()[-1].split(": ", 1)[1].startswith("The answer is")


def test_latex_braces_survive_rendering():
    out = cot_prompt("math").render(shots=1, question="Find $\\frac{1}{2}$.")
    assert "$\\frac{1}{2}$" in out and "{{" not in out


def test_config_defaults_and_overrides():
    cfg = load_config(ROOT / "params.yaml", {"train.epochs": 3})
    assert cfg.train.epochs == 3 and cfg.corrector.kind == "reference" and len(cfg.generators) == 2
    assert cfg.section_hash("train") != load_config(ROOT / "params.yaml").section_hash("train")


def test_config_errors_name_the_field(tmp_path):
    f = tmp_path / "bad.yaml"
    f.write_text("train:\n  epochs: many\n")
    with pytest.raises(ValueError, match=r"bad.yaml: field 'train.epochs'"):
        load_config(f)
    f.write_text("trian: {}\n")
    with pytest.raises(ValueError, match="trian"):
        load_config(f)
    f.write_text("kubeflow:\n  small_memory: 1 GB\n")  # a pod quantity Kubernetes would refuse at run time
    with pytest.raises(ValueError, match=r"bad.yaml: field 'kubeflow.small_memory'"):
        load_config(f)


def test_secrets_never_become_params():
    flat = flatten({"corrector": {"api_key": "sk-123", "model": "gpt"}, "token": "x", "a": {"b": 1}})
    assert flat == {"corrector.model": "gpt", "a.b": "1"}
