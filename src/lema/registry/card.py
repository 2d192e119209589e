"""The model card every registered version carries (Markdown, logged as an artifact)."""

from __future__ import annotations

from lema.registry.promote import Decision, format_decision


def model_card(name: str, version: str, cand: dict, decision: Decision, tags: dict[str, str], params: dict) -> str:
    lines = [f"# {name} v{version} ({cand['name']})", "",
             "Fine-tuned by lema (Learning from Mistakes, An et al. 2023): "
             + ("chain-of-thought data plus corrections of the model's own wrong reasoning paths."
                if cand["name"] == "lema" else "chain-of-thought data only (baseline)."), "",
             "## Evaluation (greedy pass@1)", "", "| set | n | correct | accuracy | no answer |", "|---|---:|---:|---:|---:|"]
    for s, m in cand["metrics"].items():
        lines.append(f"| {s} | {m['n']} | {m['correct']} | {100 * m['accuracy']:.1f}% | {m.get('no_answer', 0)} |")
    lines += ["", "## Promotion", "", f"- decision: **{'champion' if decision.promote else 'challenger'}**",
              f"- reason: {decision.reason}",
              f"- {format_decision(decision)}",
              "", "## Provenance", ""] + [f"- {k}: `{v}`" for k, v in sorted(tags.items())]
    train = params.get("train", {})
    lines += ["", "## Training", "", f"- base model: `{train.get('model')}`", f"- epochs: {train.get('epochs')}, "
              f"learning rate: {train.get('learning_rate')}, LoRA: {train.get('lora', {}).get('enabled')}",
              "", "## Limits", "", "Evaluated on the subsets named above; accuracy on other distributions is unknown."]
    return "\n".join(lines) + "\n"
