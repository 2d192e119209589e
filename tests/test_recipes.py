"""Training recipes as configuration, and the dataset mixture rules."""

import pytest

from lema.config import load_config
from lema.records import SFTExample
from lema.stages.train.train import grad_accum, learning_rate, mix

from .conftest import ROOT


def recipe(name: str, tmp_path):
    cfg = tmp_path / f"{name}.yaml"
    cfg.write_text(f"train:\n  recipe: {ROOT / 'recipes' / name}.yaml\n")
    return load_config(cfg).train


PAPER = dict(quantization="nf4", double_quant=True, learning_rate=2e-4, learning_rate_large=1e-4,
             large_model_params_b=34, lr_scheduler="constant", warmup_ratio=0.0, global_batch_size=96,
             max_grad_norm=0.3, weight_decay=0.01, max_steps=1000, bf16=True, gradient_checkpointing=True)
PAPER_LORA = dict(enabled=True, r=64, alpha=16, dropout=0.05, target_modules="all-linear")
PUBLISHED = {
    "qlora-paper-gsm8k": {**PAPER, "max_source_length": 512, "max_target_length": 512},
    "qlora-paper-math": {**PAPER, "max_source_length": 768, "max_target_length": 768},
    "full-small": dict(model="Qwen/Qwen2.5-0.5B", epochs=3, learning_rate=1e-5, lr_scheduler="cosine",
                       warmup_ratio=0.03, global_batch_size=64, batch_size=8, max_length=1024, bf16=True,
                       gradient_checkpointing=True, quantization="none"),
    "tiny-cpu": dict(model="base", epochs=1, learning_rate=5e-4, batch_size=16, max_length=512, warmup_ratio=0.05,
                     lr_scheduler="cosine", quantization="none"),
}


@pytest.mark.parametrize("name", sorted(PUBLISHED))
def test_default_params_plus_recipe_gives_the_published_values(name):
    """Issue 10: params.yaml's own `train:` keys (e.g. `lora: {enabled: false}`) must not undo a recipe."""
    t = load_config(ROOT / "params.yaml", {"train.recipe": str(ROOT / "recipes" / f"{name}.yaml")}).train
    got = t.model_dump()
    assert {k: got[k] for k in PUBLISHED[name]} == PUBLISHED[name]
    if name.startswith("qlora"):
        assert got["lora"] == PAPER_LORA
    else:
        assert got["lora"]["enabled"] is False
    assert t.mixture == {"cot": 1.0, "correction": 1.0}


def test_layers_merge_deeply_and_explicit_values_win(tmp_path):
    qlora = ROOT / "recipes" / "qlora-paper-gsm8k.yaml"
    cfg = tmp_path / "c.yaml"
    cfg.write_text(f"train:\n  recipe: {qlora}\n  max_steps: 500\n  lora: {{r: 8, enabled: false}}\n")
    t = load_config(cfg).train
    # a value that differs from the default overrides only its own key; one restating a default is ignored
    assert t.max_steps == 500 and t.lora.r == 8 and t.lora.enabled and t.lora.alpha == 16
    assert t.quantization == "nf4" and t.learning_rate == 2e-4
    # --set always wins, even when it restates a default
    t = load_config(cfg, {"train.lora.enabled": False, "train.lr_scheduler": "cosine"}).train
    assert not t.lora.enabled and t.lr_scheduler == "cosine" and t.lora.r == 8 and t.bf16


def test_recipe_keys_are_real_trl_fields():
    import dataclasses

    import yaml
    from trl import ModelConfig, SFTConfig

    from lema.config import RECIPE_TRL_KEYS, TrainConfig

    trl_fields = {f.name for f in dataclasses.fields(SFTConfig)} | {f.name for f in dataclasses.fields(ModelConfig)}
    assert set(RECIPE_TRL_KEYS) <= trl_fields
    for target in RECIPE_TRL_KEYS.values():
        assert target.split(".")[0] in TrainConfig.model_fields
    for name in PUBLISHED:  # every recipe is written in trl's names (+ the lema block)
        text = (ROOT / "recipes" / f"{name}.yaml").read_text()
        assert set(yaml.safe_load(text)) - {"lema"} <= set(RECIPE_TRL_KEYS)


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
    bad.write_text("learning_rate: 0.1\nlearning_rat: 0.1\n")
    cfg = tmp_path / "c.yaml"
    cfg.write_text(f"train:\n  recipe: {bad}\n")
    with pytest.raises(ValueError, match=r"r.yaml, line 2: field 'learning_rat'"):
        load_config(cfg)
    bad.write_text("lema:\n  mixtur: {cot: 1}\n")
    with pytest.raises(ValueError, match=r"line 2: field 'mixtur'"):
        load_config(cfg)
    bad.write_text("train:\n  learning_rat: 0.1\n")  # lema's native layout is validated too
    with pytest.raises(ValueError, match="learning_rat"):
        load_config(cfg)
    bad.write_text("warmup_steps: 10\n")
    with pytest.raises(ValueError, match="ratio"):
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
