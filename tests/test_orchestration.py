"""The stage declaration and everything generated from it (dvc.yaml, KFP pipeline, CLI), images, kustomize
overlays: fast structural checks on the real artifacts."""

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from lema.config import load_config
from lema.stages import BY_NAME, STAGES, descendants, instances, readers

from .conftest import ROOT, changed_value


def test_compiled_pipeline_is_not_stale(tmp_path):
    from lema.orchestration.kfp_cli import compile_pipeline

    fresh = compile_pipeline(ROOT / "params.yaml", tmp_path / "p.yaml")
    checked_in = ROOT / "pipelines" / "lema_pipeline.yaml"
    assert list(yaml.safe_load_all(fresh.read_text())) == list(yaml.safe_load_all(checked_in.read_text())), (
        "pipelines/lema_pipeline.yaml is stale: run `lema pipeline compile`")


def test_dvc_yaml_is_not_stale():
    from lema.orchestration.dvc import dump

    assert dump(load_config(ROOT / "params.yaml")) == (ROOT / "dvc.yaml").read_text(), (
        "dvc.yaml is stale: run `lema dvc generate`")


def test_kustomize_image_tags_are_not_stale():
    from lema.orchestration.images import kustomize_tags

    assert (ROOT / "infra" / "images" / "tags.yaml").read_text() == kustomize_tags(), (
        "infra/images/tags.yaml is stale: run `make infra-images`")


def test_dvc_params_and_outs_are_the_declaration():
    dvc = yaml.safe_load((ROOT / "dvc.yaml").read_text())["stages"]
    round_one = [st for st in STAGES if st.rounds != "later"]  # rounds: 1 (champion/pool come from round 2)
    assert list(dvc) == [st.name for st in round_one]
    for st in round_one:
        body = dvc[st.name]["do"] if st.variants else dvc[st.name]
        recipe = [{"recipes/tiny-cpu.yaml": None}] if st.recipes else []  # recipe values are params too
        assert body["params"] == list(st.reads) + recipe
        assert body["cmd"].startswith(f"lema {st.name} --config params.yaml")
        assert not any("checkpoints" in o for o in body.get("outs", []))  # resumable training survives DVC
    # every stage reads the keys that change what it computes (the gaps issue 9 found)
    assert {"seed", "data.train_limit", "generators", "vllm"} <= set(BY_NAME["collect"].reads)
    assert {"data.eval_sets", "vllm", "seed", "evaluate"} <= set(BY_NAME["evaluate"].reads)
    assert "data.eval_sets" in BY_NAME["validate"].reads and "seed" in BY_NAME["build-sft"].reads


def test_code_deps_are_the_import_closure():
    """A stage's DVC code deps are derived: its package, every lema module it can import (function-local
    imports included) and the prompt files those read; nothing it cannot import."""
    from lema.orchestration.dvc import code_deps
    from lema.stages.code import closure

    dvc = yaml.safe_load((ROOT / "dvc.yaml").read_text())["stages"]
    for st in STAGES:
        if st.rounds != "later":
            body = dvc[st.name]["do"] if st.variants else dvc[st.name]
            assert [d for d in body["deps"] if d.startswith("src/")] == code_deps(st.package), st.name

    def files(stage: str) -> set[str]:
        return {f.relative_to(ROOT / "src").as_posix() for f in closure(f"lema.stages.{BY_NAME[stage].package}")}

    assert {"lema/grading/answers.py", "lema/stages/evaluate/evaluate.py"} <= files("evaluate")
    assert {"lema/registry/promote.py", "lema/registry/provenance.py", "lema/stats.py"} <= files("register")
    assert {"lema/llm/transport.py", "lema/grading/arith.py", "lema/stages/correct/reference.py"} <= files("correct")
    assert "lema/data.py" in files("collect") and "lema/stages/train/train.py" not in files("collect")
    assert "lema/llm/batch.py" not in files("pool") and "lema/cli.py" not in files("report")
    assert "src/lema/prompts" in code_deps("correct") and "src/lema/prompts" not in code_deps("pool")


def test_graph_queries():
    cfg = load_config(ROOT / "configs" / "tiny.yaml")
    names = [n.name for n in instances(cfg)]
    assert names == ["base-model", "collect", "correct", "validate", "build-sft", "train@cot", "train@lema",
                     "evaluate@cot", "evaluate@lema", "register", "report"]
    assert descendants("train@cot", cfg) == {"train@cot", "evaluate@cot", "register", "report"}
    assert readers("corrector.model", cfg) == {"correct"}
    assert readers("seed", cfg) >= {"collect", "train@cot", "evaluate@lema"}
    served = cfg.model_copy(update={"generators": [cfg.generators[0].model_copy(update={"model": "org/m"})],
                                    "train": cfg.train.model_copy(update={"model": "org/m"})})
    assert "base-model" not in [n.name for n in instances(served)]


def test_cli_stage_commands_come_from_the_declaration(capsys):
    from lema.cli import main

    for st in STAGES:
        with pytest.raises(SystemExit):
            main([st.name, "--help"])
        out = capsys.readouterr().out
        assert ("--variant" in out) == bool(st.variants), st.name


def test_installed_package_needs_no_source_tree(tmp_path):
    """Only the package (as pip installs it), run elsewhere: compile the pipeline and generate dvc.yaml."""
    site = tmp_path / "site"
    shutil.copytree(ROOT / "src" / "lema", site / "lema", ignore=shutil.ignore_patterns("__pycache__"))
    work = tmp_path / "work"
    work.mkdir()
    shutil.copy(ROOT / "configs" / "tiny.yaml", work / "params.yaml")
    env = {"PATH": "/usr/bin:/bin", "PYTHONPATH": str(site), "HOME": str(tmp_path)}
    for args in (["pipeline", "compile", "--out", "p.yaml"], ["dvc", "generate"]):
        out = subprocess.run([sys.executable, "-m", "lema", *args], cwd=work, env=env, capture_output=True, text=True)
        assert out.returncode == 0, out.stderr[-2000:]
    assert (work / "p.yaml").exists() and "stages:" in (work / "dvc.yaml").read_text()


def test_pipeline_structure():
    docs = list(yaml.safe_load_all((ROOT / "pipelines" / "lema_pipeline.yaml").read_text()))
    spec, platform = docs[0], docs[1]
    text = yaml.safe_dump(spec)
    assert "parameterIterator" in text and "parallelismLimit" in text          # ParallelFor fan-out
    assert "triggerPolicy" in text and "gate-Output" in text                   # dsl.If on evaluation
    assert "retryPolicy" in text
    inputs = spec["root"]["inputDefinitions"]["parameters"]
    cfg = load_config(ROOT / "params.yaml")
    assert set(inputs) == {"min_accuracy", "corrector_cache"}
    assert inputs["min_accuracy"]["defaultValue"] == cfg.register_.min_accuracy
    assert inputs["corrector_cache"]["defaultValue"] == cfg.kubeflow.cache_mount  # the PVC's mount, never ""
    assert "OPENAI_API_KEY" not in yaml.safe_dump(spec["root"].get("inputDefinitions", {}))
    execs = yaml.safe_dump(platform)
    assert "secretAsEnv" in execs and "OPENAI_API_KEY" in execs and "lema-corrector" in execs
    assert "configMapAsEnv" in execs and "MLFLOW_TRACKING_URI" in execs and "lema-pipeline" in execs
    # the report gets the registration result when the gate lets registration through
    report_tasks = [c for n, c in spec["components"].items() if n.startswith("comp-report")]
    assert any("registry" in c["inputDefinitions"]["artifacts"] for c in report_tasks)


def test_gpu_compile_uses_the_cuda_image_for_gpu_stages(tmp_path):
    from lema.orchestration.kfp import CPU_IMAGE, CUDA_IMAGE
    from lema.orchestration.kfp_cli import compile_pipeline

    spec = next(yaml.safe_load_all(compile_pipeline(ROOT / "params.yaml", tmp_path / "g.yaml", gpu=True).read_text()))
    gpu_stages = {st.name for st in STAGES if st.gpu}
    assert gpu_stages == {"collect", "train", "evaluate"}
    for name, e in spec["deploymentSpec"]["executors"].items():
        stage = name.removeprefix("exec-").rsplit("-", 1)[0] if name[-1].isdigit() else name.removeprefix("exec-")
        c = e["container"]
        want_gpu = stage in gpu_stages
        assert c["image"] == (CUDA_IMAGE if want_gpu else CPU_IMAGE), name
        assert (c.get("resources", {}).get("accelerator", {}).get("resourceType") == "nvidia.com/gpu") == want_gpu


def test_every_component_runs_in_an_image_built_here():
    from lema.orchestration.kfp import DOCKERFILES, components

    for gpu in (False, True):
        for name, comp in components(gpu).items():
            image = comp.component_spec.implementation.container.image
            assert image in DOCKERFILES, f"{name} uses {image}"
            text = (ROOT / DOCKERFILES[image]).read_text()
            assert text.startswith("#") and "FROM " in text and "COPY src" in text and "pip install" in text
            assert "latest" not in text
            assert "lema" in comp.component_spec.implementation.container.command[-1]


def test_sharded_collect_merges_back_to_the_local_order(tmp_path):
    """Per-question seeds and an interleaving merge: any shard count gives the local run's paths file."""
    from lema.orchestration.artifacts import merge_collect
    from lema.records import SampledPath
    from lema.stages.collect.collect import question_seed, write_collect

    def path(q: int, gen: str, i: int) -> SampledPath:
        return SampledPath(id=f"q{q:02d}", task="gsm8k", question=f"Q{q}", gold_solution="s", gold_answer="1",
                           path="p", generator=gen, model="m", prompt_hash="h", sampling={}, sample_index=i,
                           pred_answer="2", correct=(q + i) % 3 == 0)

    qs = [7, 3, 11, 5, 2, 9, 4]  # data order, not sorted
    local = [path(q, g, i) for g in ("a", "b") for q in qs for i in range(2)]
    write_collect(local, tmp_path / "local", len(qs))
    for count in (2, 3):
        dirs = []
        for g in ("a", "b"):
            for s in range(count):
                d = tmp_path / f"{count}-{g}-{s}"
                write_collect([p for p in local if p.generator == g and qs.index(int(p.id[1:])) % count == s], d,
                              len(qs[s::count]))
                dirs.append(str(d))
        report = merge_collect(dirs, tmp_path / f"merged{count}")
        assert (tmp_path / f"merged{count}" / "paths.jsonl").read_text() == (tmp_path / "local" / "paths.jsonl").read_text()
        assert report.n_in == len(qs)
    assert question_seed(1, "a", "q1") == question_seed(1, "a", "q1") != question_seed(2, "a", "q1")
    assert json.dumps(question_seed(1, "b", "q1")).isdigit()
@pytest.mark.parametrize("overlay", sorted(p.name for p in (ROOT / "infra" / "overlays").iterdir()))
def test_kustomize_overlays_build(overlay):
    out = subprocess.run(["kubectl", "kustomize", str(ROOT / "infra" / "overlays" / overlay)],
                         capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    objs = [d for d in yaml.safe_load_all(out.stdout) if d]
    kinds = {(o["kind"], o["metadata"]["name"].rsplit("-", 1)[0] if o["kind"] in ("Secret", "ConfigMap")
              else o["metadata"]["name"]) for o in objs}
    assert ("Deployment", "mlflow") in kinds and ("StatefulSet", "mlflow-postgres") in kinds
    assert ("Deployment", "vllm") in kinds
    assert all(o["metadata"].get("namespace") == "lema" for o in objs if o["kind"] != "Namespace")
    from lema.orchestration.images import CPU_IMAGE, CUDA_IMAGE, REGISTRY

    pods = [o["spec"]["template"]["spec"] for o in objs if o["kind"] in ("Deployment", "StatefulSet")]
    images = {c["image"] for pod in pods for c in pod["containers"] + pod.get("initContainers", [])}
    ours = {i for i in images if i.startswith(REGISTRY)}
    assert ours and ours <= {CPU_IMAGE, CUDA_IMAGE}, f"{overlay}: {ours} are not the tags `make images` builds"
    if overlay == "production":
        assert not any(o["kind"] == "Secret" for o in objs), "production secrets must not live in git"


def test_fresh_clone_dvc_status_dag_and_dry_runs(tmp_path):
    """On a fresh clone DVC reads the generated project: `dvc status` names every stage, `dvc dag` draws them,
    and `dvc repro --dry` / `dvc exp run --dry` list every stage they would run (with the environment's
    `lema.orchestration.dvc_dry_run` fix, which `make venv` installs) and make nothing."""
    import sysconfig

    from lema.orchestration.dvc_dry_run import PTH_LINE, PTH_NAME

    from .conftest import lema_env

    pth = Path(sysconfig.get_paths()["purelib"]) / PTH_NAME
    assert pth.is_file() and pth.read_text() == PTH_LINE, f"{pth}: run `make venv`"
    repo = tmp_path / "lema"
    subprocess.run(["git", "clone", "-q", str(ROOT), str(repo)], check=True)
    stages = [st.name for st in STAGES if st.rounds != "later"]
    for args in (["status"], ["dag"], ["repro", "--dry"], ["exp", "run", "--dry"]):
        out = subprocess.run([sys.executable, "-m", "dvc", *args], cwd=repo, env=lema_env(repo), capture_output=True,
                             text=True)
        assert out.returncode == 0, (args, out.stderr[-2000:])
        assert all(name in out.stdout for name in stages), args
        if "--dry" in args:
            assert all(f"Running stage '{name}" in out.stdout for name in stages), args
    assert not (repo / "runs").exists() and not (repo / "dvc.lock").exists()


def _compiled(tmp_path, name="p.yaml", **kw):
    from lema.orchestration.kfp_cli import compile_pipeline

    return list(yaml.safe_load_all(compile_pipeline(ROOT / "params.yaml", tmp_path / name, **kw).read_text()))


def _executor_stage(name: str) -> str:
    """exec-train-2 -> train, exec-merge-collect -> merge-collect."""
    name = name.removeprefix("exec-")
    return name.rsplit("-", 1)[0] if name[-1].isdigit() else name


def test_no_task_installs_anything_and_one_kfp_version_everywhere(tmp_path):
    """A cluster runs the YAML as it is: no `pip install` at task start (the image holds lema and kfp), and the
    kfp that compiles is the kfp pinned in pyproject.toml and in both image locks."""
    import tomllib

    import kfp

    from lema.orchestration.kfp import KFP_VERSION

    for gpu in (False, True):
        spec = _compiled(tmp_path, gpu=gpu)[0]
        for name, e in spec["deploymentSpec"]["executors"].items():
            text = " ".join(e["container"]["command"] + e["container"].get("args", []))
            assert "pip install" not in text and "pip3 install" not in text, name
            assert "kfp.dsl.executor_main" in text, name
    assert kfp.__version__ == KFP_VERSION
    ops = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["optional-dependencies"]["ops"]
    assert {f"kfp=={KFP_VERSION}", f"kfp-kubernetes=={KFP_VERSION}"} <= set(ops)
    for lock in ("requirements.lock", "requirements-cuda.lock"):
        lines = set((ROOT / lock).read_text().splitlines())
        assert {f"kfp=={KFP_VERSION}", f"kfp-kubernetes=={KFP_VERSION}"} <= lines, lock


def test_cluster_placement_resources_and_cache_volume(tmp_path):
    """GPU tasks: one GPU, the configured tolerations and node selector; every task: requests and limits
    (merge and gate small); every correct task mounts the corrector-cache PVC where corrector_cache points."""
    cfg = load_config(ROOT / "params.yaml")
    spec, platform = _compiled(tmp_path, gpu=True, overrides={
        "kubeflow.gpu_node_selector": {"nvidia.com/gpu.product": "NVIDIA-H100-80GB-HBM3"},
        "kubeflow.cache_pvc": "team-cache"})
    execs = platform["platforms"]["kubernetes"]["deploymentSpec"]["executors"]
    gpu_stages = {st.name for st in STAGES if st.gpu}
    for name, e in spec["deploymentSpec"]["executors"].items():
        stage = _executor_stage(name)
        r = e["container"]["resources"]
        for what in ("Cpu", "Memory"):
            assert r[f"resource{what}Request"] == r[f"resource{what}Limit"], name
        if stage in BY_NAME:
            assert (r["resourceCpuRequest"], r["resourceMemoryRequest"]) == (BY_NAME[stage].cpu, BY_NAME[stage].memory)
        else:  # merge-collect, merge-correct, gate
            assert (r["resourceCpuRequest"], r["resourceMemoryRequest"]) == (cfg.kubeflow.small_cpu,
                                                                             cfg.kubeflow.small_memory), name
        k8s = execs.get(name, {})
        if stage in gpu_stages:
            assert r["accelerator"]["resourceType"] == "nvidia.com/gpu" and r["accelerator"]["resourceCount"] == "1"
            assert k8s["tolerations"] == [{"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"}]
            assert k8s["nodeSelector"]["labels"] == {"nvidia.com/gpu.product": "NVIDIA-H100-80GB-HBM3"}
        else:
            assert "accelerator" not in r and "tolerations" not in k8s and "nodeSelector" not in k8s, name
        mounts = k8s.get("pvcMount", [])
        assert ([m["constant"] for m in mounts] == ["team-cache"]) == (stage == "correct"), name
        if mounts:
            assert mounts[0]["mountPath"] == spec["root"]["inputDefinitions"]["parameters"]["corrector_cache"][
                "defaultValue"]


def _task_configs(spec: dict) -> dict[str, str]:
    """Task name -> the `config` constant it receives, over every DAG of the compiled pipeline."""
    out = {}
    for dag in [spec["root"]["dag"]] + [c["dag"] for c in spec["components"].values() if "dag" in c]:
        for name, task in dag["tasks"].items():
            value = task.get("inputs", {}).get("parameters", {}).get("config", {}).get("runtimeValue", {})
            if "constant" in value:
                out[name] = value["constant"]
    return out


def _task_stage(task: str) -> str:
    """Compiled task name -> declared stage: train-2 -> train, merge-correct -> correct (its fan-in)."""
    base = task.rsplit("-", 1)[0] if task[-1].isdigit() else task
    return {"merge-collect": "collect", "merge-correct": "correct", "gate": "register"}.get(base, base)


def test_kfp_task_inputs_change_exactly_where_dvc_params_do(tmp_path):
    """Kubeflow caches a task on its inputs: change one config key, and the tasks whose `config` changes are the
    DVC stages whose params change (dvc.yaml generated from the same declaration), key by key.  register alone
    takes the whole config (provenance in MLflow) and is never cached."""
    from google.protobuf import json_format

    from lema.orchestration.dvc import render
    from lema.orchestration.kfp import build_pipeline, stage_config
    from lema.orchestration.kfp_cli import compile_pipeline

    base = yaml.safe_load((ROOT / "configs" / "tiny.yaml").read_text())
    cfg = load_config(ROOT / "configs" / "tiny.yaml")

    def config_of(data: dict):
        f = tmp_path / "c.yaml"
        f.write_text(yaml.safe_dump(data))
        return load_config(f)

    def compiled(c) -> dict:
        """The pipeline spec the compiler writes (its first YAML document), without the YAML round trip."""
        return json_format.MessageToDict(build_pipeline(c).pipeline_spec)

    before_cfg = config_of(base)
    before = compiled(before_cfg)
    assert before == next(yaml.safe_load_all(compile_pipeline(ROOT / "configs" / "tiny.yaml", tmp_path / "t.yaml")
                                             .read_text()))
    configs = _task_configs(before)
    uncached = {n for dag in [before["root"]["dag"]] + [c["dag"] for c in before["components"].values() if "dag" in c]
                for n, t in dag["tasks"].items() if not t.get("cachingOptions", {}).get("enableCache")
                and "executorLabel" in before["components"][t["componentRef"]["name"]]}
    assert {_task_stage(t) for t in uncached} == {"register"}
    assert {_task_stage(t) for t in configs} == {st.name for st in STAGES if st.rounds != "later"}
    cached = {t: _task_stage(t) for t in configs if t not in uncached}
    # every cached task receives exactly its stage's `stage_config`, so that function speaks for the compiler
    assert all(configs[t] == stage_config(before_cfg, s) for t, s in cached.items())
    dvc = render(cfg)["stages"]
    params = {name: (body.get("do") or body)["params"] for name, body in dvc.items()}
    keys = sorted({k for st in STAGES for k in st.reads})

    def dvc_readers(key: str) -> frozenset:
        return frozenset(s for s, ps in params.items() if any(key == p or key.startswith(p + ".") for p in ps))

    # Every key through stage_config; the compiled pipeline for one key per distinct set of DVC readers (keys
    # read by the same stages go through the same task wiring, and each compile takes seconds).
    compile_for = {}
    for key in keys:
        compile_for.setdefault(dvc_readers(key), key)
    assert len(compile_for) >= 8, compile_for
    for key in keys:
        data = yaml.safe_load(yaml.safe_dump(cfg.model_dump(mode="json", by_alias=True)))
        node = data
        *parents, leaf = key.split(".")
        for part in parents:
            node = node[part]
        node[leaf] = changed_value(node[leaf], key)
        if key == "data.dir":
            node[leaf] = str(ROOT / "data")  # another directory holding the same data
        changed = config_of(data)
        readers = {s for s in set(cached.values()) if stage_config(changed, s) != stage_config(before_cfg, s)}
        assert readers == dvc_readers(key) - {"register"}, key
        if key in compile_for.values():
            after = _task_configs(compiled(changed))
            assert {_task_stage(t) for t in cached if configs[t] != after[t]} == readers, key


def test_component_bodies_hand_the_declared_artifacts_to_the_stage():
    """Each round-1 body passes run_stage an input for every artifact its stage's declared deps come from, only
    names the declaration knows, and writes exactly the stage's own artifact (read from the bodies' source, as
    KFP ships it)."""
    import ast
    import inspect

    from lema.orchestration.kfp import BODIES
    from lema.stages import Instance, artifact_locations, artifact_name, upstream

    cfg = load_config(ROOT / "configs" / "tiny.yaml")
    known = set(artifact_locations())
    checked = set()
    for body, fn in BODIES.items():
        tree = ast.parse(inspect.getsource(fn))
        calls = [n for n in ast.walk(tree) if isinstance(n, ast.Call) and getattr(n.func, "id", "") == "run_stage"]
        assigned = {a.targets[0].id: a.value for a in ast.walk(tree)
                    if isinstance(a, ast.Assign) and isinstance(a.targets[0], ast.Name)}
        if not calls or body not in BY_NAME or BY_NAME[body].rounds == "later":
            continue
        st = BY_NAME[body]
        for variant in st.variants or (None,):
            def names(node):
                node = assigned.get(node.id, node) if isinstance(node, ast.Name) else node
                keys = []
                for k in getattr(node, "keys", []):
                    keys.append(k.value if isinstance(k, ast.Constant) else
                                "".join(v.value if isinstance(v, ast.Constant) else variant for v in k.values))
                return set(keys)

            inputs = set().union(*(names(c.args[2]) for c in calls))
            report = [n for n in ast.walk(tree) if isinstance(n, ast.Subscript) and getattr(n.value, "id", "") == "inputs"]
            inputs |= {n.slice.value for n in report if isinstance(n.slice, ast.Constant)}
            outputs = set().union(*(names(c.args[3]) for c in calls))
            node = Instance(st, variant)
            declared = {artifact_name(p) for p in upstream(node, cfg)}
            assert declared <= inputs <= known, (node.name, declared - inputs, inputs - known)
            assert outputs == {artifact_name(node)}, node.name
            checked.add(st.name)
    assert checked == {st.name for st in STAGES if st.rounds != "later"}


def test_a_stage_resource_that_is_not_a_kubernetes_quantity_is_refused():
    """The compiled pipeline writes stage resources as they are; the declaration checks them first."""
    from lema.stages.graph import Stage

    with pytest.raises(ValueError, match="stage x: cpu '2' / memory '8 GB' is not a Kubernetes quantity"):
        Stage(name="x", package="x", reads=(), artifact="x", memory="8 GB")
