"""LeMa in rounds: round r's generator is round r-1's LeMa model (the chain's champion); it answers
fresh questions, its own new mistakes are corrected, and the next model is trained from the same
initial weights on the cumulative data.  Two controls get the same trained tokens per round:
self-training on the chain's own right answers (rejection sampling) and extra gold CoT."""

from __future__ import annotations

from lema.lab import arms as A
from lema.lab.engine import completion_tokens

CHAINS = ("lema", "self_train", "cot_extra")


def run_rounds(ctx, round1: dict) -> dict[str, list[dict]]:
    """`round1` holds round 1's data and models from the arms (shared, not retrained where identical)."""
    cfg, tok = ctx.cfg, ctx.tok
    out: dict[str, list[dict]] = {c: [{"round": 0, **ctx.base_result}] for c in CHAINS}
    corrections = list(round1["corrections"])            # LeMa chain: cumulative correction examples
    extra_used = list(round1["extra_tokens"])             # extra-CoT chain: cumulative matched CoT
    extra_left = [e for e in A.cot_examples(ctx.pools["extra"]) if e.completion not in
                  {x.completion for x in extra_used}]
    target = completion_tokens(corrections, tok)
    selfs = A.match_tokens(round1["rights"], target, tok, cfg.token_tolerance, ctx.seed, strict=False)
    states = {"lema": round1["lema_state"]}
    st_res, states["self_train"] = ctx.train_eval("self_train_r1", ctx.cot + selfs)
    out["lema"].append(_row(1, round1["lema_result"], corrections, target, tok))
    out["self_train"].append(_row(1, st_res, selfs, target, tok))
    out["cot_extra"].append(_row(1, round1["extra_result"], extra_used, target, tok))
    for r in range(2, cfg.rounds + 1):
        fresh = ctx.pools["collect"][(r - 2) * cfg.n_collect: (r - 1) * cfg.n_collect]
        wrongs, _, paths = ctx.collect(states["lema"], fresh, ctx.seed * 100 + r)
        new = A.correction_examples(wrongs, A.STYLE["lema"])
        corrections += new
        step_tokens = completion_tokens(new, tok)
        target += step_tokens
        res, states["lema"] = ctx.train_eval(f"lema_r{r}", ctx.cot + corrections)
        out["lema"].append(_row(r, res, corrections, target, tok, wrong=len(wrongs), sampled=len(paths)))

        _, rights, paths = ctx.collect(states["self_train"], fresh, ctx.seed * 100 + 50 + r)
        selfs += A.match_tokens(rights, step_tokens, tok, cfg.token_tolerance, ctx.seed + r, strict=False)
        res, states["self_train"] = ctx.train_eval(f"self_train_r{r}", ctx.cot + selfs)
        out["self_train"].append(_row(r, res, selfs, target, tok, right=len(rights), sampled=len(paths)))

        more = A.match_tokens(extra_left, step_tokens, tok, cfg.token_tolerance, ctx.seed + r)
        taken = {e.completion for e in more}
        extra_left = [e for e in extra_left if e.completion not in taken]
        extra_used += more
        res, _ = ctx.train_eval(f"cot_extra_r{r}", ctx.cot + extra_used, keep=False)
        out["cot_extra"].append(_row(r, res, extra_used, target, tok))
    return out


def _row(r: int, res: dict, added: list, target: int, tok, **extra) -> dict:
    n = completion_tokens(added, tok)
    return {"round": r, **res, "added_tokens": n, "token_ratio": n / target if target else float("nan"), **extra}
