"""Witness modes on ledger rows: the victory rule (each of its row checks) and H(3), fed rows the executor made."""
from __future__ import annotations

import dataclasses
import hashlib
import types
from typing import Any, Callable, Sequence

import igla_jax.evidence.ledger as ledger
import igla_jax.evidence.ledger_row as ledger_row
import igla_jax.evidence.victory as V
import igla_jax.execution.rows as executor_rows
from experiments.witness.cases import Case, Context, _configs
from igla_jax.evidence.prereg import Prereg
from igla_jax.search.race_types import Confirm, Reproduce


def victory_rows(ctx: Context, *, sha: str | None = None, row0: dict[str, Any] | None = None,
                 row1: dict[str, Any] | None = None) -> list[dict[str, Any]]:
    """Three confirmed rows of one config, made by the executor's result_row; row0 / row1 replace LedgerRow fields."""
    pr = ctx.prereg
    make = executor_rows.RowMaker(ledger_row.CodeVersion(sha or ctx.clean, False), run_id="witness", preset="full")
    top = min(pr.target_bpb, pr.mu0 - pr.effect_size) - 0.1
    cfg = _configs(1)[0]
    rows = []
    for k, seed in enumerate(pr.seeds):
        a = Confirm(k + 1, cfg, seed, max(pr.min_victory_step, pr.rungs[-1]))
        res = types.SimpleNamespace(status="ok", val_bpb=top + 0.01 * k + 0.02, test_bpb=top + 0.01 * k,
                                    step=a.to_step, wall_s=1.0, tokens_per_s=1.0, params=None)
        row = executor_rows.result_row(make, a, res, reproduce_tol=pr.reproduce_tol)
        over = (row0 if k == 0 else row1 if k == 1 else None) or {}
        rows.append(dataclasses.replace(row, **over).to_dict())
    return rows


def judge_rows(ctx: Context, rows: Sequence[dict[str, Any]], rule: str, inp: str) -> Case:
    """winning_seeds as the race calls it (real git resolver, embargo file, require_clean)."""
    v = V.winning_seeds(rows, ctx.judge_prereg, repo_dir=ctx.repo, resolve_commit=V.git_resolver(ctx.repo),
                        embargo_path=ctx.embargo, require_clean=True)
    named = [r for r in v.reasons if f"{rule}:" in r]
    said = named[0] if named else (v.reasons[0] if v.reasons else f"accepted, mean test_bpb {v.mean:.4f}")
    return Case(inp, not v.accepted, bool(named), said)


def _row_mode(rule: str, bad: Callable[[Context], dict[str, Any]], good: Callable[[Context], dict[str, Any]],
              what: str) -> Callable[[Context], tuple[Case, Case]]:
    def run(ctx: Context) -> tuple[Case, Case]:
        b, g = bad(ctx), good(ctx)
        return (judge_rows(ctx, victory_rows(ctx, **b), rule, _show(b) if b else what),
                judge_rows(ctx, victory_rows(ctx, **g), rule, _show(g) if g else f"{what} as made"))
    return run


def _show(kw: dict[str, Any]) -> str:
    return ", ".join(f"{k[:3]} {k[3:]}.{f} = {v:.6g}" if isinstance(v, float) else f"{k[:3]} {k[3:]}.{f} = {v}"
                     for k, d in kw.items() for f, v in d.items()) or "as made"


NO_COMMIT = hashlib.sha1(b"witness: a commit that does not exist").hexdigest()


def outside_seed(pr: Prereg) -> int:
    return next(s for s in range(max(pr.seeds) + 1, max(pr.seeds) + 100) if s not in pr.seeds)


def h3_unknown_sha(ctx: Context) -> tuple[Case, Case]:
    """The victory triple written to a seed_results.jsonl and read back; its sha names no commit."""
    def through_file(sha: str, name: str) -> list[dict[str, Any]]:
        path = ctx.tmp / name / "seed_results.jsonl"
        lg = ledger.Ledger(path)
        for r in victory_rows(ctx, sha=sha):
            lg.append(r)
        return ledger.read_ledger(path).rows
    return (judge_rows(ctx, through_file(NO_COMMIT, "bad"), V.UNKNOWN_SHA, f"seed_results.jsonl rows, sha {NO_COMMIT[:12]} (no commit)"),
            judge_rows(ctx, through_file(ctx.clean, "good"), V.UNKNOWN_SHA, f"same rows, sha {ctx.clean[:12]} (the commit)"))


def h3_reproduce(ctx: Context) -> tuple[Case, Case]:
    """The champion's from-scratch re-run on its search seed, recorded by the executor's result_row."""
    pr, jp = ctx.prereg, ctx.judge_prereg
    make = executor_rows.RowMaker(ledger_row.CodeVersion(ctx.clean, False), run_id="witness", preset="full")
    orig = pr.mu0 - 0.1

    def judge(delta: float) -> Case:
        a = Reproduce(9, _configs(1)[0], 7, pr.rungs[-1], orig)
        res = types.SimpleNamespace(status="ok", val_bpb=orig + delta, step=a.to_step, wall_s=1.0, tokens_per_s=1.0)
        row = executor_rows.result_row(make, a, res, reproduce_tol=jp.reproduce_tol)
        return Case(f"reproduce row {delta:+g} BPB from the champion's", row.status != "reproduced",
                    row.status not in ledger_row.VICTORY_STATUSES and f"> tol {jp.reproduce_tol}" in (row.note or ""),
                    f"status {row.status!r}: {row.note}")
    return judge(2 * pr.reproduce_tol), judge(pr.reproduce_tol / 2)


def row_mode(rule: str, bad: Callable[[Context], dict], good: Callable[[Context], dict], what: str,
             expected: str) -> dict:
    """The fields of a Mode that judges victory rows by `rule`: `bad` and `good` say what to change in the rows."""
    return dict(arm="rows", rule=f"victory.{rule}", expected=expected, run=_row_mode(rule, bad, good, what))
