from typing import List

from kfp import dsl
from kfp.dsl import Dataset, Input, Metrics, Model, Output

from .images import CPU_IMAGE


@dsl.component(base_image=CPU_IMAGE)
def collect(config: str, model: Input[Model], work: dict, num_shards: int, paths: Output[Dataset]):
    """Sample and grade CoT paths from one generator (work["generator"]) on one shard (work["shard"])."""
    from lema.artifacts import run_stage

    run_stage("collect", config, {"base_model": model.path}, {"collect": paths.path},
              shard=(int(work["shard"]), num_shards), generator=work["generator"])


@dsl.component(base_image=CPU_IMAGE)
def merge_collect(shards: Input[List[Dataset]], paths: Output[Dataset], metrics: Output[Metrics]):
    """Fan-in: one collect artifact from every (generator, shard) task."""
    from lema.artifacts import merge_collect as merge

    report = merge([s.path for s in shards], paths.path)
    for key in ("samples", "right", "wrong"):
        metrics.log_metric(f"collect/{key}", report.details[key])
