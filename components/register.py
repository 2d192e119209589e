from kfp import dsl
from kfp.dsl import Dataset, Input, Model, Output

from .images import CPU_IMAGE


@dsl.component(base_image=CPU_IMAGE)
def register(config: str, train_cot: Input[Model], train_lema: Input[Model], eval_cot: Input[Dataset],
             eval_lema: Input[Dataset], paths: Input[Dataset], corrections: Input[Dataset], valid: Input[Dataset],
             registry: Output[Dataset]):
    """Log both models to MLflow (MLFLOW_TRACKING_URI) and set the champion alias."""
    from lema.artifacts import run_stage

    run_stage("register", config, {"train_cot": train_cot.path, "train_lema": train_lema.path,
                                   "eval_cot": eval_cot.path, "eval_lema": eval_lema.path, "collect": paths.path,
                                   "correct": corrections.path, "validate": valid.path}, {"register": registry.path})
