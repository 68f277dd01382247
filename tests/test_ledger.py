"""Append-only JSONL ledger: validation, durability, truncated-tail handling. Never the canonical file."""
from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import pytest

from igla_jax.evidence import ledger as L
from igla_jax.evidence.ledger import CANONICAL_LEDGER, Ledger, read_ledger
from igla_jax.evidence.ledger_row import CodeVersion, LedgerError, LedgerRow, code_version


def _row(**over) -> dict:
    d = LedgerRow(run_id="run-a", config_id="cfg1", config={"width": 16, "lr": 0.01}, family="attn", seed=42,
                  step=1000, bpb=2.5, status="trained", sha="0123456789abcdef0123456789abcdef01234567",
                  dirty=False, event_id=0).to_dict()
    d.update(over)
    return d


def test_round_trip(tmp_path):
    path = tmp_path / "sub" / "ledger.jsonl"  # parent directories are created
    led = Ledger(path)
    rows = [_row(event_id=0),
            _row(event_id=1, status="pruned", bpb=None, step=0, decided_by="zero_cost", score={"synflow": 3.5}),
            _row(event_id=2, status="promoted", decided_by="asha", score=2.5, preset="smoke", wall_s=1.5, note="n"),
            _row(event_id=3, status="diverged", bpb=float("nan"), extra={"loss": "nan"})]
    written = [led.append(r) for r in rows]
    got = read_ledger(path)
    assert got.truncated_tail is None and got.path == path
    assert got.rows == written
    assert got.rows[3]["bpb"] is None and got.rows[3]["status"] == "diverged"
    assert got.rows[1]["score"] == {"synflow": 3.5}
    assert path.read_bytes().count(b"\n") == 4 and path.read_bytes().endswith(b"\n")


def test_ledger_row_dataclass_and_stamp():
    r = LedgerRow.stamped(CodeVersion("abcdef0", True), run_id="r", config_id="c", config={}, family="jepa",
                          seed=1, step=3, bpb=3.0, status="confirmed")
    d = L.normalize_row(r)
    assert d["sha"] == "abcdef0" and d["dirty"] is True and "decided_by" not in d
    assert d["ts"].endswith("+00:00")


def test_fsync_per_row(tmp_path, monkeypatch):
    led = Ledger(tmp_path / "l.jsonl")
    calls = []
    real = os.fsync
    monkeypatch.setattr(L.os, "fsync", lambda fd: (calls.append(fd), real(fd))[1])
    for i in range(5):
        led.append(_row(event_id=i))
    assert len(calls) == 5


@pytest.mark.parametrize("field,value", [
    ("status", "won"), ("seed", "42"), ("step", -1), ("bpb", "2.0"), ("sha", "XYZ"), ("dirty", "no"),
    ("ts", "2025-01-01T00:00:00+02:00"), ("ts", "yesterday"), ("config", []), ("run_id", ""),
    ("event_id", -1), ("wall_s", -1.0), ("score", float("inf")), ("bogus", 1),
])
def test_falsify_invalid_field_rejected(tmp_path, field, value):
    led = Ledger(tmp_path / "l.jsonl")
    led.append(_row())  # the valid row is accepted
    with pytest.raises(LedgerError, match=f"field '{field}'"):
        led.append(_row(**{field: value}))
    assert len(read_ledger(led.path).rows) == 1  # nothing half-written


def test_falsify_pruned_needs_decided_by_and_score(tmp_path):
    led = Ledger(tmp_path / "l.jsonl")
    led.append(_row(status="pruned", bpb=None, decided_by="surrogate", score=0.7))
    with pytest.raises(LedgerError, match="field 'score'"):
        led.append(_row(status="pruned", bpb=None, decided_by="surrogate"))
    with pytest.raises(LedgerError, match="field 'decided_by'"):
        led.append(_row(status="pruned", bpb=None, score=0.7))


def test_falsify_nan_bpb_only_when_diverged(tmp_path):
    led = Ledger(tmp_path / "l.jsonl")
    assert led.append(_row(status="diverged", bpb=float("inf")))["bpb"] is None
    with pytest.raises(LedgerError, match="field 'bpb'"):
        led.append(_row(status="trained", bpb=float("nan")))
    with pytest.raises(LedgerError, match="field 'bpb'"):
        led.append(_row(status="confirmed", bpb=None))


def test_falsify_event_id_must_not_decrease(tmp_path):
    path = tmp_path / "l.jsonl"
    led = Ledger(path)
    led.append(_row(event_id=5))
    led.append(_row(event_id=5, status="promoted"))  # several rows of one event are fine
    led.append(_row(event_id=0, run_id="run-b"))  # another run has its own sequence
    with pytest.raises(LedgerError, match="event_id"):
        led.append(_row(event_id=4))
    assert Ledger(path).last_event_id("run-a") == 5  # a reopened writer remembers
    with pytest.raises(LedgerError, match="event_id"):
        Ledger(path).append(_row(event_id=3))


def test_bad_line_error_names_file_and_line(tmp_path):
    path = tmp_path / "l.jsonl"
    led = Ledger(path)
    for i in range(3):
        led.append(_row(event_id=i))
    lines = path.read_text().splitlines()
    lines[1] = lines[1][:-5] + "oops}"
    path.write_text("\n".join(lines) + "\n")
    with pytest.raises(LedgerError) as e:
        read_ledger(path)
    assert str(path) in str(e.value) and "line 2" in str(e.value)
    bad = json.loads(lines[0])
    bad.pop("score", None)
    bad.update(status="pruned", bpb=None)
    path.write_text(lines[0] + "\n" + json.dumps(bad) + "\n")
    with pytest.raises(LedgerError, match=r"line 2: field '(decided_by|score)'"):
        read_ledger(path)
    with pytest.raises(LedgerError, match=r"line 2"):  # the writer refuses to extend a corrupt ledger
        Ledger(path)


def test_blank_line_is_an_error(tmp_path):
    path = tmp_path / "l.jsonl"
    path.write_text(json.dumps(_row()) + "\n\n" + json.dumps(_row()) + "\n")
    with pytest.raises(LedgerError, match="line 2"):
        read_ledger(path)


def _crash(path: Path) -> str:
    """Simulates a crash mid-write: half of a row, no newline."""
    half = json.dumps(_row(event_id=9))[:40]
    with open(path, "ab") as f:
        f.write(half.encode())
    return half


def test_truncated_tail_detected_and_skipped(tmp_path):
    path = tmp_path / "l.jsonl"
    led = Ledger(path)
    led.append(_row(event_id=0))
    led.append(_row(event_id=1))
    half = _crash(path)
    with pytest.warns(UserWarning, match="truncated"):
        got = read_ledger(path)
    assert got.truncated_tail == half
    assert [r["event_id"] for r in got.rows] == [0, 1]


def test_append_after_truncated_tail_stays_readable(tmp_path):
    path = tmp_path / "l.jsonl"
    Ledger(path).append(_row(event_id=0))
    half = _crash(path)
    with pytest.warns(UserWarning):
        led = Ledger(path)
    assert led.truncated_tail == half
    led.append(_row(event_id=1))
    led.append(_row(event_id=2))
    got = read_ledger(path)
    assert [r["event_id"] for r in got.rows] == [0, 1, 2]  # not glued onto the damaged line
    assert got.isolated_lines == (2,) and got.truncated_tail is None
    raw = path.read_text().splitlines()
    assert raw[1] == half and json.loads(raw[2])[L.MARKER_KEY] == L.ISOLATED


def test_complete_last_line_without_newline_is_kept(tmp_path):
    path = tmp_path / "l.jsonl"
    path.write_text(json.dumps(_row(event_id=0)) + "\n" + json.dumps(_row(event_id=1)))
    assert [r["event_id"] for r in read_ledger(path).rows] == [0, 1]
    Ledger(path).append(_row(event_id=2))
    assert [r["event_id"] for r in read_ledger(path).rows] == [0, 1, 2]


def test_falsify_marker_without_damaged_line(tmp_path):
    path = tmp_path / "l.jsonl"
    marker = {L.MARKER_KEY: L.ISOLATED, "line": 1, "ts": L.utc_now()}
    path.write_text(json.dumps(_row()) + "\n" + json.dumps(marker) + "\n")  # line 1 is valid: marker is bogus
    with pytest.raises(LedgerError, match="line 2"):
        read_ledger(path)
    path.write_text("{garbage\n" + json.dumps(marker) + "\n")  # a real isolated line is skipped
    assert read_ledger(path).isolated_lines == (1,)


def test_canonical_guard(tmp_path, monkeypatch):
    with pytest.raises(LedgerError, match="canonical"):
        Ledger(CANONICAL_LEDGER)
    fake = tmp_path / "assertions" / "seed_results.jsonl"  # exercise canonical_ok on a stand-in path
    monkeypatch.setattr(L, "CANONICAL_LEDGER", fake)
    with pytest.raises(LedgerError, match="canonical"):
        Ledger(fake)
    Ledger(fake, canonical_ok=True).append(_row())
    assert len(read_ledger(fake).rows) == 1


def test_missing_file(tmp_path):
    with pytest.raises(LedgerError, match="not found"):
        read_ledger(tmp_path / "none.jsonl")
    assert read_ledger(tmp_path / "none.jsonl", missing_ok=True).rows == []


def test_code_version(tmp_path):
    assert code_version(tmp_path) == CodeVersion("unknown", True)  # not a git repository
    env = {**os.environ, "GIT_AUTHOR_NAME": "t", "GIT_AUTHOR_EMAIL": "t@t", "GIT_COMMITTER_NAME": "t",
           "GIT_COMMITTER_EMAIL": "t@t"}
    git = lambda *a: subprocess.run(["git", "-C", str(tmp_path), *a], check=True, capture_output=True, env=env)
    git("init", "-q")
    (tmp_path / "f.txt").write_text("x")
    git("add", "f.txt")
    git("commit", "-q", "-m", "c")
    sha = subprocess.run(["git", "-C", str(tmp_path), "rev-parse", "HEAD"], capture_output=True, text=True).stdout.strip()
    assert code_version(tmp_path) == CodeVersion(sha, False)
    (tmp_path / "f.txt").write_text("y")
    assert code_version(tmp_path) == CodeVersion(sha, True)


@pytest.mark.parametrize("bpb", [0.0, -0.5, -1e-12])
def test_falsify_non_positive_bpb_rejected(tmp_path, bpb):
    """BPB is a cross-entropy in bits: a row with bpb <= 0 is a bug (sign, units), never a result."""
    path = tmp_path / "l.jsonl"
    led = Ledger(path)
    led.append(_row(event_id=0, bpb=1e-9))  # tiny but positive is accepted
    with pytest.raises(LedgerError, match=r"new row: field 'bpb' must be a finite number > 0"):
        led.append(_row(event_id=1, bpb=bpb))
    with pytest.raises(LedgerError, match="field 'bpb'"):  # on a pruned row too (it repeats a rung bpb)
        led.append(_row(event_id=1, status="pruned", bpb=bpb, decided_by="asha", score=1.0))
    assert len(read_ledger(path).rows) == 1
    with open(path, "a") as f:  # a hand-edited file: the reader names the file and the line
        f.write(json.dumps(_row(event_id=1, bpb=bpb)) + "\n")
    with pytest.raises(LedgerError) as e:
        read_ledger(path)
    assert str(path) in str(e.value) and "line 2: field 'bpb'" in str(e.value)


def _no_event(**over) -> dict:
    d = _row(**over)
    del d["event_id"]
    return d


def test_falsify_repeated_event_row_rejected_by_reader(tmp_path):
    """A row repeated for the same (run_id, event_id, kind) is an error naming both lines."""
    path = tmp_path / "l.jsonl"
    rows = [_row(event_id=0), _row(event_id=1, status="promoted", decided_by="asha", score=2.5),
            _row(event_id=1),                                  # same event, other kind: fine
            _row(event_id=1, run_id="run-b"),                  # same event id, other run: fine
            _row(event_id=1, status="pruned", bpb=None, decided_by="asha", score=3.0),  # and a third kind
            _no_event(), _no_event()]                          # rows without an event id: not subject
    write = lambda extra: path.write_text("".join(json.dumps(r) + "\n" for r in rows + extra))  # noqa: E731
    write([])
    got = read_ledger(path)
    assert len(got.rows) == 7 and got.line_numbers == (1, 2, 3, 4, 5, 6, 7)
    for again, earlier in ((rows[2], 3),                                          # verbatim repeat
                           (_row(event_id=1, status="diverged", bpb=None), 3),    # another result status
                           (rows[1], 2), (rows[4], 5)):                            # promoted, pruned
        write([again])
        with pytest.raises(LedgerError) as e:
            read_ledger(path)
        msg = str(e.value)
        assert str(path) in msg and "line 8:" in msg and f"of line {earlier}" in msg, msg
        with pytest.raises(LedgerError, match=f"of line {earlier}"):  # the writer refuses to open it
            Ledger(path)


def test_falsify_writer_refuses_repeated_event_row(tmp_path):
    path = tmp_path / "l.jsonl"
    led = Ledger(path)
    first = led.append(_row(event_id=3))
    led.append(_row(event_id=3, status="promoted", decided_by="asha", score=2.5))
    with pytest.raises(LedgerError, match=r"new row \(line 3\): repeats run 'run-a' event_id 3 kind 'result' "
                                          r"of line 1"):
        led.append(first)
    with pytest.raises(LedgerError, match="of line 1"):
        led.append(_row(event_id=3, status="confirmed", bpb=2.0))
    led.append(_row(event_id=4))
    with pytest.raises(LedgerError, match=r"new row \(line 4\).*of line 3"):  # a reopened writer remembers
        Ledger(path).append(_row(event_id=4, status="diverged", bpb=None))
    assert len(read_ledger(path).rows) == 3


def test_repeated_row_line_numbers_count_isolated_lines(tmp_path):
    """Line numbers in the duplicate message are file lines, damaged line and marker included."""
    path = tmp_path / "l.jsonl"
    Ledger(path).append(_row(event_id=0))
    _crash(path)
    with pytest.warns(UserWarning):
        led = Ledger(path)
    led.append(_row(event_id=1))  # line 4: after the damaged line 2 and its marker on line 3
    assert read_ledger(path).line_numbers == (1, 4)
    with pytest.raises(LedgerError, match=r"new row \(line 5\).*of line 4"):
        led.append(_row(event_id=1))


def test_falsify_the_fast_strict_json_check_never_vouches_for_what_json_rejects():
    """normalize_row encodes a row only when the fast check cannot vouch for it: the check must never say yes
    where json.dumps(allow_nan=False) fails, and a row with a non-finite or non-JSON value is still refused."""
    import math

    import numpy as np

    from igla_jax.evidence.ledger_row import _plainly_strict_json, normalize_row
    loop: list = []
    loop.append(loop)
    cases = [1, 2.5, "x", None, True, [1.0, 2.0], [1.0, None], (1, 2), {"a": {"b": [0.5]}}, [[[[]]]],
             math.nan, [1.0, math.inf], {"a": {"b": [math.nan]}}, {1: 2}, {"a": np.float64(1.0)},
             {"a": np.int64(3)}, [1e308, 1e308], {"a": object()}, loop]
    for v in cases:
        try:
            json.dumps(v, allow_nan=False)
            ok = True
        except (TypeError, ValueError):
            ok = False
        assert ok or not _plainly_strict_json(v), v
    assert _plainly_strict_json({"extra": {"train_curve": [3.2, 3.1], "replayed": {"arrival": 3}}})
    row = dict(ts="2026-01-01T00:00:00+00:00", sha="0" * 40, dirty=False, run_id="r", config_id="c", config={},
               family="attn", seed=1, step=1, bpb=2.0, status="trained")
    assert normalize_row(row) == row
    for bad in ({"curve": [1.0, math.inf]}, {"x": np.int64(3)}, {"x": object()}):
        with pytest.raises(LedgerError, match="strict JSON"):
            normalize_row({**row, "extra": bad})
    assert normalize_row({**row, "extra": {"x": np.float64(1.5)}})["extra"] == {"x": 1.5}   # json's own verdict
