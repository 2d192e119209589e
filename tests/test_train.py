"""TRL fine-tuning for real on the tiny model: full, LoRA (merged), and resume."""

import json

import pytest

from lema.config import TrainConfig
from lema.jsonl import write_jsonl
from lema.records import SFTExample
from lema.stages.train.train import train

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


KILL_AT = """
import os, signal, sys
from transformers import TrainerCallback
from lema.config import TrainConfig
from lema.stages.train.train import train

class Kill(TrainerCallback):
    def on_save(self, args, state, control, **kw):
        if state.global_step == int(sys.argv[5]):
            os.kill(os.getpid(), signal.SIGKILL)

cfg = TrainConfig.model_validate_json(sys.argv[4])
train(sys.argv[1], sys.argv[2], sys.argv[3], cfg, seed=0, callbacks=[Kill()])
"""


def _killed_run(tiny_model, sft_file, out, cfg, step):
    """Train in a child process that SIGKILLs itself right after saving checkpoint `step`."""
    import os
    import signal
    import subprocess
    import sys

    from .conftest import ROOT

    env = {**os.environ, "PYTHONPATH": str(ROOT / "src"), "OMP_NUM_THREADS": "1"}
    proc = subprocess.run([sys.executable, "-c", KILL_AT, str(tiny_model), str(sft_file), str(out),
                           cfg.model_dump_json(), str(step)], env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == -signal.SIGKILL, proc.stderr[-2000:]
    assert not (out / "model").exists()


def test_changed_config_trains_afresh_from_the_base_model(tiny_model, sft_file, tmp_path):
    """Issue 9: an interrupted run with another learning rate is never continued; a new key starts at step 0."""
    cfg = TrainConfig(epochs=1, batch_size=8, max_length=128, logging_steps=1, save_steps=1)
    out = tmp_path / "train" / "cot"
    _killed_run(tiny_model, sft_file, out, cfg, step=2)
    root = tmp_path / "checkpoints" / "cot"
    (old_key,) = [d.name for d in root.iterdir()]
    assert (root / old_key / "checkpoint-2").is_dir()
    rep = train(str(tiny_model), sft_file, out, cfg.model_copy(update={"learning_rate": 1e-3}), seed=0)
    assert rep.details["run_key"] != old_key
    assert rep.details["resumed_from"] is None and rep.details["steps"] == 3
    assert [h["step"] for h in json.loads((out / "loss.json").read_text())] == [1, 2, 3]
    assert not root.exists()  # a finished run leaves nothing to resume


def test_sigkill_mid_training_resumes_to_the_same_step_count(tiny_model, sft_file, tmp_path):
    cfg = TrainConfig(epochs=3, batch_size=8, max_length=128, save_steps=2)
    out = tmp_path / "train" / "lema"
    _killed_run(tiny_model, sft_file, out, cfg, step=4)
    rep = train(str(tiny_model), sft_file, out, cfg, seed=0)
    assert rep.details["resumed_from"] == "checkpoint-4" and rep.details["steps"] == 9
    assert (out / "model" / "model.safetensors").exists()
    again = train(str(tiny_model), sft_file, out, cfg, seed=0)  # same inputs, finished: trains again in full
    assert again.details["resumed_from"] is None and again.details["steps"] == 9


def test_paper_qlora_reaches_cuda_check_on_cpu(tiny_model, sft_file, tmp_path):
    """The whole recipe resolves into trl/peft/bitsandbytes objects; only the missing GPU stops the run."""
    import torch

    from lema.config import load_config
    from lema.stages.train.train import plan

    from .conftest import ROOT

    t = load_config(ROOT / "params.yaml", {"train.recipe": str(ROOT / "recipes" / "qlora-paper-gsm8k.yaml")}).train
    p = plan(str(tiny_model), sft_file, tmp_path / "train" / "lema", t, seed=0, name="model")
    a = p.args
    assert (a.learning_rate, a.lr_scheduler_type.value, a.warmup_steps, a.max_grad_norm, a.weight_decay) == (
        2e-4, "constant", 0.0, 0.3, 0.01)
    assert (a.max_steps, a.per_device_train_batch_size * a.gradient_accumulation_steps, a.bf16,
            a.gradient_checkpointing, a.max_length) == (1000, 96, True, True, 1024)
    assert (p.peft.r, p.peft.lora_alpha, p.peft.lora_dropout, p.peft.target_modules) == (64, 16, 0.05, "all-linear")
    q = p.quant
    assert (q.load_in_4bit, q.bnb_4bit_quant_type, q.bnb_4bit_use_double_quant, q.bnb_4bit_compute_dtype) == (
        True, "nf4", True, torch.bfloat16)
    if not torch.cuda.is_available():
        with pytest.raises(ValueError, match="needs a CUDA GPU"):
            train(str(tiny_model), sft_file, tmp_path / "train" / "lema", t, seed=0)


def test_ddp_on_two_cpu_processes_saves_one_model(tiny_model, sft_file, tmp_path):
    """`accelerate launch` with the repo's DDP config (on CPU: gloo) trains across 2 ranks; rank 0 alone writes."""
    import os
    import shutil
    import subprocess
    import sys

    import yaml

    from .conftest import ROOT

    run = tmp_path / "run"
    shutil.copytree(tiny_model, run / "models" / "base")
    (run / "sft").mkdir()
    shutil.copy(sft_file, run / "sft" / "cot.jsonl")
    cfg = tmp_path / "c.yaml"
    cfg.write_text(yaml.safe_dump({"run_dir": str(run), "train": {
        "epochs": 1, "batch_size": 4, "global_batch_size": 8, "max_length": 128, "logging_steps": 1}}))
    ddp = yaml.safe_load((ROOT / "recipes" / "accelerate" / "ddp.yaml").read_text())
    ddp.update(use_cpu=True, num_processes=2, mixed_precision="no")  # the GPU settings, moved to 2 CPU ranks
    (tmp_path / "ddp.yaml").write_text(yaml.safe_dump(ddp))
    env = {**os.environ, "PYTHONPATH": str(ROOT / "src"), "OMP_NUM_THREADS": "1"}
    proc = subprocess.run([sys.executable, "-m", "accelerate.commands.launch", "--config_file",
                           str(tmp_path / "ddp.yaml"), "--main_process_port", "29517", "-m", "lema.cli", "train",
                           "--variant", "cot", "--config", str(cfg)],
                          env=env, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    reports = [json.loads(line) for line in proc.stdout.splitlines() if line.startswith('{"stage"')]
    assert len(reports) == 2 and {r["details"]["world_size"] for r in reports} == {2}
    assert {r["details"]["steps"] for r in reports} == {3}  # 24 examples / (4 per rank x 2 ranks), no accumulation
    out = run / "train" / "cot"
    assert sorted(p.name for p in out.iterdir()) == ["loss.json", "model", "report.json"]
    assert len(list((out / "model").glob("*.safetensors"))) == 1
    assert json.loads((out / "report.json").read_text())["details"]["world_size"] == 2


def test_base_model_pretrains_through_trainer_reproducibly(tiny_config, tmp_path):
    """`lema base-model`: the fixed step budget gives the same weights twice on CPU (and runs on a GPU if any)."""
    from safetensors.torch import load_file

    from lema.stages.base_model.build import build_base_model

    from .conftest import DATA

    cfg = tiny_config.base_model.model_copy(update={"pretrain_steps": 6})
    reps = [build_base_model(cfg, tmp_path / f"m{i}", data_dir=str(DATA), seed=0, limit=120) for i in (0, 1)]
    assert [r.details["steps"] for r in reps] == [6, 6]
    a, b = (load_file(tmp_path / f"m{i}" / "model.safetensors") for i in (0, 1))
    assert a.keys() == b.keys() and all((a[k] == b[k]).all() for k in a)
    assert len((tmp_path / "m0" / "pretrain_loss.txt").read_text().split()) == 6


def test_gpu_check_script_cpu_smoke_run(tmp_path):
    """scripts/gpu_check.sh in its CPU smoke mode, with the packages the GPU machine lacks made unimportable:
    every step passes except QLoRA, which must stop at its CUDA check."""
    import os
    import subprocess
    import sys

    from .conftest import ROOT

    blocked = tmp_path / "blocked"
    for name in ("mlflow", "kfp", "dvc", "great_expectations", "vllm"):
        (blocked / name).mkdir(parents=True)
        (blocked / name / "__init__.py").write_text(f"raise ImportError('{name} is not on the GPU machine')\n")
    env = {**os.environ, "PYTHON": sys.executable, "PYTHONPATH": str(blocked), "OMP_NUM_THREADS": "1",
           "GPU_CHECK_WORK": str(tmp_path / "work"), "GPU_CHECK_ALLOW_CPU": "1", "GPU_CHECK_SMALL": "1",
           "GPU_CHECK_CORPUS_LIMIT": "150", "GPU_CHECK_PRETRAIN_STEPS": "4", "GPU_CHECK_STEPS": "2",
           "GPU_CHECK_QUESTIONS": "3", "GPU_CHECK_EVAL": "3", "GPU_CHECK_BACKEND": "transformers"}
    proc = subprocess.run(["bash", str(ROOT / "scripts" / "gpu_check.sh")], env=env, capture_output=True,
                          text=True, timeout=900)
    lines = [line for line in proc.stdout.splitlines() if line.startswith("step ")]
    status = {line.split()[1]: line.split()[2] for line in lines}
    assert status == {"env": "ok", "base-model": "ok", "collect": "ok", "train-full": "ok", "train-lora": "ok",
                      "train-qlora": "expected-fail", "evaluate": "ok"}, proc.stdout + proc.stderr
    assert proc.returncode == 0 and all(line.split()[3].endswith("s") for line in lines)
    assert (tmp_path / "work" / "train" / "lora" / "model" / "model.safetensors").exists()
    # a failing step is reported and makes the run fail, while the others still run
    env["GPU_CHECK_ONLY"] = "env train-qlora"
    env.pop("GPU_CHECK_ALLOW_CPU")
    bad = subprocess.run(["bash", str(ROOT / "scripts" / "gpu_check.sh")], env=env, capture_output=True, text=True,
                         timeout=300)
    assert bad.returncode != 0 and "step env FAILED" in bad.stdout and "step train-qlora FAILED" in bad.stdout


def test_run_key_follows_config_sft_set_base_model_and_seed(tiny_model, sft_file, tmp_path):
    import shutil

    from lema.stages.train.train import run_key

    cfg = TrainConfig(epochs=1)
    key = run_key(str(tiny_model), sft_file, cfg, 0)
    assert run_key(str(tiny_model), sft_file, cfg.model_copy(update={"recipe": "other.yaml"}), 0) == key
    assert run_key(str(tiny_model), sft_file, cfg.model_copy(update={"epochs": 2.0}), 0) != key
    assert run_key(str(tiny_model), sft_file, cfg, 1) != key
    other_sft = tmp_path / "other.jsonl"
    other_sft.write_text(sft_file.read_text().replace("What is 1 +", "What is 1 plus"))
    assert run_key(str(tiny_model), other_sft, cfg, 0) != key
    rebuilt = tmp_path / "base"
    shutil.copytree(tiny_model, rebuilt)
    assert run_key(str(rebuilt), sft_file, cfg, 0) == key  # same files, same key
    (rebuilt / "model.safetensors").write_bytes((rebuilt / "model.safetensors").read_bytes()[:-1] + b" ")
    assert run_key(str(rebuilt), sft_file, cfg, 0) != key


def test_an_example_whose_prompt_fills_max_length_is_counted_and_named(tiny_model, sft_file, tmp_path, capsys):
    """TRL drops an example left with no completion token after truncation; the report counts it and stderr
    says why, so nothing is dropped silently."""
    from lema.jsonl import read_jsonl

    rows = read_jsonl(sft_file, SFTExample)
    rows[0] = rows[0].model_copy(update={"prompt": "Question: " + "one two three " * 60 + "?\nAnswer:\n"})
    write_jsonl(sft_file, rows)
    cfg = TrainConfig(epochs=1, batch_size=8, logging_steps=1, max_length=64)
    rep = train(str(tiny_model), sft_file, tmp_path / "long", cfg, seed=0)
    assert rep.details["examples_trained"] == 23 and rep.details["dropped_prompt_fills_max_length"] == 1
    assert rep.details["steps"] == 3
    assert "1 of 24 examples not trained on: the prompt fills train.max_length=64" in capsys.readouterr().err
