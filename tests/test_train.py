"""TRL fine-tuning for real on the tiny model: full, LoRA (merged), and resume."""

import json

import pytest

from lema.config import TrainConfig
from lema.jsonl import write_jsonl
from lema.records import SFTExample
from lema.train import train

pytestmark = pytest.mark.slow


@pytest.fixture()
def sft_file(tmp_path):
    rows = [SFTExample(id=str(i), task="gsm8k", kind="cot", prompt=f"Question: What is {i} + 1?\nAnswer:\n",
                       completion=f"Step 1: {i} + 1 = {i + 1}\nStep 2: The answer is {i + 1}.") for i in range(24)]
    f = tmp_path / "sft.jsonl"
    write_jsonl(f, rows)
    return f


def test_full_finetune_lowers_loss(tiny_model, sft_file, tmp_path):
    cfg = TrainConfig(epochs=3, batch_size=8, learning_rate=3e-3, logging_steps=1, max_length=128)
    rep = train(str(tiny_model), sft_file, tmp_path / "full", cfg, seed=0)
    hist = json.loads((tmp_path / "full" / "loss.json").read_text())
    assert rep.details["steps"] == 9 and hist[-1]["loss"] < hist[0]["loss"]
    assert (tmp_path / "full" / "model" / "model.safetensors").exists()


def test_lora_is_merged_into_a_plain_model(tiny_model, sft_file, tmp_path):
    from transformers import AutoModelForCausalLM

    cfg = TrainConfig(epochs=1, batch_size=8, logging_steps=1, max_length=128,
                      lora={"enabled": True, "r": 4, "alpha": 8})
    train(str(tiny_model), sft_file, tmp_path / "lora", cfg, seed=0)
    out = tmp_path / "lora" / "model"
    assert not (out / "adapter_config.json").exists()
    merged = AutoModelForCausalLM.from_pretrained(out)
    assert not any("lora" in n for n, _ in merged.named_parameters())


def test_resume_continues_from_last_checkpoint(tiny_model, sft_file, tmp_path):
    first = train(str(tiny_model), sft_file, tmp_path / "r", TrainConfig(epochs=1, batch_size=8, max_length=128), seed=0)
    assert first.details["steps"] == 3 and list((tmp_path / "r" / "checkpoints").glob("checkpoint-3"))
    second = train(str(tiny_model), sft_file, tmp_path / "r", TrainConfig(epochs=2, batch_size=8, max_length=128),
                   seed=0)
    assert second.details["steps"] == 6
    hist = json.loads((tmp_path / "r" / "loss.json").read_text())
    assert all(h["step"] > 3 for h in hist)
