"""Training recipes as configuration, and the dataset mixture rules."""

import pytest

from lema.config import load_config
from lema.records import SFTExample
from lema.train import grad_accum, learning_rate, mix

from .conftest import ROOT


def recipe(name: str, tmp_path):
    cfg = tmp_path / f"{name}.yaml"
    cfg.write_text(f"train:\n  recipe: {ROOT / 'recipes' / name}.yaml\n")
    return load_config(cfg).train


def test_paper_qlora_recipe_as_published(tmp_path):
    cfg = tmp_path / "c.yaml"
    cfg.write_text(f"train:\n  recipe: {ROOT / 'recipes' / 'qlora-paper-gsm8k.yaml'}\n  max_steps: 500\n")
    t = load_config(cfg).train
    assert (t.quantization, t.double_quant, t.lora.enabled, t.lora.r, t.lora.alpha, t.lora.dropout) == (
        "nf4", True, True, 64, 16, 0.05)
    assert t.lora.target_modules == "all-linear"
    assert (t.learning_rate, t.learning_rate_large, t.large_model_params_b) == (2e-4, 1e-4, 34)
    assert (t.lr_scheduler, t.warmup_ratio, t.global_batch_size) == ("constant", 0.0, 96)
    assert (t.max_source_length, t.max_target_length, t.max_grad_norm, t.weight_decay) == (512, 512, 0.3, 0.01)
    assert (t.bf16, t.gradient_checkpointing) == (True, True)
    assert t.max_steps == 500  # keys next to `recipe` override it
    math = recipe("qlora-paper-math", tmp_path)
    assert (math.max_source_length, math.max_target_length) == (768, 768)


def test_paper_learning_rate_rule(tmp_path):
    t = recipe("qlora-paper-gsm8k", tmp_path)
    assert learning_rate(t, 7_000_000_000) == 2e-4
    assert learning_rate(t, 70_000_000_000) == 1e-4
    assert grad_accum(t, world_size=1) == 24 and grad_accum(t, world_size=8) == 3
    with pytest.raises(ValueError, match="multiple"):
        grad_accum(t.model_copy(update={"batch_size": 5}))


@pytest.mark.parametrize("name", ["tiny-cpu", "qlora-paper-gsm8k", "qlora-paper-math", "full-small"])
def test_every_recipe_is_a_valid_config(name, tmp_path):
    assert recipe(name, tmp_path).mixture


def test_unknown_recipe_key_is_rejected(tmp_path):
    bad = tmp_path / "r.yaml"
    bad.write_text("train:\n  learning_rat: 0.1\n")
    cfg = tmp_path / "c.yaml"
    cfg.write_text(f"train:\n  recipe: {bad}\n")
    with pytest.raises(ValueError, match="learning_rat"):
        load_config(cfg)


def _examples(n_cot, n_corr):
    return ([SFTExample(id=str(i), task="gsm8k", kind="cot", prompt="p", completion="c") for i in range(n_cot)]
            + [SFTExample(id=f"x{i}", task="gsm8k", kind="correction", prompt="p", completion="c")
               for i in range(n_corr)])


def test_mixture_weights():
    out = mix(_examples(100, 100), {"cot": 1.0, "correction": 2.0})
    assert sum(e.kind == "cot" for e in out) == 100 and sum(e.kind == "correction" for e in out) == 200
    half = mix(_examples(100, 400), {"cot": 1.0, "correction": 0.5}, seed=3)
    assert 160 < sum(e.kind == "correction" for e in half) < 240


def test_mixture_refuses_missing_or_unknown_sources():
    with pytest.raises(ValueError, match="no such examples"):
        mix(_examples(10, 0), {"cot": 1.0, "correction": 1.0})
    with pytest.raises(ValueError, match="unknown kind"):
        mix(_examples(10, 10), {"cot": 1.0, "rationale": 1.0})
    with pytest.raises(ValueError, match="no training examples"):
        mix(_examples(10, 0), {"cot": 0.0})
