"""The model card every registered version carries (Markdown: the version's description and a run artifact)."""

from __future__ import annotations

from typing import Any

from lema.registry.promote import Decision, format_decision


def model_card(name: str, version: str, cand: dict, decision: Decision | None, tags: dict[str, str], params: dict,
               serving: dict[str, Any], not_selected: str = "") -> str:
    """`decision`: the promotion decision when this version was the run's candidate; None for the other variant
    of the same run (`not_selected` says why it was not the candidate)."""
    lines = [f"# {name} v{version} ({cand['name']})", "",
             "Fine-tuned by lema (Learning from Mistakes, An et al. 2023): "
             + ("chain-of-thought data plus corrections of the model's own wrong reasoning paths."
                if cand["name"] == "lema" else "chain-of-thought data only (baseline)."), "",
             "## Evaluation (greedy pass@1)", "", "| set | n | correct | accuracy | no answer |", "|---|---:|---:|---:|---:|"]
    for s, m in cand["metrics"].items():
        lines.append(f"| {s} | {m['n']} | {m['correct']} | {100 * m['accuracy']:.1f}% | {m.get('no_answer', 0)} |")
    lines += ["", "## Promotion", ""]
    if decision is None:
        lines += ["- decision: **not selected** (not compared with the champion)", f"- reason: {not_selected}"]
    else:
        lines += [f"- decision: **{'champion' if decision.promote else 'challenger'}**",
                  f"- reason: {decision.reason}", f"- {format_decision(decision)}"]
    lines += ["", "## Data", ""] + [f"- {r.context}: `{r.name}` (md5 `{r.digest}`, from `{r.source}`)"
                                    for r in cand.get("datasets", [])]
    lines += ["", "## Provenance", ""] + [f"- {k}: `{v}`" for k, v in sorted(tags.items())]
    train = params.get("train", {})
    lines += ["", "## Training", "", f"- base model: `{train.get('model')}`", f"- epochs: {train.get('epochs')}, "
              f"learning rate: {train.get('learning_rate')}, LoRA: {train.get('lora', {}).get('enabled')}"]
    d, gsm = serving["defaults"], serving["prompts"]["gsm8k"]
    lines += ["", "## Serving", "",
              f"`mlflow models serve -m models:/{name}/{version} --env-manager local`; POST `/invocations` with "
              '`{"dataframe_records": [{"question": "..."}], "params": {"max_new_tokens": 64}}` (optional '
              '`task`: `gsm8k` or `math`). The answer text only is returned, generated as evaluation generates it.',
              "", f"- prompt: `{gsm['name']}` v{gsm['version']} (hash `{gsm['hash']}`), template "
              f"`{gsm['template']!r}`" + (" after the few-shot exemplars" if gsm["prefix"] else ""),
              f"- params (defaults = evaluation): max_new_tokens {d['max_new_tokens']}, temperature "
              f"{d['temperature']}, top_p {d['top_p']}, stop {d['stop']!r}",
              "", "## Limits", "", "Evaluated on the subsets named above; accuracy on other distributions is unknown."]
    return "\n".join(lines) + "\n"
