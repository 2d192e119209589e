from kfp import dsl
from kfp.dsl import Dataset, Input, Metrics, Model, Output

from .images import CPU_IMAGE


@dsl.component(base_image=CPU_IMAGE)
def evaluate(config: str, variant: str, model: Input[Model], results: Output[Dataset], metrics: Output[Metrics]):
    """Greedy pass@1 of one fine-tuned model; accuracies appear in the KFP UI."""
    from lema.artifacts import run_stage

    report = run_stage("evaluate", config, {f"train_{variant}": model.path}, {f"eval_{variant}": results.path},
                       variant=variant)
    for eval_set, m in report.details["metrics"].items():
        metrics.log_metric(f"{eval_set}/accuracy", m["accuracy"])
