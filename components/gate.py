from kfp import dsl
from kfp.dsl import Dataset, Input

from .images import CPU_IMAGE


@dsl.component(base_image=CPU_IMAGE)
def gate(eval_cot: Input[Dataset], eval_lema: Input[Dataset], metric: str, min_accuracy: float) -> bool:
    """True when the better model reaches `min_accuracy` on `metric`: registration is gated on this."""
    import json
    from pathlib import Path

    best = max(json.loads((Path(e.path) / "metrics.json").read_text()).get(metric, {}).get("accuracy", 0.0)
               for e in (eval_cot, eval_lema))
    return best >= min_accuracy
