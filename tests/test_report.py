"""A race's report: summary.json beside the ledger, report.png and report.html, redrawn by `experiments.report`."""
from __future__ import annotations

import base64
import json
import math
import struct

import pytest

from experiments import race as race_cli
from experiments import report as report_cli
from igla_jax.evidence.ledger import read_ledger
from igla_jax.evidence.ledger_row import CodeVersion
from igla_jax.execution.race_runner import run_replay
from igla_jax.execution.run_report import ReportError, read_curves, render
from igla_jax.training import programs
from tests.test_replay import tenth_like_table

V = CodeVersion("0" * 40, False)


def png_size(path):
    head = path.read_bytes()[:24]
    assert head[:8] == b"\x89PNG\r\n\x1a\n", f"{path} is not a PNG"
    return struct.unpack(">II", head[16:24])


@pytest.fixture(scope="module")
def smoke(tmp_path_factory):
    """A smoke race through the CLI (its accelerators and their verdicts), and the outcome read back."""
    out = tmp_path_factory.mktemp("report") / "smoke"
    programs.clear()   # programs compiled by earlier tests in this process would make compile_s 0 here
    assert race_cli.main(["--seed", "42", "--preset", "smoke", "--out", str(out)]) == 0
    run_id = json.loads((out / "race.json").read_text())["run_id"]
    return [r for r in read_ledger(out / "ledger.jsonl").rows if r["run_id"] == run_id], out


def test_a_smoke_race_writes_its_summary_and_report(smoke):
    rows, out = smoke
    s = json.loads((out / "summary.json").read_text())
    assert s["run_id"] == rows[0]["run_id"] and s["phase"] == "finished" and s["stopped_by"] == "complete"
    champ = [r for r in rows if r["extra"].get("trial_id") == s["champion"] and r["status"] == "trained"
             and r["extra"]["action"] == "train"]
    assert champ[-1]["step"] == s["champion_step"] and champ[-1]["bpb"] == s["champion_bpb"]
    confirms = [r for r in s["seed_runs"] if r["kind"] == "confirm"]
    assert [r["seed"] for r in confirms] == [42, 43, 44] and all(math.isfinite(r["test_bpb"]) for r in confirms)
    assert {"bohb", "surrogate", "ucb1", "zero_cost", "mup_transfer", "phi_grid", "phi_grid (final)"} <= set(s["verdicts"])
    assert all(v["reason"] for v in s["verdicts"].values())
    assert s["victory"] is not None and s["victory"]["accepted"] is False   # a smoke race never wins (step < 4000)
    w, h = png_size(out / "report.png")
    assert w >= 1000 and h >= 700
    page = (out / "report.html").read_text()
    assert base64.b64encode((out / "report.png").read_bytes()).decode() in page
    assert s["champion"] in page and s["champion_config"]["family"] in page and "bohb: off" in page
    # where the time went (issue 23): every executed action measured it, and the parts add up to the race
    t = s["time"]
    timed = [r for r in rows if "timing" in r["extra"]]
    assert t["actions"] == len(timed) == len([r for r in rows if r["status"] in ("trained", "confirmed",
                                                                                    "reproduced", "diverged")]) > 0
    assert t["compile_s"] == pytest.approx(sum(r["extra"]["timing"]["compile_s"] for r in timed), abs=1e-3)
    assert t["compile_s"] > 0 and t["train_s"] > 0 and t["eval_s"] > 0 and t["init_s"] > 0 and t["other_s"] >= 0
    assert t["init_s"] == pytest.approx(sum(r["extra"]["timing"]["init_s"] for r in timed), abs=1e-3)
    parts = t["compile_s"] + t["train_s"] + t["eval_s"] + t["init_s"] + t["other_s"]
    assert parts == pytest.approx(s["elapsed_s"], rel=0.02)


def test_the_report_draws_what_the_ledger_holds(smoke):
    rows, out = smoke
    s = json.loads((out / "summary.json").read_text())
    cv = read_curves(rows, s["champion"])
    trained = [r for r in rows if r["status"] in ("trained", "diverged") and r["extra"]["action"] == "train"]
    assert len(cv.trials) == s["counters"]["started"] == len({r["extra"]["trial_id"] for r in trained})
    assert len(cv.pruned) == sum(r["status"] == "pruned" for r in rows) == s["counters"]["pruned"]
    assert len(cv.promoted) == sum(r["status"] == "promoted" for r in rows) > 0
    assert sorted(r["seed"] for r in cv.confirms if r["status"] == "confirmed") == [42, 43, 44]
    assert cv.champion_trial is not None and cv.best[-1][1] == min(b for pts in cv.trials.values() for _, b in pts)
    assert [t for t, _ in cv.best] == sorted(t for t, _ in cv.best) and cv.end_s >= cv.best[-1][0]


def test_the_cli_redraws_a_report_and_refuses_a_folder_without_a_ledger(smoke, tmp_path, capsys):
    _, out = smoke
    (out / "report.png").unlink()
    assert report_cli.main([str(out)]) == 0
    assert (out / "report.png").exists() and "champion" in capsys.readouterr().out
    assert report_cli.main([str(tmp_path)]) == 2
    assert "no ledger.jsonl" in capsys.readouterr().err
    with pytest.raises(ReportError, match="no ledger.jsonl"):
        render(tmp_path)


def test_a_replay_with_out_has_a_report_without_confirmation(tmp_path):
    o = run_replay(seed=1, preset="tenth", table=tenth_like_table(10), out=tmp_path / "rep", version=V)
    s = json.loads((tmp_path / "rep" / "summary.json").read_text())
    assert s["seed_runs"] == [] and s["victory"] is None and s["champion"] == o.summary.champion
    assert s["time"] is None   # a replay measures no live time
    assert png_size(tmp_path / "rep" / "report.png")[0] >= 1000


def test_a_stopped_race_reports_the_ledger_so_far(smoke, tmp_path):
    _, out = smoke
    part = tmp_path / "part"
    part.mkdir()
    rows = (out / "ledger.jsonl").read_text().split("\n")
    (part / "ledger.jsonl").write_text("\n".join(rows[:4]) + "\n" + rows[4][:10])   # a torn last line
    (part / "race.json").write_text((out / "race.json").read_text())
    png, page = render(part)
    assert png.exists() and "has not finished" in page.read_text()


def test_a_summary_without_a_champion_and_with_non_finite_times_is_valid_json(tmp_path):
    from igla_jax.execution.run_report import headline, summary_record, write_summary
    from igla_jax.search.race_types import Counters, RaceSummary
    s = RaceSummary("finished", "budget", None, None, None, None, (), None, Counters(cost_s=math.inf), (), (), (),
                    None, math.nan, 100.0, math.inf)
    rec = json.loads(write_summary(tmp_path, summary_record(s, run_id="r", preset="quick")).read_text())
    assert rec["counters"]["cost_s"] is None and rec["elapsed_s"] is None and rec["reserve_s"] is None
    assert headline(rec)[1:] == ["race time 0 s of a 100 s budget", "no champion"]
