"""Versioned prompt templates (YAML files in ``lema/prompts``).

A prompt is identified by name, version and a content hash; every artifact
records that hash so a result can always be traced to the exact text used.
Placeholders are ``{{field}}`` (plain replacement: LaTeX braces stay intact).
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path

import yaml

PROMPT_DIR = Path(__file__).parent / "prompts"


def fill(template: str, **values: str) -> str:
    out = template
    for key, value in values.items():
        out = out.replace("{{" + key + "}}", value)
    return out


@dataclass(frozen=True)
class PromptTemplate:
    name: str
    version: int
    instruction: str
    exemplar: str
    template: str
    exemplars: tuple[dict, ...] = field(default_factory=tuple)
    sft_template: str | None = None

    def prefix(self, shots: int) -> str:
        """Instruction and the first `shots` exemplars (empty for zero-shot)."""
        if shots <= 0:
            return ""
        if shots > len(self.exemplars):
            raise ValueError(f"prompt {self.name} v{self.version} has {len(self.exemplars)} exemplars, "
                             f"{shots} shots asked")
        parts = [self.instruction + "\n\n"] + [fill(self.exemplar, **ex) for ex in self.exemplars[:shots]]
        return "".join(parts)

    def render(self, shots: int = 0, **values: str) -> str:
        return self.prefix(shots) + fill(self.template, **values)

    def render_sft(self, **values: str) -> str:
        if self.sft_template is None:
            raise ValueError(f"prompt {self.name} has no sft_template")
        return fill(self.sft_template, **values)

    def hash(self, shots: int = 0) -> str:
        """Hash of everything that shapes the rendered text."""
        blob = json.dumps([self.name, self.version, self.prefix(shots), self.template, self.sft_template],
                          sort_keys=True)
        return hashlib.sha256(blob.encode()).hexdigest()[:16]


@lru_cache(maxsize=None)
def load_prompt(name_or_path: str) -> PromptTemplate:
    """A bundled prompt by name (``cot_gsm8k``) or any YAML file with the same fields."""
    path = Path(name_or_path)
    if not path.suffix:
        path = PROMPT_DIR / f"{name_or_path}.yaml"
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise FileNotFoundError(f"prompt file not found: {path}") from None
    missing = [k for k in ("name", "version", "instruction", "exemplar", "template") if k not in data]
    if missing:
        raise ValueError(f"{path}: missing field(s) {', '.join(missing)}")
    return PromptTemplate(name=data["name"], version=int(data["version"]), instruction=data["instruction"],
                          exemplar=data["exemplar"], template=data["template"],
                          exemplars=tuple(data.get("exemplars") or ()), sft_template=data.get("sft_template"))


def cot_prompt(task: str) -> PromptTemplate:
    return load_prompt("cot_math" if task == "math" else "cot_gsm8k")
