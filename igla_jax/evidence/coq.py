"""Coq, as the audit asks it: the proofs' _CoqProject, a compiled copy of the proofs, and each
lemma's `Print Assumptions` (closed, closed but for the standard Reals axioms, Admitted, or axioms).

The one exception to "closed" is the standard library's axiomatisation of the real numbers
(STD_REAL_AXIOMS, three names, shown in the table): every theorem about Coq's `R` rests on them.
"""
from __future__ import annotations

import dataclasses
import re
import shlex
import shutil
import subprocess
import tempfile
from pathlib import Path
from typing import Sequence

from igla_jax.evidence.registry import RegistryError

STD_REAL_AXIOMS = frozenset({
    "Coq.Reals.ClassicalDedekindReals.sig_forall_dec",
    "Coq.Reals.ClassicalDedekindReals.sig_not_dec",
    "Coq.Logic.FunctionalExtensionality.functional_extensionality_dep",
})
BUILD_SUFFIXES = (".vo", ".vos", ".vok", ".glob", ".aux", ".cache")
_MARK = "@@IGLA-AUDIT"


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


def coq_unavailable() -> str | None:
    """Why Coq cannot be used here, or None."""
    if shutil.which("coqc") is None:
        return "coqc not found on PATH: Coq part skipped (install Debian's coq: apt-get install -y coq)"
    return None
