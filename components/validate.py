from kfp import dsl
from kfp.dsl import Dataset, Input, Metrics, Output

from .images import CPU_IMAGE


@dsl.component(base_image=CPU_IMAGE)
def validate(config: str, corrections: Input[Dataset], valid: Output[Dataset], metrics: Output[Metrics]):
    """Great Expectations suite over the corrections; failures go to quarantine."""
    from lema.artifacts import run_stage

    report = run_stage("validate", config, {"correct": corrections.path}, {"validate": valid.path})
    metrics.log_metric("validate/pass_rate", report.details["pass_rate"])
    metrics.log_metric("validate/valid", report.n_out)
