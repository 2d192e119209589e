from kfp import dsl
from kfp.dsl import Dataset, Input, Output

from .images import CPU_IMAGE


@dsl.component(base_image=CPU_IMAGE)
def build_sft(config: str, valid: Input[Dataset], paths: Input[Dataset], sft: Output[Dataset]):
    """CoT-only and LeMa prompt/completion sets."""
    from lema.artifacts import run_stage

    run_stage("build-sft", config, {"validate": valid.path, "collect": paths.path}, {"sft": sft.path})
