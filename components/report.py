from kfp import dsl
from kfp.dsl import Dataset, Input, Markdown, Model, Output

from .images import CPU_IMAGE


@dsl.component(base_image=CPU_IMAGE)
def report(config: str, train_cot: Input[Model], train_lema: Input[Model], eval_cot: Input[Dataset],
           eval_lema: Input[Dataset], paths: Input[Dataset], corrections: Input[Dataset], valid: Input[Dataset],
           files: Output[Dataset], summary: Output[Markdown]):
    """The run report (plots + Markdown); the Markdown shows in the KFP UI."""
    from pathlib import Path

    from lema.artifacts import run_stage

    run_stage("report", config, {"train_cot": train_cot.path, "train_lema": train_lema.path,
                                 "eval_cot": eval_cot.path, "eval_lema": eval_lema.path, "collect": paths.path,
                                 "correct": corrections.path, "validate": valid.path}, {"report": files.path})
    Path(summary.path).write_text((Path(files.path) / "report.md").read_text())
