"""Assertion registry audit (issue 6): Coq decides what is proven; imports and test ids are checked.

A registry entry may say Proven only if Coq's `Print Assumptions` shows its lemma closed under the
global context. The one exception is the standard library's axiomatisation of the real numbers
(STD_REAL_AXIOMS, three names, shown in the table): every theorem about Coq's `R` rests on them.
Any Admitted lemma, admit or Axiom underneath makes the lemma not closed.
"""
from __future__ import annotations

import ast
import dataclasses
import importlib
import json
import re
import shlex
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any, Sequence

STATUSES = ("Proven", "Admitted", "Empirical", "Falsified")
FIELDS = ("id", "name", "statement", "status", "coq_file", "coq_lemma", "runtime_check",
          "runtime_check_status", "tests", "tests_status", "evidence")
STD_REAL_AXIOMS = frozenset({
    "Coq.Reals.ClassicalDedekindReals.sig_forall_dec",
    "Coq.Reals.ClassicalDedekindReals.sig_not_dec",
    "Coq.Logic.FunctionalExtensionality.functional_extensionality_dep",
})
BUILD_SUFFIXES = (".vo", ".vos", ".vok", ".glob", ".aux", ".cache")
_MARK = "@@IGLA-AUDIT"


class RegistryError(ValueError):
    """The registry file is missing or not valid JSON of the expected shape."""


def repo_root() -> Path:
    """The repository this module belongs to."""
    return Path(__file__).resolve().parents[1]


# ----------------------------------------------------------------------------- registry

@dataclasses.dataclass(frozen=True)
class Entry:
    id: str
    name: str
    statement: str
    status: str
    coq_file: str | None
    coq_lemma: str | None
    runtime_check: str | None
    runtime_check_status: str
    tests: tuple[str, ...]
    tests_status: str
    evidence: str | None
    problems: tuple[str, ...] = ()  # schema problems found while loading


def _missing(declared: str) -> bool:
    return declared.startswith("missing:")


def _entry(i: int, raw: Any) -> Entry:
    """One entry, with every schema problem recorded rather than raised."""
    if not isinstance(raw, dict):
        return Entry(f"#{i}", "?", "", "?", None, None, None, "exists", (), "exists", None,
                     (f"entry #{i} is {type(raw).__name__}, expected an object",))
    p: list[str] = [f"unknown field {k!r} (known: {', '.join(FIELDS)})" for k in raw if k not in FIELDS]
    def text(k: str, required: bool) -> str | None:
        v = raw.get(k)
        if v is None and not required:
            return None
        if not isinstance(v, str) or not v.strip():
            p.append(f"field {k!r} must be a non-empty string, got {v!r}")
            return None if v is None else str(v)
        return v
    eid, name, statement = text("id", True) or f"#{i}", text("name", True) or "?", text("statement", True)
    status = text("status", True) or "?"
    if status not in STATUSES:
        p.append(f"status {status!r} is not one of {', '.join(STATUSES)}")
    coq_file, coq_lemma = text("coq_file", False), text("coq_lemma", False)
    if coq_lemma is not None and not re.fullmatch(r"[A-Za-z_][\w']*", coq_lemma):
        p.append(f"coq_lemma {coq_lemma!r} is not a Coq identifier (give the bare name; the module comes from coq_file)")
    if (coq_file is None) != (coq_lemma is None):
        p.append("coq_file and coq_lemma must both be set or both be null")
    if status == "Proven" and coq_lemma is None:
        p.append("status Proven needs a Coq lemma (coq_file, coq_lemma)")
    check = text("runtime_check", False)
    declared = {}
    for k in ("runtime_check_status", "tests_status"):
        d = raw.get(k, "exists")
        if not isinstance(d, str) or not (d == "exists" or (_missing(d) and d[8:].strip())):
            p.append(f"{k} must be 'exists' or 'missing: <why>', got {d!r}")
            d = "exists"
        declared[k] = d
    if check is None and not _missing(declared["runtime_check_status"]):
        p.append("runtime_check is null: say why with runtime_check_status 'missing: <why>'")
    tests = raw.get("tests", [])
    if not isinstance(tests, list) or not all(isinstance(t, str) and t for t in tests):
        p.append(f"tests must be a list of pytest node ids, got {tests!r}")
        tests = []
    if not tests and not _missing(declared["tests_status"]):
        p.append("names no test: list the tests that check it, or set tests_status 'missing: <why>'")
    evidence = text("evidence", status in ("Empirical", "Falsified"))
    return Entry(eid, name, statement or "", status, coq_file, coq_lemma, check,
                 declared["runtime_check_status"], tuple(tests), declared["tests_status"],
                 evidence, tuple(p))


def load_registry(path: str | Path) -> tuple[Entry, ...]:
    """Reads the registry; file-level errors raise RegistryError, entry-level ones are kept."""
    path = Path(path)
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except OSError as e:
        raise RegistryError(f"cannot read registry {path}: {e.strerror or e}") from None
    except json.JSONDecodeError as e:
        raise RegistryError(f"registry {path} is not valid JSON: {e.msg} at line {e.lineno}, column {e.colno}") from None
    if not isinstance(data, dict) or not isinstance(data.get("entries"), list):
        raise RegistryError(f"registry {path}: expected an object with an 'entries' list")
    entries = [_entry(i, raw) for i, raw in enumerate(data["entries"])]
    seen: dict[str, int] = {}
    for k, e in enumerate(entries):
        if e.id in seen:
            entries[k] = dataclasses.replace(e, problems=e.problems + (f"duplicate id {e.id!r} (also entry #{seen[e.id]})",))
        seen.setdefault(e.id, k)
    return tuple(entries)


# ----------------------------------------------------------------------------- Coq

@dataclasses.dataclass(frozen=True)
class CoqProject:
    dir: Path                                 # the proofs directory holding _CoqProject
    args: tuple[str, ...]                     # coqc arguments (-R/-Q maps, -arg values)
    maps: tuple[tuple[str, str], ...]         # (directory relative to dir, logical prefix)
    files: tuple[str, ...]                    # .v files relative to dir, in compile order


def read_coq_project(proofs_dir: str | Path) -> CoqProject:
    """Parses proofs_dir/_CoqProject (-R, -Q, -arg and .v files; # comments)."""
    proofs_dir = Path(proofs_dir)
    path = proofs_dir / "_CoqProject"
    try:
        toks = shlex.split(path.read_text(encoding="utf-8"), comments=True)
    except OSError as e:
        raise RegistryError(f"cannot read {path}: {e.strerror or e}") from None
    args: list[str] = []
    maps: list[tuple[str, str]] = []
    files: list[str] = []
    i = 0
    while i < len(toks):
        t = toks[i]
        if t in ("-R", "-Q") and i + 2 < len(toks):
            args += [t, toks[i + 1], toks[i + 2]]
            maps.append((toks[i + 1].rstrip("/"), toks[i + 2]))
            i += 3
        elif t == "-arg" and i + 1 < len(toks):
            args.append(toks[i + 1])
            i += 2
        elif t.endswith(".v"):
            files.append(t)
            i += 1
        else:
            raise RegistryError(f"{path}: unsupported token {t!r} (the audit knows -R, -Q, -arg and .v files)")
    return CoqProject(proofs_dir, tuple(args), tuple(maps), tuple(files))


def module_of(project: CoqProject, rel_file: str) -> str | None:
    """Logical module name of a .v file (relative to the proofs dir), from the -R/-Q maps."""
    parts = Path(rel_file).with_suffix("").parts
    for d, lib in project.maps:
        dparts = () if d in (".", "") else Path(d).parts
        if parts[:len(dparts)] == dparts:
            return ".".join((lib,) + parts[len(dparts):])
    return None


@dataclasses.dataclass(frozen=True)
class CoqBuild:
    project: CoqProject   # the original project (for paths)
    build_dir: Path       # compiled copy of the proofs directory
    failed: tuple[tuple[str, str], ...]  # (file, coqc error) for each file that did not compile


def _coqc(args: Sequence[str], cwd: Path, target: str) -> subprocess.CompletedProcess:
    return subprocess.run(["coqc", *args, target], cwd=cwd, capture_output=True, text=True, timeout=600)


def compile_proofs(proofs_dir: str | Path, build_dir: str | Path) -> CoqBuild:
    """Copies the proofs into build_dir and compiles each _CoqProject file there, in order."""
    project = read_coq_project(proofs_dir)
    dest = Path(build_dir) / "proofs"
    shutil.copytree(project.dir, dest, dirs_exist_ok=True,
                    ignore=lambda _d, names: [n for n in names if n.endswith(BUILD_SUFFIXES)])
    failed = []
    for f in project.files:
        r = _coqc(project.args, dest, f)
        if r.returncode != 0:
            failed.append((f, (r.stderr or r.stdout).strip()))
    return CoqBuild(project, dest, tuple(failed))


@dataclasses.dataclass(frozen=True)
class CoqVerdict:
    state: str                      # closed | closed-reals | admitted | axioms | missing | error
    assumptions: tuple[str, ...] = ()
    detail: str = ""

    @property
    def proven(self) -> bool:
        return self.state in ("closed", "closed-reals")

    def describe(self) -> str:
        """One short phrase for the table."""
        if self.state == "closed":
            return "closed"
        if self.state == "closed-reals":
            return f"closed (+{len(self.assumptions)} std Reals axioms)"
        if self.state == "admitted":
            return "Admitted"
        if self.state == "axioms":
            return f"depends on {len(self.assumptions)} axiom(s)/admitted"
        return f"{self.state}: {self.detail}"


def _run_query(build: CoqBuild, modules: Sequence[str], commands: Sequence[str]) -> tuple[list[str] | None, int | None, str]:
    """Runs `commands` after requiring modules; returns (output block per command, failing index, error)."""
    lines = [f"Require {' '.join(modules)}."] if modules else []
    head = len(lines)
    for k, c in enumerate(commands):
        lines += [f'Goal True. idtac "{_MARK} {k}". Abort.', c]
    query = Path(tempfile.mkdtemp(dir=build.build_dir.parent)) / "IglaAuditQuery.v"  # one per call: no races
    query.write_text("\n".join(lines) + "\n", encoding="utf-8")
    r = _coqc(build.project.args, build.build_dir, str(query))
    if r.returncode != 0:
        m = re.search(r'line (\d+), characters', r.stderr)
        line = int(m.group(1)) if m else 0
        k = (line - head) // 2 - 1 if line > head and (line - head) % 2 == 0 else None
        err = r.stderr.split("Error:", 1)[-1].strip().replace("\n", " ")
        return None, k, err
    blocks = re.split(rf"^{_MARK} \d+$", r.stdout, flags=re.M)[1:]
    return [b.strip() for b in blocks], None, ""


def _names(block: str) -> list[str]:
    """Assumption names from a Print Assumptions block (unindented lines, not section headers)."""
    if block == "Closed under the global context":
        return []
    return [ln.split(" : ")[0].strip() for ln in block.splitlines()
            if ln and not ln[0].isspace() and not ln.rstrip().endswith(":")]


def query_lemmas(build: CoqBuild, lemmas: Sequence[str]) -> dict[str, CoqVerdict]:
    """Print Assumptions for each fully qualified lemma; axiom names resolved with Locate."""
    bad_files = {module_of(build.project, f) for f, _ in build.failed}
    out: dict[str, CoqVerdict] = {}
    todo = []
    for lem in dict.fromkeys(lemmas):
        mod = lem.rsplit(".", 1)[0]
        if mod in bad_files:
            out[lem] = CoqVerdict("error", detail=f"module {mod} did not compile")
        else:
            todo.append(lem)
    modules = sorted({lem.rsplit(".", 1)[0] for lem in todo})
    while todo:
        blocks, k, err = _run_query(build, modules, [f"Print Assumptions {lem}." for lem in todo])
        if blocks is not None:
            break
        if k is None or not 0 <= k < len(todo):
            for lem in todo:
                out[lem] = CoqVerdict("error", detail=err)
            return out
        out[todo.pop(k)] = CoqVerdict("missing", detail=err)
    else:
        return out
    if len(blocks) != len(todo):
        return {**out, **{lem: CoqVerdict("error", detail="could not parse Print Assumptions output") for lem in todo}}
    printed = {lem: _names(b) for lem, b in zip(todo, blocks)}
    uniq = sorted({n for ns in printed.values() for n in ns if re.fullmatch(r"[\w'.]+", n)})
    full = {n: n for ns in printed.values() for n in ns}  # e.g. 'f is assumed to be guarded.' stays as is
    if uniq:
        located, _, _ = _run_query(build, modules, [f"Locate {n}." for n in uniq])
        for n, b in zip(uniq, located or []):
            m = re.match(r"\w+ (\S+)", b)
            if m:
                full[n] = m.group(1)
    for lem, ns in printed.items():
        names = tuple(full[n] for n in ns)
        if not names:
            out[lem] = CoqVerdict("closed")
        elif set(names) <= STD_REAL_AXIOMS:
            out[lem] = CoqVerdict("closed-reals", names)
        elif lem in names:
            out[lem] = CoqVerdict("admitted", names, "the lemma itself is Admitted")
        else:
            out[lem] = CoqVerdict("axioms", names, ", ".join(n for n in names if n not in STD_REAL_AXIOMS))
    return out


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


def coq_unavailable() -> str | None:
    """Why Coq cannot be used here, or None."""
    if shutil.which("coqc") is None:
        return "coqc not found on PATH: Coq part skipped (install Debian's coq: apt-get install -y coq)"
    return None


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
