"""Stage `pool` (rounds >= 2): every round's validated corrections and right paths so far."""

from __future__ import annotations

from lema.config import Config
from lema.jsonl import read_jsonl, write_json, write_jsonl
from lema.records import Correction, SampledPath, StageReport
from lema.stages.layout import paths


def run(cfg: Config, rnd: int) -> StageReport:
    prev, p = paths(cfg, rnd - 1), paths(cfg, rnd)
    prev_valid, prev_right = prev.cumulative()
    earlier = read_jsonl(prev_valid, Correction)
    valid = earlier + read_jsonl(p.file("validate/valid.jsonl"), Correction)
    right = read_jsonl(prev_right, SampledPath) + read_jsonl(p.file("collect/right.jsonl"), SampledPath)
    valid_file, right_file = p.file("pool/valid.jsonl"), p.file("pool/right.jsonl")
    write_jsonl(valid_file, valid)
    write_jsonl(right_file, right)
    report = StageReport(stage="pool", n_in=len(valid) + len(right), n_out=len(valid),
                         details={"round": rnd, "corrections": len(valid), "right_paths": len(right),
                                  "new_corrections": len(valid) - len(earlier)},
                         outputs={"valid": str(valid_file), "right": str(right_file)})
    write_json(p.file("pool/report.json"), report)
    return report
