"""LeMa in rounds (`rounds: N`): the declaration expanded per round for DVC, the CLI and Kubeflow.  Two real
rounds through `lema run` (round 2 added to a finished one-round run dir) are in tests/test_run_dir.py."""

import json

import pytest
import yaml

from lema.config import load_config
from lema.stages import descendants, instances, upstream

from .conftest import DATA, ROOT


def _tiny(**over):
    return load_config(ROOT / "configs" / "tiny.yaml", {"data.dir": str(DATA), **over})


def test_round_one_is_todays_graph():
    one, two = _tiny(), _tiny(rounds=2)
    first = [n.name for n in instances(one)]
    assert [n.name for n in instances(two)][:len(first)] == first
    assert [n.outputs for n in instances(two)][:len(first)] == [n.outputs for n in instances(one)]


def test_declaration_expands_per_round():
    cfg = _tiny(rounds=3)
    nodes = {n.name: n for n in instances(cfg)}
    assert [n for n in nodes if n.endswith("-r2") or "-r2@" in n] == [
        "champion-r2", "collect-r2", "correct-r2", "validate-r2", "pool-r2", "build-sft-r2", "train-r2@cot",
        "train-r2@lema", "evaluate-r2@cot", "evaluate-r2@lema", "register-r2", "report-r2"]
    assert "base-model-r2" not in nodes and "champion" not in nodes and "pool" not in nodes

    def parents(name):
        return {p.name for p in upstream(nodes[name], cfg)}

    # round r's generator comes after round r-1's registration; its collect samples with it, not the base model
    assert parents("champion-r2") == {"register"} and parents("champion-r3") == {"register-r2"}
    assert nodes["champion-r2"].deps(cfg) == ["register/report.json"]
    assert nodes["collect-r2"].deps(cfg) == ["rounds/2/generator/model"]
    # cumulative data: round 2 pools round 1's own outputs, round 3 round 2's pool
    assert parents("pool-r2") == {"validate", "collect", "validate-r2", "collect-r2"}
    assert parents("pool-r3") == {"pool-r2", "validate-r3", "collect-r3"}
    assert parents("build-sft-r3") == {"pool-r3"}
    # training starts from the configured base model every round; registration knows the parent champion
    assert parents("train-r2@lema") == {"build-sft-r2", "base-model"}
    assert "champion-r2" in parents("register-r2")
    assert nodes["train-r2@cot"].outputs == ["rounds/2/train/cot/model", "rounds/2/train/cot/report.json",
                                             "rounds/2/train/cot/loss.json"]
    assert {"collect-r3", "register-r3"} <= descendants("register", cfg)


def test_dvc_yaml_for_rounds():
    from lema.orchestration.dvc import dump, render
    from lema.stages import STAGES

    assert all((ROOT / "src" / "lema" / "stages" / st.package / "stage.py").exists() for st in STAGES)  # code deps exist

    one = render(_tiny())["stages"]
    stages = render(_tiny(rounds=2))["stages"]
    assert list(stages)[:len(one)] == list(one) and all(stages[k] == one[k] for k in one)
    assert list(stages)[len(one):] == ["champion-r2", "collect-r2", "correct-r2", "validate-r2", "pool-r2",
                                       "build-sft-r2", "train-r2", "evaluate-r2", "register-r2", "report-r2"]
    assert stages["champion-r2"]["cmd"] == "lema champion --config params.yaml --round 2"
    assert "${run_dir}/register/report.json" in stages["champion-r2"]["deps"]
    assert stages["collect-r2"]["deps"][0] == "${run_dir}/rounds/2/generator/model"
    assert "${run_dir}/models/base" not in stages["collect-r2"]["deps"]
    train = stages["train-r2"]
    assert train["foreach"] == ["cot", "lema"]
    assert train["do"]["cmd"] == "lema train --config params.yaml --round 2 --variant ${item}"
    assert train["do"]["outs"] == ["${run_dir}/rounds/2/train/${item}/model"]
    assert yaml.safe_load(dump(_tiny(rounds=2)))["stages"] == stages
    # the checked-in default stays the one-round graph
    assert dump(load_config(ROOT / "params.yaml")) == (ROOT / "dvc.yaml").read_text()


def test_kfp_unrolls_rounds_inside_the_registration_branch(tmp_path):
    from kfp import compiler

    from lema.config import load_config
    from lema.orchestration.kfp import build_pipeline

    params = tmp_path / "r3.yaml"
    params.write_text(yaml.safe_dump({**yaml.safe_load((ROOT / "configs" / "tiny.yaml").read_text()), "rounds": 3}))
    out = tmp_path / "p.yaml"
    compiler.Compiler().compile(build_pipeline(load_config(params)), str(out))
    spec = next(yaml.safe_load_all(out.read_text()))
    tasks = {name: (comp_name, t) for comp_name, comp in spec["components"].items()
             for name, t in comp.get("dag", {}).get("tasks", {}).items()}

    def source(task, artifact):
        ref = tasks[task][1]["inputs"]["artifacts"][artifact]
        return ref.get("taskOutputArtifact", {}).get("producerTask") or ref["componentInputArtifact"]

    # round r's champion takes round r-1's register output, in the branch where that registration happened
    assert source("champion", "registry") == "register"
    assert source("champion-2", "registry") == "register-round"
    assert tasks["champion"][0] == tasks["register"][0] and tasks["champion-2"][0] == tasks["register-round"][0]
    assert source("pool", "prev_valid") == "pipelinechannel--validate-valid"
    assert source("pool-2", "prev_valid") == "pipelinechannel--pool-pool"
    assert source("register-round", "champion") == "pipelinechannel--champion-model"
    rnd = {t: tasks[t][1]["inputs"]["parameters"]["rnd"]["runtimeValue"]["constant"]
           for t in ("champion", "pool", "register-round", "champion-2", "pool-2", "register-round-2")}
    assert rnd == {"champion": 2, "pool": 2, "register-round": 2, "champion-2": 3, "pool-2": 3,
                   "register-round-2": 3}
    # every task reaches the registry through the lema-pipeline config map
    platform = yaml.safe_dump(list(yaml.safe_load_all(out.read_text()))[1])
    assert platform.count("lema-pipeline") >= len([t for t in tasks if t.startswith(("champion", "register"))])


def test_rounds_need_fresh_questions():
    from lema.stages.common import collect_problems

    cfg = _tiny(rounds=3)
    r1, r2 = collect_problems(cfg, 1), collect_problems(cfg, 2)
    assert len(r1) == len(r2) == cfg.data.train_limit and not {p.id for p in r1} & {p.id for p in r2}
    with pytest.raises(ValueError, match="data.train_limit"):
        _tiny(rounds=2, **{"data.train_limit": None})
    with pytest.raises(ValueError, match="round 400 needs training questions"):
        collect_problems(_tiny(**{"data.train_limit": 20}), 400)


def _rows(tag: str, n: int):
    from lema.records import Correction, SampledPath

    base = dict(task="gsm8k", question=f"q {tag}", gold_solution="1+1=2\n#### 2", gold_answer="2", generator="g")
    right = [SampledPath(id=f"{tag}-{i}", path="1+1=2", model="m", prompt_hash="h", sampling={}, sample_index=0,
                         pred_answer="2", correct=True, **base) for i in range(n)]
    valid = [Correction(id=f"{tag}-{i}", path="1+1=3", incorrect_step=1, explanation="e", corrected_solution="2",
                        final_answer="2", correction="c", corrector="reference", **base) for i in range(n)]
    return valid, right


def test_kfp_pool_task_chains_rounds(tmp_path):
    """The Kubeflow `pool` body through run_stage: round 2 pools round 1's validate and collect artifacts,
    round 3 round 2's pool, in the order the local pool stage writes them."""
    from lema.jsonl import read_jsonl, write_jsonl
    from lema.orchestration.artifacts import run_stage
    from lema.orchestration.kfp_cli import resolved_config_text
    from lema.records import Correction, SampledPath

    text = resolved_config_text(ROOT / "configs" / "tiny.yaml")
    dirs = {}
    for r in (1, 2, 3):
        valid, right = _rows(f"r{r}", r)
        dirs[r] = {"validate": tmp_path / f"v{r}", "collect": tmp_path / f"c{r}"}
        write_jsonl(dirs[r]["validate"] / "valid.jsonl", valid)
        write_jsonl(dirs[r]["collect"] / "right.jsonl", right)
    pool2, pool3 = tmp_path / "pool2", tmp_path / "pool3"
    run_stage("pool", text, {"prev_validate": str(dirs[1]["validate"]), "prev_collect": str(dirs[1]["collect"]),
                             "validate": str(dirs[2]["validate"]), "collect": str(dirs[2]["collect"])},
              {"pool": str(pool2)}, rnd=2)
    run_stage("pool", text, {"prev_pool": str(pool2), "validate": str(dirs[3]["validate"]),
                             "collect": str(dirs[3]["collect"])}, {"pool": str(pool3)}, rnd=3)
    assert [c.id for c in read_jsonl(pool3 / "valid.jsonl", Correction)] == [
        "r1-0", "r2-0", "r2-1", "r3-0", "r3-1", "r3-2"]
    assert len(read_jsonl(pool3 / "right.jsonl", SampledPath)) == 6
    report = json.loads((pool3 / "report.json").read_text())
    assert report["details"] == {"round": 3, "corrections": 6, "right_paths": 6, "new_corrections": 3}
