from kfp import dsl
from kfp.dsl import Dataset, Input, Model, Output

from .images import CPU_IMAGE


@dsl.component(base_image=CPU_IMAGE)
def train(config: str, variant: str, sft: Input[Dataset], base: Input[Model], model: Output[Model]):
    """Fine-tune one variant (cot or lema) with TRL."""
    from lema.artifacts import run_stage

    run_stage("train", config, {"sft": sft.path, "base_model": base.path}, {f"train_{variant}": model.path},
              variant=variant)
