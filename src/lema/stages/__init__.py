"""The LeMa stages: one folder per stage (``stage.py`` is its shell, the other modules its logic), the run-dir
layout (``layout``), what stages share (``common``) and the one declaration of the graph (``graph``)."""

from lema.stages.graph import (
                               BY_NAME,
                               STAGES,
                               Instance,
                               Plot,
                               Stage,
                               artifact_locations,
                               artifact_name,
                               base_needed,
                               descendants,
                               in_round,
                               instances,
                               producer,
                               readers,
                               upstream,
)

__all__ = ["BY_NAME", "STAGES", "Instance", "Plot", "Stage", "artifact_locations", "artifact_name", "base_needed",
           "descendants", "in_round", "instances", "producer", "readers", "upstream"]
