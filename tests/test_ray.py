"""The `ray` executor on a real local Ray cluster (2 CPUs, started once for the module): the smoke race with
2 workers, plainly and with a worker killed mid-action, against the one-worker run in deterministic mode.

Skipped where Ray is not installed (pip install -e '.[ray]'; CI installs it).
"""
from __future__ import annotations

import os
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest

ray = pytest.importorskip("ray")

from igla_jax.evidence.ledger import read_ledger  # noqa: E402
from igla_jax.execution.race_runner import run_race  # noqa: E402

REPO = Path(__file__).resolve().parent.parent
RESULTS = ("trained", "diverged", "confirmed", "reproduced")
SEED = 42


def key_rows(rows):
    """What must be identical between two runs of one race (not ts, wall time, run id, executor details)."""
    return [(r.get("event_id"), r["status"], r["config_id"], r["seed"], r["step"], r["bpb"], r.get("decided_by"),
             r.get("score"), (r.get("extra") or {}).get("trial_id"), r.get("test_bpb")) for r in rows]


def board(db: Path):
    con = sqlite3.connect(db)
    try:
        return (con.execute("SELECT trial_id, step, bpb, status FROM evaluations ORDER BY trial_id, step").fetchall(),
                con.execute("SELECT trial_id, config_id, seed, status FROM trials ORDER BY trial_id").fetchall())
    finally:
        con.close()


@pytest.fixture(scope="module")
def cache(tmp_path_factory):
    return str(tmp_path_factory.mktemp("xla_cache"))


@pytest.fixture(scope="module")
def reference(tmp_path_factory, cache):
    """The one-worker run: the same race (2 slots) on the local executor, results in action-id order.

    Run in a subprocess with the persistent compile cache, which it fills for the Ray workers.
    """
    out = tmp_path_factory.mktemp("ref") / "run"
    code = ("import sys; from igla_jax.execution.runner import enable_compile_cache; "
            "from igla_jax.execution.race_runner import run_race; "
            "enable_compile_cache(sys.argv[2]); "
            f"run_race(seed={SEED}, preset='smoke', out=sys.argv[1], executor='local', workers=2, deterministic=True)")
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")])}
    r = subprocess.run([sys.executable, "-c", code, str(out), cache], cwd=REPO, env=env, capture_output=True,
                       text=True, timeout=600)
    assert r.returncode == 0, r.stderr[-3000:]
    return out, read_ledger(out / "ledger.jsonl").rows


@pytest.fixture(scope="module")
def cluster():
    """A local Ray cluster with 2 CPUs for the whole module (workers find igla_jax through PYTHONPATH)."""
    old = os.environ.get("PYTHONPATH")
    os.environ["PYTHONPATH"] = os.pathsep.join(p for p in (str(REPO), old) if p)
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    try:
        yield
    finally:
        ray.shutdown()
        if old is None:
            os.environ.pop("PYTHONPATH", None)
        else:
            os.environ["PYTHONPATH"] = old


def ray_race(out: Path, cache: str, **kw):
    return run_race(seed=SEED, preset="smoke", out=out, executor="ray", workers=2, compile_cache=cache, **kw)


def test_ray_two_workers_deterministic_equals_the_one_worker_run(cluster, reference, cache, tmp_path):
    ref_out, ref_rows = reference
    o = ray_race(tmp_path / "r", cache, deterministic=True)
    rows = read_ledger(tmp_path / "r" / "ledger.jsonl").rows
    assert o.summary.stopped_by == "complete" and o.summary.reproduced is not None
    assert key_rows(rows) == key_rows(ref_rows)
    assert board(tmp_path / "r" / "race.db") == board(ref_out / "race.db")
    how = [r["extra"]["executor"] for r in rows if r["status"] in RESULTS]
    assert {h["backend"] for h in how} == {"ray"} and all(h["pid"] != os.getpid() for h in how)


def test_ray_worker_killed_mid_action_costs_only_that_action(cluster, reference, cache, tmp_path, monkeypatch):
    ref_out, ref_rows = reference
    k = next(r["event_id"] for r in ref_rows if r["status"] == "promoted")  # a continuation from its checkpoint
    marker = tmp_path / "killed.txt"
    monkeypatch.setenv("IGLA_RAY_TEST_KILL", f"{k}:{marker}")
    ray_race(tmp_path / "k", cache, deterministic=True)
    assert marker.is_file(), "the hook must have killed the worker running the action"
    killed_pid = int(marker.read_text().split()[1])
    rows = read_ledger(tmp_path / "k" / "ledger.jsonl").rows
    assert key_rows(rows) == key_rows(ref_rows)                      # nothing lost
    answer = [r for r in rows if r["event_id"] == k and r["status"] in RESULTS]
    assert len(answer) == 1 and answer[0]["extra"]["executor"]["pid"] != killed_pid   # retried elsewhere, written once
    assert board(tmp_path / "k" / "race.db") == board(ref_out / "race.db")


def test_ray_two_workers_in_arrival_order(cluster, reference, cache, tmp_path):
    ref_out, ref_rows = reference
    out = tmp_path / "a"
    o = ray_race(out, cache)  # 2 workers: results reach the race as they arrive
    rows = read_ledger(out / "ledger.jsonl").rows
    res = [r for r in rows if r["status"] in RESULTS]
    assert [r["extra"]["arrival"] for r in res] == list(range(len(res)))
    assert len({r["event_id"] for r in res}) == len(res) == o.executed
    # the same trials (the sampler's k-th proposal does not depend on timing), measured the same at rung 1
    rung1 = lambda rs: sorted((r["extra"]["trial_id"], r["config_id"], r["bpb"]) for r in rs  # noqa: E731
                              if r["status"] == "trained" and r["extra"]["rung"] == 0)
    assert rung1(rows) == rung1(ref_rows)
    # the ledger holds the arrival order: a resume rebuilds exactly this race and computes nothing
    again = ray_race(out, cache, resume=True)
    assert again.executed == 0 and again.ranking == o.ranking and again.summary.champion == o.summary.champion


def test_cli_joins_the_cluster_with_ray_address(cluster, cache, tmp_path):
    """The CLI path: --executor ray --workers 2 --ray-address joins a running cluster; the driver writes the ledger."""
    out = tmp_path / "cli"
    addr = ray.get_runtime_context().gcs_address
    env = {**os.environ, "IGLA_JAX_CACHE": cache}
    r = subprocess.run([sys.executable, "-m", "experiments.race", "--seed", str(SEED), "--preset", "smoke", "--out",
                        str(out), "--executor", "ray", "--workers", "2", "--ray-address", addr], cwd=REPO, env=env,
                       capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, r.stderr[-3000:]
    assert "finished: every trial it could start has raced" in r.stdout and "Traceback" not in r.stderr
    res = [x for x in read_ledger(out / "ledger.jsonl").rows if x["status"] in RESULTS]
    assert res and {x["extra"]["executor"]["backend"] for x in res} == {"ray"}
    assert [x["extra"]["arrival"] for x in res] == list(range(len(res)))
