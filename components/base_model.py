from kfp import dsl
from kfp.dsl import Model, Output

from .images import CPU_IMAGE


@dsl.component(base_image=CPU_IMAGE)
def base_model(config: str, model: Output[Model]):
    """Build the embedded default model (tokenizer + from-scratch pretraining)."""
    from lema.artifacts import run_stage

    run_stage("base-model", config, {}, {"base_model": model.path})
