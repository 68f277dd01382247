"""The asynchronous live executor: out-of-order arrival, kill/resume at any point, the deadline, the CLI flags.

Fake trainers and a fake backend keep every race here to a second or two; the real trainer on a
real Ray cluster is tests/test_ray.py.
"""
from __future__ import annotations

import dataclasses
import json
import math
import sqlite3
import sys
import threading
import time
from pathlib import Path

import pytest

from igla_jax.evidence.ledger import Ledger, read_ledger
from igla_jax.evidence.ledger_row import LedgerError, LedgerRow
from igla_jax.execution.backends import Finished
from igla_jax.execution.presets import PRESETS, RaceSetupError
from igla_jax.execution.race_runner import run_race
from igla_jax.execution.runner import ActionRunner, Shape

RESULTS = ("trained", "diverged", "confirmed", "reproduced")


# ---------------------------------------------------------------- fakes
@dataclasses.dataclass(frozen=True)
class Res:
    val_bpb: float
    status: str
    step: int
    params: int
    tokens_per_s: float
    wall_s: float
    test_bpb: float | None = None
    train_curve: tuple = ()


class Crash(Exception):
    """Stands in for kill -9 in-process: escapes run_race with nothing cleaned up."""


class Trainer:
    """Deterministic run_trial (a pure function of the configs); checkpoints are step files, so nothing retrains.

    block_promoted: the first call that continues from a checkpoint advances `clock` past any budget and
    then waits, calling progress, until the executor cancels it (the deadline test).
    """

    def __init__(self, *, crash_at: int | None = None, clock: list | None = None, block_promoted: bool = False):
        self.calls: list[tuple[str | None, int, str]] = []   # (from_checkpoint name, to_step, how it ended)
        self.crash_at, self.clock, self.block = crash_at, clock, block_promoted
        self.populations: list[int] = []
        self.lock = threading.Lock()

    def run_trial(self, mc, tc, *, to_step, from_checkpoint=None, save_checkpoint=None, progress=None,
                  eval_test=False):
        with self.lock:
            self.calls.append((None if from_checkpoint is None else Path(from_checkpoint).parent.name + "/"
                               + Path(from_checkpoint).stem, to_step, "started"))
            n = len(self.calls)
        if self.crash_at is not None and n == self.crash_at:
            raise Crash()
        start = json.loads(Path(from_checkpoint).read_text())["step"] if from_checkpoint else 0
        if self.block and from_checkpoint is not None:
            self.block = False
            self.clock[0] += 1e6
            for _ in range(1000):  # progress raises once the executor cancels this action
                progress(start, to_step, 5.0)
                time.sleep(0.01)
            raise AssertionError("the executor never cancelled the action in flight at its deadline")
        if progress is not None:
            progress(start, to_step, 5.0)
        q = abs(math.log(tc.lr / 3e-3)) + (96 - mc.width) / 128 + abs(mc.depth - 2) / 4 + mc.dropout
        bpb = 2.0 + q + 2.0 * (100 / to_step) ** 0.5 + 1e-4 * (tc.seed % 97) + 1e-5 * (hash(mc) % 7)
        if save_checkpoint is not None:
            Path(save_checkpoint).parent.mkdir(parents=True, exist_ok=True)
            Path(save_checkpoint).write_text(json.dumps({"step": to_step}))
        with self.lock:
            self.calls[n - 1] = self.calls[n - 1][:2] + ("done",)
        return Res(bpb, "ok", to_step, 1000, 1e4, 0.01, bpb + 0.01 if eval_test else None, (5.0,))

    # the population contract: same results as one by one, and it always pays
    def population_pays(self, mc, n):
        return True

    def run_population(self, mcs, tcs, *, to_step, from_checkpoints, save_checkpoints, progress=None,
                       eval_tests=None):
        self.populations.append(len(tcs))
        assert len({m.shape() for m in mcs}) == 1, "a population is one compiled shape"
        return [self.run_trial(m, tc, to_step=to_step, from_checkpoint=f, save_checkpoint=s, progress=progress,
                               eval_test=e) for m, tc, f, s, e in zip(mcs, tcs, from_checkpoints, save_checkpoints,
                                                                     eval_tests)]


def runner(preset: str, out: Path, trainer: Trainer) -> ActionRunner:
    ps = PRESETS[preset]
    return ActionRunner(Shape(preset, ps.space, ps.context, ps.batch), out.resolve(), trainer)


class Scrambled:
    """A backend that finishes in-flight actions in a scrambled order: the smallest (7 * id) % 11, then id.

    The order depends only on which actions are in flight, so a resumed race meets the same order
    as the uninterrupted one. crash_after=k raises Crash at the poll after k results (a kill between
    two results, with work in flight).
    """

    def __init__(self, run: ActionRunner, *, workers: int = 4, crash_after: int | None = None):
        self.run, self.workers, self.crash_after = run, workers, crash_after
        self.flight: dict[int, tuple] = {}
        self.polled, self.clock = 0, 0.0
        self.cancelled: list[int] = []

    @property
    def now(self) -> float:
        return self.clock

    def submit(self, action, now):
        self.flight[action.action_id] = (action, now)

    def poll(self, timeout=None):
        if self.crash_after is not None and self.polled == self.crash_after:
            raise Crash()
        if not self.flight:
            return None
        aid = min(self.flight, key=lambda i: ((7 * i) % 11, i))
        a, issued = self.flight.pop(aid)
        res = self.run.run(a)
        self.polled += 1
        self.clock += 1.0
        return Finished(a, issued, self.clock - 1.0, self.clock, aid % self.workers, res)

    def cancel(self, action_id):
        self.cancelled.append(action_id)
        return self.flight.pop(action_id, None) is not None

    def in_flight(self):
        return len(self.flight)


def key_rows(rows):
    """What must be identical between two runs of one race (not ts, wall time, run id, executor details)."""
    return [(r.get("event_id"), r["status"], r["config_id"], r["seed"], r["step"], r["bpb"], r.get("decided_by"),
             r.get("score"), (r.get("extra") or {}).get("trial_id"), r.get("test_bpb"),
             (r.get("extra") or {}).get("arrival")) for r in rows]


def board(db: Path):
    con = sqlite3.connect(db)
    try:
        return (con.execute("SELECT trial_id, step, bpb, status FROM evaluations ORDER BY trial_id, step").fetchall(),
                con.execute("SELECT trial_id, config_id, seed, status FROM trials ORDER BY trial_id").fetchall())
    finally:
        con.close()


def trials(state):
    return [(t.trial_id, t.config.config_id, t.status, [(x.rung, x.step, x.bpb) for x in t.results])
            for t in state.trials]


def race(out: Path, preset: str = "quick", *, backend=None, trainer=None, workers: int = 4, **kw):
    tr = trainer or Trainer()
    be = backend(runner(preset, out, tr)) if backend is not None else kw.pop("executor", "local")
    return run_race(seed=3, preset=preset, out=out, trainer=tr, workers=workers, executor=be, **kw)


def results(rows):
    return [r for r in rows if r["status"] in RESULTS]


# ---------------------------------------------------------------- (a) out-of-order arrival
def test_out_of_order_results_keep_ledger_and_race_consistent(async_ref):
    out, o = async_ref
    assert o.summary.stopped_by == "complete" and o.summary.champion is not None
    rows = read_ledger(out / "ledger.jsonl").rows        # the ledger's own checks pass (no repeated key)
    res = results(rows)
    ids = [r["event_id"] for r in res]
    assert ids != sorted(ids), "the scrambled backend must deliver results out of action-id order"
    assert [r["extra"]["arrival"] for r in res] == list(range(len(res)))   # ledger order == arrival order
    decisions = [r["event_id"] for r in rows if r["status"] in ("pruned", "promoted")]
    assert decisions == sorted(decisions)                                  # decisions in the order they were made
    assert len({(r["event_id"], r["status"]) for r in rows}) == len(rows)
    assert len(ids) == len(set(ids)) == o.executed
    assert board(out / "race.db")[0] == sorted((r["extra"]["trial_id"], r["step"], r["bpb"], r["status"]) for r in res)
    # the ledger answers every action in its recorded order: a resume replays it into the same race
    again = race(out, backend=lambda r: Scrambled(r, crash_after=0), resume=True, deterministic=False)
    assert again.executed == 0 and again.replayed == len(res) and trials(again.state) == trials(o.state)
    assert again.summary.champion == o.summary.champion and again.ranking == o.ranking


@pytest.mark.parametrize("other", ["scrambled", "population"])
def test_deterministic_mode_gives_the_one_worker_leaderboard(tmp_path, other):
    ref = race(tmp_path / "ref", executor="local")        # one trial at a time: results in action-id order
    ref_rows = read_ledger(tmp_path / "ref" / "ledger.jsonl").rows
    if other == "scrambled":
        o = race(tmp_path / "o", backend=lambda r: Scrambled(r), deterministic=True)
    else:
        tr = Trainer()
        o = race(tmp_path / "o", executor="population", trainer=tr, deterministic=True)
        assert max(tr.populations) >= 2  # actions submitted together really trained as one population
    assert key_rows(o.rows) == key_rows(ref_rows)
    assert board(tmp_path / "o" / "race.db") == board(tmp_path / "ref" / "race.db")
    assert o.ranking == ref.ranking and trials(o.state) == trials(ref.state)


def test_arrival_order_changes_decisions_and_workers_are_part_of_the_spec(tmp_path):
    det = race(tmp_path / "det", backend=lambda r: Scrambled(r), deterministic=True)
    asy = race(tmp_path / "asy", backend=lambda r: Scrambled(r), deterministic=False)
    assert trials(det.state) != trials(asy.state)   # ASHA's decisions depend on arrival order (else the tests prove little)
    spec = json.loads((tmp_path / "det" / "race.json").read_text())["spec"]
    assert spec["workers"] == 4
    with pytest.raises(RaceSetupError, match="workers: recorded 4, now None"):
        race(tmp_path / "det", workers=1, resume=True)
    # another executor may continue the race: the executor is not part of what the race is
    race(tmp_path / "det", executor="population", resume=True)


# ---------------------------------------------------------------- (b) kill / resume at any point
@pytest.fixture(scope="module")
def async_ref(tmp_path_factory):
    out = tmp_path_factory.mktemp("async") / "ref"
    return out, race(out, backend=lambda r: Scrambled(r), deterministic=False)


@pytest.mark.parametrize("k", [1, 4, 9, 17, 30, 42])
def test_kill_after_k_results_then_resume_equals_uninterrupted(tmp_path, k, async_ref):
    ref_out, ref = async_ref
    ref_rows = read_ledger(ref_out / "ledger.jsonl").rows
    assert k < len(results(ref_rows))
    out = tmp_path / "killed"
    with pytest.raises(Crash):
        race(out, backend=lambda r: Scrambled(r, crash_after=k), deterministic=False)
    assert len(results(read_ledger(out / "ledger.jsonl").rows)) == k
    res = race(out, backend=lambda r: Scrambled(r), resume=True, deterministic=False)
    rows = read_ledger(out / "ledger.jsonl").rows
    assert key_rows(rows) == key_rows(ref_rows)
    assert res.replayed == k and res.executed == len(results(rows)) - k
    assert board(out / "race.db") == board(ref_out / "race.db") and res.ranking == ref.ranking


@pytest.mark.parametrize("executor", ["scrambled", "local", "population"])
def test_kill_between_any_two_ledger_rows_then_resume_equals_uninterrupted(tmp_path, monkeypatch, executor):
    """Cut points of a smoke race with two workers: a kill after row n (every n out of order, every third in order)."""
    mode = dict(backend=lambda r: Scrambled(r, workers=2)) if executor == "scrambled" else dict(executor=executor)
    ref = race(tmp_path / "ref", "smoke", workers=2, deterministic=executor != "scrambled", **mode)
    ref_rows = read_ledger(tmp_path / "ref" / "ledger.jsonl").rows
    real_append = Ledger.append
    for n in range(1, len(ref_rows), 1 if executor == "scrambled" else 3):
        out = tmp_path / f"cut{n}"
        left = [n]

        def dying_append(self, row, left=left):
            if left[0] == 0:
                raise Crash()
            left[0] -= 1
            return real_append(self, row)

        monkeypatch.setattr(Ledger, "append", dying_append)
        with pytest.raises(Crash):
            race(out, "smoke", workers=2, deterministic=executor != "scrambled", **mode)
        monkeypatch.setattr(Ledger, "append", real_append)
        assert len(read_ledger(out / "ledger.jsonl").rows) == n
        race(out, "smoke", workers=2, resume=True, deterministic=executor != "scrambled", **mode)
        assert key_rows(read_ledger(out / "ledger.jsonl").rows) == key_rows(ref_rows), f"cut after row {n}"
        assert board(out / "race.db") == board(tmp_path / "ref" / "race.db")


def test_trainer_crash_mid_population_then_resume(tmp_path):
    ref = race(tmp_path / "ref", executor="population", deterministic=True)
    out = tmp_path / "p"
    with pytest.raises(Crash):
        race(out, executor="population", trainer=Trainer(crash_at=23), deterministic=True)
    done = race(out, executor="population", resume=True, deterministic=True)
    assert key_rows(done.rows) == key_rows(ref.rows) and done.replayed > 0


# ---------------------------------------------------------------- (c) the deadline
def test_deadline_cancels_work_in_flight_and_resume_redoes_it_from_its_checkpoint(tmp_path):
    ref = race(tmp_path / "ref", "smoke", workers=1)
    clock = [0.0]
    tr = Trainer(clock=clock, block_promoted=True)
    out = tmp_path / "b"
    t0 = time.monotonic()
    part = race(out, "smoke", workers=1, trainer=tr, deadline_s=100.0, clock=lambda: clock[0])
    assert time.monotonic() - t0 < 10
    assert part.summary.stopped_by == "deadline"
    blocked = [c for c in tr.calls if c[2] == "started"]
    assert len(blocked) == 1 and blocked[0][0] is not None   # cancelled mid-training, from a rung checkpoint
    ckpt, to_step = blocked[0][:2]
    assert (out / "ckpt" / f"{ckpt}.msgpack").is_file()
    rows = read_ledger(out / "ledger.jsonl").rows
    assert not any(r["status"] in RESULTS and r["extra"]["trial_id"] == ckpt.split("/")[0] and r["step"] == to_step
                   for r in rows), "a cancelled action leaves no result row"
    again = Trainer()
    done = race(out, "smoke", workers=1, trainer=again, resume=True)
    assert again.calls[0] == (ckpt, to_step, "done")          # redone first, from the same checkpoint
    assert done.summary.stopped_by == "complete"
    assert key_rows(read_ledger(out / "ledger.jsonl").rows) == key_rows(ref.rows)


# ---------------------------------------------------------------- the ledger's ordering rule
def _row(eid, status="trained", arrival=None):
    extra = {"arrival": arrival} if arrival is not None else {}
    return LedgerRow(run_id="run", config_id="c", config={}, family="attn", seed=1, step=4,
                     bpb=None if status in ("diverged", "pruned") else 3.0, status=status, sha="0" * 40,
                     dirty=False, event_id=eid, extra=extra,
                     **({"decided_by": "asha", "score": 1.0} if status == "pruned" else {}))


def test_falsify_only_asynchronous_results_may_arrive_below_the_last_event_id(tmp_path):
    path = tmp_path / "l.jsonl"
    led = Ledger(path)
    led.append(_row(5, "pruned"))
    led.append(_row(2, arrival=0))          # a result reaching the race after a later decision: fine
    led.append(_row(6, "pruned"))
    with pytest.raises(LedgerError, match="'event_id' 3 is below"):
        led.append(_row(3, "pruned"))      # a decision out of order: refused
    with pytest.raises(LedgerError, match="'event_id' 4 is below"):
        led.append(_row(4))                # a result that does not say when it arrived: refused
    with pytest.raises(LedgerError, match="repeats"):
        led.append(_row(2, arrival=1))     # and a result is never written twice
    assert [r["event_id"] for r in read_ledger(path).rows] == [5, 2, 6]
    Ledger(path).append(_row(1, arrival=1))  # a reopened writer applies the same rule


# ---------------------------------------------------------------- the CLI
def test_cli_executor_flags(tmp_path, monkeypatch, capsys):
    from experiments.race import main
    monkeypatch.setitem(sys.modules, "ray", None)   # `import ray` fails as on a machine without the extra
    out = tmp_path / "o"
    assert main(["--preset", "smoke", "--executor", "ray", "--workers", "2", "--out", str(out)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "pip install -e '.[ray]'" in err[0] and not out.exists()
    for argv, msg in ((["--workers", "2"], "--executor local|population|ray"),
                      (["--ray-address", "auto"], "--ray-address 'auto' needs --executor ray"),
                      (["--executor", "local", "--workers", "0"], "--workers 0: must be >= 1"),
                      (["--replay", "t.jsonl", "--executor", "ray"], "--executor is not available with --replay")):
        assert main(["--preset", "smoke", "--out", str(out), *argv]) == 2
        assert msg in capsys.readouterr().err
