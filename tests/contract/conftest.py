"""A fake RoboTwin checkout (tests/contract/fake_robotwin.py) for the backend's contract tests."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

from tests.contract.fake_robotwin import build_fake_robotwin


@pytest.fixture
def robotwin(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """The checkout, named by RTBENCH_ROBOTWIN_ROOT; its fake SAPIEN importable in this process."""
    root = tmp_path / "RoboTwin"
    site = build_fake_robotwin(root)
    monkeypatch.setenv("RTBENCH_ROBOTWIN_ROOT", str(root))
    monkeypatch.syspath_prepend(str(site))
    yield root
    for name in [m for m in sys.modules if m == "envs" or m.startswith(("envs.", "generate_episode_instructions"))]:
        del sys.modules[name]  # the next test's checkout is another folder
