"""The images as built here: non-root, read-only-capable, health-checked, no index settings in any layer; tags from
lema.orchestration.images and the compiled pipeline agree; the CUDA image builds when asked."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest
import yaml

from .conftest import ROOT, docker_or_skip


def _docker(*args: str, check: bool = True) -> subprocess.CompletedProcess:
    out = subprocess.run(["docker", *args], capture_output=True, text=True)
    assert not check or out.returncode == 0, out.stderr[-3000:]
    return out


def test_compiled_pipeline_names_the_tags_images_py_derives():
    from lema.orchestration import images

    spec = next(yaml.safe_load_all((ROOT / "pipelines" / "lema_pipeline.yaml").read_text()))
    used = {e["container"]["image"] for e in spec["deploymentSpec"]["executors"].values()}
    assert used == {images.CPU_IMAGE}
    lock_hash = images.digest(["requirements.lock"])[:10]
    assert images.CPU_IMAGE.split(":")[-1].split("-")[1] == lock_hash  # the lock is part of the tag
    script = subprocess.run(["python3", str(ROOT / "src/lema/orchestration/images.py"), "lema-cpu"],
                            capture_output=True, text=True, env={"PATH": os.environ["PATH"]})
    assert script.stdout.strip() == images.CPU_IMAGE  # what `make images` tags = what components name


@pytest.mark.container
def test_cpu_image_runs_non_root_read_only_with_a_healthcheck_and_no_index_settings(cpu_image, tmp_path):
    info = json.loads(_docker("image", "inspect", cpu_image).stdout)[0]["Config"]
    assert info["User"] == "1000" and info["Healthcheck"]["Test"][0] == "CMD"
    assert info["Entrypoint"] == ["/usr/bin/tini", "--"]  # KFP's `sh -c ...` command runs as given
    history = _docker("history", "--no-trunc", "--format", "{{.CreatedBy}}", cpu_image).stdout
    for secret_part in ("PIP_INDEX_URL=", "UV_ARGS=", "/etc/ssl/certs/ca-certificates.crt", "/opt/wheels"):
        assert secret_part not in history
    out = _docker("run", "--rm", "--read-only", "--tmpfs", "/tmp", "--tmpfs", "/home/lema:mode=1777", cpu_image,
                  "sh", "-c", "id -u; test ! -w /opt/lema/data && echo data-ro; ls /opt/venv/lib/python3.11/"
                  "site-packages | grep -c -E '^(pip|uv)-' ; cat /etc/pip.conf 2>/dev/null | wc -l;"
                  "python -c 'import lema, kfp; print(kfp.__version__)'").stdout.split()
    assert out[:2] == ["1000", "data-ro"] and out[2] == "1" and out[3] == "0"  # pip only (KFP calls it), no config
    assert out[4] == subprocess.run([sys.executable, "-c", "import kfp; print(kfp.__version__)"],
                                    capture_output=True, text=True).stdout.strip()  # kfp = the compiler's


# Run inside the CUDA image as its user: the Python, torch's CUDA build, the CUDA libraries torch loads (no GPU or
# driver is needed to load them), and the imports the GPU components need.
CUDA_PROBE = """
import json, sys, torch, vllm, trl, peft, bitsandbytes, mlflow, kfp, lema
out = {"python": "%d.%d" % sys.version_info[:2], "torch": torch.__version__, "cuda": torch.version.cuda,
       "cudnn": torch.backends.cudnn.version(), "kfp": kfp.__version__}
out["libs"] = sorted({l.split("/")[-1].split(".so")[0] for l in open("/proc/self/maps") if "/nvidia/" in l})
print(json.dumps(out))
"""


@pytest.mark.skipif(not os.environ.get("LEMA_TEST_CUDA_IMAGE"), reason="builds the CUDA image unless built (~5 GB of "
                    "CUDA wheels from the package index, a 12 GB image, ~26 min): set LEMA_TEST_CUDA_IMAGE=1")
@pytest.mark.container
def test_cuda_image_builds_imports_cuda_torch_and_passes_uv_pip_check():
    from lema.orchestration.images import CUDA_IMAGE

    from .test_infra import tool

    uv = tool("uv")
    docker_or_skip()
    if _docker("image", "inspect", CUDA_IMAGE, check=False).returncode != 0:  # the tag names its inputs: built once
        out = subprocess.run(["make", "-C", str(ROOT), "image-cuda"], capture_output=True, text=True)
        assert out.returncode == 0, out.stdout[-3000:] + out.stderr[-3000:]
    info = json.loads(_docker("image", "inspect", CUDA_IMAGE).stdout)[0]["Config"]
    assert info["User"] == "1000" and info["Entrypoint"] == ["/usr/bin/tini", "--"] and info["Healthcheck"]
    assert "NVIDIA_DRIVER_CAPABILITIES=compute,utility" in info["Env"]  # the NVIDIA runtime injects the driver
    history = _docker("history", "--no-trunc", "--format", "{{.CreatedBy}}", CUDA_IMAGE).stdout
    assert not any(s in history for s in ("PIP_INDEX_URL=", "UV_ARGS=", "/etc/ssl/certs/ca-certificates.crt"))
    # The whole environment is consistent: this machine's uv, mounted read-only, checks the image's venv.
    check = _docker("run", "--rm", "-v", f"{uv}:/usr/local/bin/uv:ro", CUDA_IMAGE,
                    "uv", "pip", "check", "--python", "/opt/venv/bin/python", check=False)
    assert check.returncode == 0 and "Checked" in check.stderr, check.stdout[-3000:] + check.stderr[-3000:]
    probe = json.loads(_docker("run", "--rm", CUDA_IMAGE, "python", "-c", CUDA_PROBE).stdout.splitlines()[-1])
    lock = (ROOT / "requirements-cuda.lock").read_text()
    pins = dict(ln.split("==") for ln in lock.splitlines() if "==" in ln and not ln.startswith("#"))
    assert f"Python {probe['python']})" in lock.splitlines()[0]  # the image's Python is the lock's
    assert probe["cuda"] == ".".join(pins["nvidia-cuda-runtime"].split(".")[:2])  # torch built for the wheels' CUDA
    assert probe["torch"] == f"{pins['torch']}+cu{probe['cuda'].replace('.', '')}" and probe["kfp"] == pins["kfp"]
    assert probe["cudnn"] // 10000 == int(pins["nvidia-cudnn-cu13"].split(".")[0])
    assert {"libcudart", "libcublas", "libcudnn", "libnccl"} <= set(probe["libs"]), probe["libs"]
