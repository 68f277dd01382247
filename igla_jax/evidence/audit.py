"""Assertion registry audit (issue 6): Coq decides what is proven; imports and test ids are checked.

A registry entry may say Proven only if Coq's `Print Assumptions` shows its lemma closed under the
global context. The one exception is the standard library's axiomatisation of the real numbers
(`igla_jax.evidence.coq.STD_REAL_AXIOMS`, three names, shown in the table): every theorem about Coq's `R` rests on them.
Any Admitted lemma, admit or Axiom underneath makes the lemma not closed.
"""
from __future__ import annotations

import ast
import dataclasses
import importlib
import re
import sys
from pathlib import Path
from typing import Any, Sequence

from igla_jax.evidence.coq import CoqBuild, CoqProject, CoqVerdict, module_of, query_lemmas
from igla_jax.evidence.prereg import repo_root
from igla_jax.evidence.registry import Entry, _missing


# ----------------------------------------------------------------------------- runtime links


def check_runtime(dotted: str) -> str | None:
    """None when `dotted` (module path + attributes) imports; otherwise what went wrong."""
    parts = dotted.split(".")
    for i in range(len(parts), 0, -1):
        modname = ".".join(parts[:i])
        try:
            obj = importlib.import_module(modname)
        except ModuleNotFoundError as e:
            if e.name and (modname == e.name or modname.startswith(e.name + ".")):
                continue  # this prefix is not a module: try a shorter one
            return f"importing {modname} failed: {type(e).__name__}: {e}"
        except Exception as e:  # a module that raises on import is a broken link, not a crash
            return f"importing {modname} failed: {type(e).__name__}: {e}"
        for k, attr in enumerate(parts[i:], start=i):
            if not hasattr(obj, attr):
                what = "attribute or submodule" if k == i else "attribute"
                return f"{'.'.join(parts[:k])} has no {what} {attr!r}"
            obj = getattr(obj, attr)
        return None
    return f"no module {parts[0]!r} can be imported"


def check_test_node(root: Path, nodeid: str) -> str | None:
    """None when the pytest node id names a test defined in its file (parsed, not run)."""
    file, *names = nodeid.split("::")
    path = root / file
    if not path.is_file():
        return f"test file {file} does not exist"
    try:
        tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    except SyntaxError as e:
        return f"{file} does not parse: {e.msg} at line {e.lineno}"
    scope: list[ast.stmt] = tree.body
    for k, n in enumerate(names):
        n = n.split("[", 1)[0] if k == len(names) - 1 else n
        last = k == len(names) - 1
        kinds = (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef) if last else (ast.ClassDef,)
        hit = next((d for d in scope if isinstance(d, kinds) and d.name == n), None)
        if hit is None:
            return f"{file} defines no {'test' if last else 'class'} {'::'.join(names[:k + 1])!r}"
        prefix = "Test" if isinstance(hit, ast.ClassDef) else "test"
        if not n.startswith(prefix):
            return f"{file}::{n} is not collected by pytest (name must start with {prefix!r})"
        scope = hit.body if isinstance(hit, ast.ClassDef) else []
    return None


# ----------------------------------------------------------------------------- the audit


@dataclasses.dataclass(frozen=True)
class Row:
    entry: Entry
    coq: str
    check: str
    tests: str
    failures: tuple[str, ...]
    warnings: tuple[str, ...]


@dataclasses.dataclass(frozen=True)
class Report:
    rows: tuple[Row, ...]
    coq_note: str | None             # why the Coq part was skipped, if it was
    global_failures: tuple[str, ...]  # proof files that do not compile, ...
    global_warnings: tuple[str, ...]

    @property
    def ok(self) -> bool:
        return not self.global_failures and not any(r.failures for r in self.rows)


def _lemma_of(e: Entry, root: Path, project: CoqProject) -> tuple[str | None, str | None]:
    """(fully qualified lemma, None) or (None, what is wrong with coq_file)."""
    path = (root / str(e.coq_file)).resolve()
    if not path.is_file():
        return None, f"coq_file {e.coq_file} does not exist"
    try:
        rel = path.relative_to(project.dir.resolve()).as_posix()
    except ValueError:
        return None, f"coq_file {e.coq_file} is not under the proofs directory {project.dir}"
    mod = module_of(project, rel)
    if rel not in project.files or mod is None:
        return None, f"coq_file {e.coq_file} is not listed in {project.dir / '_CoqProject'}: never compiled"
    return f"{mod}.{e.coq_lemma}", None


def _coq_column(e: Entry, root: Path, build: CoqBuild | None, verdicts: dict[str, CoqVerdict],
                fail: list[str], warn: list[str]) -> str:
    if e.coq_lemma is None or e.coq_file is None:
        return "no lemma"
    if build is None:
        if not (root / e.coq_file).is_file():
            fail.append(f"coq_file {e.coq_file} does not exist")
        return "skipped"
    lem, why = _lemma_of(e, root, build.project)
    if lem is None:
        fail.append(str(why))
        return "not checked"
    v = verdicts[lem]
    if v.state in ("missing", "error"):
        fail.append(f"Coq lemma {lem}: {v.state}: {v.detail}")
    elif e.status == "Proven" and v.state == "admitted":
        fail.append(f"status Proven but Coq says {lem} is Admitted (Print Assumptions lists the lemma itself)")
    elif e.status == "Proven" and not v.proven:
        fail.append(f"status Proven but Coq says {lem} is not closed: it rests on {v.detail}")
    elif e.status != "Proven" and v.proven:
        warn.append(f"status {e.status} but Coq closes {lem}: consider Proven")
    return v.describe()


def _check_column(e: Entry, fail: list[str], warn: list[str]) -> str:
    declared_missing = _missing(e.runtime_check_status)
    if e.runtime_check is None:
        return f"none ({e.runtime_check_status})"
    err = check_runtime(e.runtime_check)
    if err is None:
        if declared_missing:
            warn.append(f"runtime check {e.runtime_check} imports although declared "
                        f"{e.runtime_check_status!r}: set runtime_check_status to 'exists'")
        return f"{e.runtime_check} ok"
    if declared_missing:
        return f"{e.runtime_check} (declared missing)"
    fail.append(f"runtime check {e.runtime_check!r} does not import: {err}")
    return f"{e.runtime_check} BROKEN"


def _tests_column(e: Entry, root: Path, fail: list[str], warn: list[str]) -> str:
    declared_missing = _missing(e.tests_status)
    bad = [(t, why) for t in e.tests if (why := check_test_node(root, t)) is not None]
    if declared_missing:
        if e.tests and not bad:
            warn.append(f"tests {list(e.tests)} exist although declared {e.tests_status!r}: set tests_status to 'exists'")
        return f"{len(e.tests) - len(bad)}/{len(e.tests)} (declared missing)"
    for t, why in bad:
        fail.append(f"test {t!r} not found: {why}")
    return f"{len(e.tests) - len(bad)}/{len(e.tests)} found"


def run_audit(entries: Sequence[Entry], *, root: str | Path, build: CoqBuild | None,
              coq_note: str | None = None) -> Report:
    """Checks every entry against Coq (when build is given), its runtime check and its tests."""
    root = Path(root).resolve()
    if str(repo_root()) not in sys.path:  # runtime checks name this project's packages
        sys.path.insert(0, str(repo_root()))
    gfail: list[str] = []
    gwarn: list[str] = []
    verdicts: dict[str, CoqVerdict] = {}
    if build is not None:
        for f, err in build.failed:
            where = re.search(r"line (\d+), characters [\d-]+", err)
            gfail.append(f"{build.project.dir.name}/{f} does not compile"
                         f"{f' ({where.group(0)})' if where else ''}: {err.splitlines()[-1] if err else '?'}")
        listed = set(build.project.files)
        gwarn += [f"{p.relative_to(build.project.dir).as_posix()} is not in _CoqProject: never compiled"
                  for p in sorted(build.project.dir.rglob("*.v"))
                  if p.relative_to(build.project.dir).as_posix() not in listed]
        lemmas = [lem for e in entries if e.coq_lemma and e.coq_file
                  for lem in [_lemma_of(e, root, build.project)[0]] if lem]
        verdicts = query_lemmas(build, lemmas)
    rows = []
    for e in entries:
        fail, warn = list(e.problems), []
        coq = _coq_column(e, root, build, verdicts, fail, warn)
        check = _check_column(e, fail, warn)
        tests = _tests_column(e, root, fail, warn)
        rows.append(Row(e, coq, check, tests, tuple(fail), tuple(warn)))
    return Report(tuple(rows), coq_note, tuple(gfail), tuple(gwarn))


def render(report: Report, console: Any) -> None:
    """Prints the table and then every failure and warning, each naming its entry."""
    from rich.markup import escape
    from rich.table import Table
    table = Table(title="IGLA assertion registry audit")
    for col in ("id", "name", "status", "Coq says", "runtime check", "tests", "verdict"):
        table.add_column(col, overflow="fold")
    for r in report.rows:
        e = r.entry
        pending = _missing(e.runtime_check_status) or _missing(e.tests_status)
        verdict = ("[red]FAIL[/red]" if r.failures else "[yellow]warn[/yellow]" if r.warnings
                   else "[cyan]ok, links pending[/cyan]" if pending else "[green]ok[/green]")
        table.add_row(*(escape(x) for x in (e.id, e.name, e.status, r.coq, r.check, r.tests)), verdict)
    console.print(table)
    lines = ([f"[yellow]note:[/yellow] {escape(report.coq_note)}"] if report.coq_note else [])
    lines += [f"[red]FAIL[/red] {escape(m)}" for m in report.global_failures]
    lines += [f"[red]FAIL[/red] {escape(f'{r.entry.id} ({r.entry.name}): {m}')}" for r in report.rows for m in r.failures]
    lines += [f"[yellow]warn[/yellow] {escape(m)}" for m in report.global_warnings]
    lines += [f"[yellow]warn[/yellow] {escape(f'{r.entry.id} ({r.entry.name}): {m}')}" for r in report.rows for m in r.warnings]
    n_fail = sum(bool(r.failures) for r in report.rows) + len(report.global_failures)
    caveat = " (Coq skipped: Proven statuses not verified)" if report.coq_note else ""
    lines.append(f"[green]audit passed{caveat}[/green]" if report.ok else f"[red]audit failed: {n_fail} mismatch(es){caveat}[/red]")
    for ln in lines:
        console.print(ln, highlight=False)
