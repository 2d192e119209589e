from typing import List

from kfp import dsl
from kfp.dsl import Dataset, Input, Metrics, Output

from .images import CPU_IMAGE


@dsl.component(base_image=CPU_IMAGE)
def correct(config: str, paths: Input[Dataset], shard: int, num_shards: int, corrections: Output[Dataset]):
    """Correct one shard of the wrong paths (the LLM corrector's key comes from a Kubernetes secret)."""
    from lema.artifacts import run_stage

    run_stage("correct", config, {"collect": paths.path}, {"correct": corrections.path}, shard=(shard, num_shards))


@dsl.component(base_image=CPU_IMAGE)
def merge_correct(shards: Input[List[Dataset]], corrections: Output[Dataset], metrics: Output[Metrics]):
    """Fan-in of the correction shards."""
    from lema.artifacts import merge_correct as merge

    report = merge([s.path for s in shards], corrections.path)
    metrics.log_metric("correct/corrected", report.n_out)
    metrics.log_metric("correct/unlocalised", report.n_quarantined)
