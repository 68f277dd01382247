"""The witness's values (a Case fed to a judge, a Mode, its Outcome) and the Context every mode runs in."""
from __future__ import annotations

import dataclasses
import os
import subprocess
from pathlib import Path
from typing import Callable

from igla_jax.evidence.prereg import Prereg, load_prereg
from igla_jax.search.search_space import DEFAULT_SPACE, Config

CAUGHT, NOT_CAUGHT, TWIN_REJECTED, NOT_BUILT = "caught", "NOT CAUGHT", "TWIN REJECTED", "not built"
TEST_FILE = "tests/test_witness.py"


@dataclasses.dataclass(frozen=True)
class Case:
    """One input fed to a judge and what the judge said."""
    input: str
    rejected: bool       # accelerator disabled / row rejected / hypothesis condition failed
    by_rule: bool        # the rejection names the mode's rule (or its test) under the pre-registered bound
    observed: str


@dataclasses.dataclass(frozen=True)
class Context:
    """What every mode needs: the pre-registration (inputs, judges) and a real two-commit git repository."""
    prereg: Prereg
    judge_prereg: Prereg
    repo: Path
    leaky: str           # the first commit: listed in the embargo file
    clean: str           # the second commit
    embargo: Path
    tmp: Path


@dataclasses.dataclass(frozen=True)
class Mode:
    name: str
    arm: str
    rule: str
    expected: str
    run: Callable[[Context], tuple[Case, Case]] | None   # None: the accelerator is not built
    not_built_input: str = ""

    @property
    def test(self) -> str:
        return f"{TEST_FILE}::test_falsify_{self.name}"


@dataclasses.dataclass(frozen=True)
class Outcome:
    mode: str
    arm: str
    test: str
    input: str
    expected: str
    observed: str
    rule: str
    status: str
    twin_input: str = ""
    twin_observed: str = ""

    def to_dict(self) -> dict[str, str]:
        return dataclasses.asdict(self)


# ------------------------------------------------------------------------------------ context
def _git(repo: Path, *args: str) -> str:
    """git in the witness's own repository; fixed names and dates, so its commits' shas are the same every run."""
    env = {**os.environ, "GIT_AUTHOR_NAME": "w", "GIT_AUTHOR_EMAIL": "w@w", "GIT_COMMITTER_NAME": "w",
           "GIT_COMMITTER_EMAIL": "w@w", "GIT_AUTHOR_DATE": "2026-01-01T00:00:00+0000",
           "GIT_COMMITTER_DATE": "2026-01-01T00:00:00+0000", "GIT_CONFIG_NOSYSTEM": "1", "HOME": str(repo)}
    return subprocess.run(["git", "-C", str(repo), *args], check=True, capture_output=True, text=True,
                          env=env).stdout.strip()


def make_context(tmp: Path, prereg: Prereg | None = None, judge_prereg: Prereg | None = None) -> Context:
    """A git repository under tmp with two empty commits (the first embargoed), and the pre-registration."""
    repo = tmp / "repo"
    repo.mkdir(parents=True)
    _git(repo, "init", "-q")
    _git(repo, "commit", "-q", "--allow-empty", "-m", "leaky")
    leaky = _git(repo, "rev-parse", "HEAD")
    _git(repo, "commit", "-q", "--allow-empty", "-m", "clean")
    clean = _git(repo, "rev-parse", "HEAD")
    embargo = tmp / "embargo.txt"
    embargo.write_text(f"{leaky}  # leaked validation bytes\n", encoding="utf-8")
    pr = prereg or load_prereg()
    return Context(pr, judge_prereg or pr, repo, leaky, clean, embargo, tmp)


def _configs(n: int) -> list[Config]:
    """n distinct real configs of the default space, spread over the families."""
    fams = ("attn", "jepa", "hybrid")
    return [DEFAULT_SPACE.config_at(fams[i % 3], 37 * i % DEFAULT_SPACE.size(fams[i % 3])) for i in range(n)]
