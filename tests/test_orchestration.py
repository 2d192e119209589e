"""Kubeflow compile, images, kustomize overlays: fast structural checks on the real artifacts."""

import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from .conftest import ROOT

sys.path.insert(0, str(ROOT))


def test_compiled_pipeline_is_not_stale(tmp_path):
    from lema.kfp_cli import compile_pipeline

    fresh = compile_pipeline(ROOT / "params.yaml", tmp_path / "p.yaml")
    checked_in = ROOT / "pipelines" / "lema_pipeline.yaml"
    assert list(yaml.safe_load_all(fresh.read_text())) == list(yaml.safe_load_all(checked_in.read_text())), (
        "pipelines/lema_pipeline.yaml is stale: run `lema pipeline compile`")


def test_pipeline_structure():
    docs = list(yaml.safe_load_all((ROOT / "pipelines" / "lema_pipeline.yaml").read_text()))
    spec, platform = docs[0], docs[1]
    text = yaml.safe_dump(spec)
    assert "parameterIterator" in text and "parallelismLimit" in text          # ParallelFor fan-out
    assert "triggerPolicy" in text and "gate-Output" in text                   # dsl.If on evaluation
    tasks = {**spec["root"]["dag"]["tasks"]}
    for_loops = [t for t in tasks.values() if "iterator" in t or "parameterIterator" in t]
    assert len(for_loops) == 2
    correct_loop = next(t for n, t in tasks.items() if "for-loop" in n and "correct" in yaml.safe_dump(
        spec["components"][t["componentRef"]["name"]]))
    assert correct_loop
    assert "retryPolicy" in text
    execs = yaml.safe_dump(platform)
    assert "secretAsEnv" in execs and "OPENAI_API_KEY" in execs and "lema-corrector" in execs
    assert "OPENAI_API_KEY" not in yaml.safe_dump(spec["root"].get("inputDefinitions", {}))
    resources = [e["container"].get("resources", {}) for e in spec["deploymentSpec"]["executors"].values()]
    assert any(r.get("cpuRequest") for r in resources) and any(r.get("memoryRequest") for r in resources)


def test_gpu_compile_requests_accelerators(tmp_path):
    from lema.kfp_cli import compile_pipeline

    spec = next(yaml.safe_load_all(compile_pipeline(ROOT / "params.yaml", tmp_path / "g.yaml", gpu=True).read_text()))
    accels = [e["container"]["resources"].get("accelerator") for e in spec["deploymentSpec"]["executors"].values()
              if "resources" in e["container"]]
    assert sum(1 for a in accels if a and a.get("resourceType") == "nvidia.com/gpu") >= 4


def test_every_component_runs_in_an_image_built_here():
    import components
    from components.images import DOCKERFILES

    for name in components.__all__:
        comp = getattr(components, name)
        image = comp.component_spec.implementation.container.image
        assert image in DOCKERFILES, f"{name} uses {image}"
        dockerfile = ROOT / DOCKERFILES[image]
        text = dockerfile.read_text()
        assert text.startswith("#") and "FROM " in text and "COPY src" in text and "pip install" in text
        assert "latest" not in text
        # the component body only calls into lema
        assert "lema" in comp.component_spec.implementation.container.command[-1]


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
    if overlay == "production":
        assert not any(o["kind"] == "Secret" for o in objs), "production secrets must not live in git"


def test_dvc_yaml_stages_match_the_library():
    dvc = yaml.safe_load((ROOT / "dvc.yaml").read_text())
    assert list(dvc["stages"]) == ["base-model", "collect", "correct", "validate", "build-sft", "train",
                                   "evaluate", "register", "report"]
    for name, stage in dvc["stages"].items():
        cmd = stage.get("cmd") or stage["do"]["cmd"]
        assert cmd.startswith(f"lema {name} --config params.yaml")
