"""Stage `champion` (rounds >= 2): the previous round's registry champion, resolved by alias and downloaded."""

from __future__ import annotations

from lema.config import Config
from lema.jsonl import write_json
from lema.records import StageReport
from lema.stages.layout import paths


def run(cfg: Config, rnd: int) -> StageReport:
    from lema.registry.store import download_champion, tracking_uri

    p = paths(cfg, rnd)
    details = download_champion(tracking_uri(cfg.register_.tracking_uri, cfg.run_dir), cfg.register_.model_name,
                                p.file("generator/model"))
    report = StageReport(stage="champion", n_in=1, n_out=1, details={"round": rnd, **details},
                         outputs={"model": str(p.file("generator/model"))})
    write_json(p.file("generator/report.json"), report)
    return report
