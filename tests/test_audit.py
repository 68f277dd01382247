"""The registry audit: passes on the real registry, catches planted lies (issue 6)."""
from __future__ import annotations

import dataclasses
import json
import shutil
from pathlib import Path

import pytest

from experiments import audit as cli
from igla_jax.evidence.audit import Report, check_runtime, check_test_node, run_audit
from igla_jax.evidence.coq import CoqBuild, _names, compile_proofs
from igla_jax.evidence.prereg import repo_root
from igla_jax.evidence.registry import Entry, load_registry

REPO = repo_root()
REGISTRY = REPO / "assertions" / "igla_assertions.json"
needs_coq = pytest.mark.skipif(shutil.which("coqc") is None,
                               reason="coqc not on PATH: install Debian's coq (apt-get install -y coq); CI has it")


@pytest.fixture(scope="session")
def coq_build(tmp_path_factory) -> CoqBuild:
    """The real proofs, compiled once per session into a temp dir."""
    if shutil.which("coqc") is None:
        pytest.skip("coqc not on PATH: install Debian's coq (apt-get install -y coq); CI has it")
    return compile_proofs(REPO / "proofs", tmp_path_factory.mktemp("coq"))


@pytest.fixture(scope="session")
def entries() -> tuple[Entry, ...]:
    return load_registry(REGISTRY)


def _failures(report: Report) -> dict[str, tuple[str, ...]]:
    return {r.entry.id: r.failures for r in report.rows if r.failures}


def _replace(entries: tuple[Entry, ...], eid: str, **changes) -> tuple[Entry, ...]:
    assert any(e.id == eid for e in entries), f"registry has no entry {eid}: update this test"
    return tuple(dataclasses.replace(e, **changes) if e.id == eid else e for e in entries)


# ----------------------------------------------------------------------------- real registry

@needs_coq
def test_real_registry_passes_with_coq(coq_build, entries):
    assert not coq_build.failed, f"proofs do not compile: {coq_build.failed}"
    report = run_audit(entries, root=REPO, build=coq_build)
    assert report.ok, f"audit failures: {_failures(report)} {report.global_failures}"
    for r in report.rows:
        if r.entry.status == "Proven":
            assert r.coq.startswith("closed"), (r.entry.id, r.coq)
        if r.entry.status in ("Empirical", "Admitted") and r.entry.coq_lemma:
            assert not r.coq.startswith("closed"), (r.entry.id, r.coq)


def test_real_registry_passes_without_coq(entries):
    report = run_audit(entries, root=REPO, build=None, coq_note="skipped in test")
    assert report.ok, f"audit failures: {_failures(report)}"
    assert {r.coq for r in report.rows} <= {"skipped", "no lemma"}


def test_registry_covers_issue_invariants(entries):
    names = {e.name for e in entries}
    required = {"asha_champion_survives", "asha_rung_progression", "ema_decay_valid", "victory_predicate_sound",
                "trinity_identity", "mup_lr_transfer_invariant", "zero_cost_correlation_floor",
                "surrogate_pruning_no_regret", "ucb_arch_no_regret", "phi_grid_completeness"}
    assert required <= names, f"missing entries: {sorted(required - names)}"
    assert all(not e.problems for e in entries), [(e.id, e.problems) for e in entries if e.problems]


# ----------------------------------------------------------------------------- planted lies

@needs_coq
def test_falsify_proven_claim_on_admitted_lemma(coq_build, entries):
    honest = run_audit(entries, root=REPO, build=coq_build)
    assert honest.ok, _failures(honest)
    lie = run_audit(_replace(entries, "INV-13", status="Proven"), root=REPO, build=coq_build)
    assert not lie.ok
    fails = _failures(lie)
    assert list(fails) == ["INV-13"], fails
    assert "status Proven but Coq says IGLA.Empirical.mup_lr_transfer_invariant is Admitted" in fails["INV-13"][0]


def _mini_repo(tmp_path: Path) -> Path:
    """A tiny repository: a helper proven by admit, a lemma built on it, an honest lemma, one test."""
    (tmp_path / "proofs" / "m").mkdir(parents=True)
    (tmp_path / "proofs" / "_CoqProject").write_text("-R m M\nm/Lies.v\n")
    (tmp_path / "proofs" / "m" / "Lies.v").write_text(
        "Lemma helper : 2 + 2 = 5. Proof. admit. Admitted.\n"
        "Lemma built_on_helper : 2 + 2 = 5 /\\ True. Proof. split. exact helper. exact I. Qed.\n"
        "Lemma honest : 2 + 2 = 4. Proof. reflexivity. Qed.\n")
    (tmp_path / "tests").mkdir()
    (tmp_path / "tests" / "test_fake.py").write_text("def test_fake():\n    assert True\n")
    return tmp_path


def _mini_entries(tmp_path: Path, lemma_status: dict[str, str]) -> Path:
    reg = {"entries": [
        {"id": f"E-{lem}", "name": lem, "statement": "planted", "status": st, "coq_file": "proofs/m/Lies.v",
         "coq_lemma": lem, "runtime_check": "igla_jax.evidence.audit.run_audit", "runtime_check_status": "exists",
         "tests": ["tests/test_fake.py::test_fake"], "evidence": "planted"}
        for lem, st in lemma_status.items()]}
    path = tmp_path / "registry.json"
    path.write_text(json.dumps(reg))
    return path


@needs_coq
def test_falsify_admit_hidden_under_a_helper(tmp_path):
    root = _mini_repo(tmp_path)
    build = compile_proofs(root / "proofs", tmp_path / "build")
    assert not build.failed
    reg = _mini_entries(tmp_path, {"built_on_helper": "Proven", "honest": "Proven", "helper": "Admitted"})
    report = run_audit(load_registry(reg), root=root, build=build)
    fails = _failures(report)
    assert list(fails) == ["E-built_on_helper"], fails
    assert "it rests on M.Lies.helper" in fails["E-built_on_helper"][0]
    coq = {r.entry.name: r.coq for r in report.rows}
    assert coq == {"built_on_helper": "depends on 1 axiom(s)/admitted", "honest": "closed", "helper": "Admitted"}


@needs_coq
def test_falsify_admit_qed_does_not_compile(tmp_path):
    root = _mini_repo(tmp_path)
    (root / "proofs" / "m" / "Lies.v").write_text("Lemma bad : 2 + 2 = 5. Proof. admit. Qed.\n")
    build = compile_proofs(root / "proofs", tmp_path / "build")
    report = run_audit(load_registry(_mini_entries(tmp_path, {"bad": "Proven"})), root=root, build=build)
    assert not report.ok
    assert any("m/Lies.v does not compile" in f for f in report.global_failures), report.global_failures
    assert "did not compile" in _failures(report)["E-bad"][0]


def test_falsify_runtime_check_that_does_not_exist(entries):
    eid = "INV-12"
    assert run_audit(entries, root=REPO, build=None).ok
    for bad, why in (("igla_jax.evidence.prereg.no_such_function", "igla_jax.evidence.prereg has no attribute or submodule 'no_such_function'"),
                     ("igla_jax.no_such_module.f", "igla_jax has no attribute or submodule 'no_such_module'"),
                     ("no_such_package.f", "no module 'no_such_package'")):
        report = run_audit(_replace(entries, eid, runtime_check=bad), root=REPO, build=None)
        fails = _failures(report)
        assert list(fails) == [eid], fails
        assert f"runtime check {bad!r} does not import" in fails[eid][0] and why in fails[eid][0], fails[eid]
    # Declared missing, the same absent check is honest.
    ok = run_audit(_replace(entries, eid, runtime_check="igla_jax.evidence.prereg.no_such_function",
                            runtime_check_status="missing: planned"), root=REPO, build=None)
    assert ok.ok, _failures(ok)


def test_falsify_named_test_that_does_not_exist(entries):
    eid = "INV-12"
    report = run_audit(_replace(entries, eid, tests=("tests/test_prereg.py::test_no_such_test",)), root=REPO, build=None)
    fails = _failures(report)
    assert list(fails) == [eid]
    assert "tests/test_prereg.py defines no test 'test_no_such_test'" in fails[eid][0]
    declared = _replace(entries, eid, tests=("tests/test_prereg.py::test_no_such_test",), tests_status="missing: planned")
    assert run_audit(declared, root=REPO, build=None).ok


def test_declared_missing_check_that_imports_is_a_warning_not_a_failure(entries):
    report = run_audit(_replace(entries, "INV-12", runtime_check_status="missing: stale"), root=REPO, build=None)
    assert report.ok
    row = next(r for r in report.rows if r.entry.id == "INV-12")
    assert "set runtime_check_status to 'exists'" in row.warnings[0]


# ----------------------------------------------------------------------------- pieces

def test_check_test_node(tmp_path):
    (tmp_path / "tests").mkdir()
    (tmp_path / "tests" / "test_x.py").write_text(
        "def test_a():\n    pass\n\ndef helper():\n    pass\n\nclass TestK:\n    def test_m(self):\n        pass\n")
    ok = ["tests/test_x.py", "tests/test_x.py::test_a", "tests/test_x.py::test_a[1-2]", "tests/test_x.py::TestK::test_m"]
    assert [check_test_node(tmp_path, n) for n in ok] == [None] * 4
    assert "does not exist" in check_test_node(tmp_path, "tests/test_y.py::test_a")
    assert "defines no test 'test_b'" in check_test_node(tmp_path, "tests/test_x.py::test_b")
    assert "not collected by pytest" in check_test_node(tmp_path, "tests/test_x.py::helper")
    assert "defines no test 'TestK::test_z'" in check_test_node(tmp_path, "tests/test_x.py::TestK::test_z")


def test_check_runtime():
    assert check_runtime("igla_jax.evidence.audit.run_audit") is None
    assert check_runtime("igla_jax.evidence.audit.Report.ok") is None
    assert "has no attribute or submodule 'nope'" in check_runtime("igla_jax.evidence.audit.nope")
    assert "Report has no attribute 'nope'" in check_runtime("igla_jax.evidence.audit.Report.nope")


def test_schema_problems_are_named(tmp_path):
    raw = {"id": "X-1", "name": "x", "statement": "s", "status": "Proved", "coq_file": None, "coq_lemma": None,
           "runtime_check": None, "tests": [], "evidnce": "typo"}
    path = tmp_path / "r.json"
    path.write_text(json.dumps({"entries": [raw]}))
    (e,) = load_registry(path)
    text = " | ".join(e.problems)
    assert "unknown field 'evidnce'" in text
    assert "status 'Proved' is not one of" in text
    assert "runtime_check is null: say why" in text
    assert "names no test" in text


def test_print_assumptions_names():
    block = ("Axioms:\nClassicalDedekindReals.sig_forall_dec\n  : forall P : nat -> Prop,\n"
             "    {n : nat | ~ P n} + {forall n : nat, P n}\nfoo : 1 = 2")
    assert _names(block) == ["ClassicalDedekindReals.sig_forall_dec", "foo"]
    assert _names("Closed under the global context") == []


def test_cli_exit_codes(tmp_path, capsys):
    assert cli.main(["--no-coq"]) == 0
    assert "audit passed (Coq skipped: Proven statuses not verified)" in capsys.readouterr().out
    data = json.loads(REGISTRY.read_text())
    data["entries"][0]["runtime_check"] = "igla_jax.nowhere.f"
    data["entries"][0]["runtime_check_status"] = "exists"
    lie = tmp_path / "lie.json"
    lie.write_text(json.dumps(data))
    assert cli.main(["--no-coq", "--registry", str(lie)]) == 1
    out = capsys.readouterr().out
    assert f"FAIL {data['entries'][0]['id']}" in out and "igla_jax.nowhere.f" in out
    assert cli.main(["--no-coq", "--registry", str(tmp_path / "absent.json")]) == 2
    assert "cannot read registry" in capsys.readouterr().err
    with pytest.raises(SystemExit) as exc:
        cli.main(["--bogus"])
    assert exc.value.code == 2
