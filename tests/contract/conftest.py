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
    for name, module in list(sys.modules.items()):  # the next test's checkout is another folder
        if str(getattr(module, "__file__", None) or "").startswith(str(root)):
            del sys.modules[name]
