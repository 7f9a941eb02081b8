"""The policies file and today's adapters, in process: structure, configurations, wrapping."""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest

from benchmark.policies import check_policies_file, load_policy
from benchmark.policies.policies_file import PoliciesFile, PoliciesFileError, import_adapter
from benchmark.policies.wrapped import WrappedAdapter, takes_device

ADAPTER = '''
class TodayAdapter:
    action_type = "ee"

    def load(self, config):
        self.config = config

    def reset(self, task_env, instruction):
        task_env.append(("reset", instruction))

    def step(self, task_env, observation):
        task_env.append(("step", observation))

    def close(self):
        self.closed = True


class BadActions(TodayAdapter):
    action_type = "delta_ee"
'''


@pytest.fixture
def folder(tmp_path: Path) -> Path:
    (tmp_path / "lab").mkdir()
    (tmp_path / "lab" / "today.py").write_text(ADAPTER)
    (tmp_path / "configs").mkdir()
    (tmp_path / "configs" / "today.yml").write_text(textwrap.dedent("""\
        checkpoint: ${MODELS}/today.pt
        device: cuda
        paths: ["${MODELS}/a", plain]
        nested: {inner: "${MODELS}/b"}
        steps: 4
        """))
    (tmp_path / "policies.yml").write_text(textwrap.dedent("""\
        policies:
          Today:
            adapter: today:TodayAdapter
            config: configs/today.yml
            pythonpath: [lab]
          Bad:
            adapter: today:BadActions
            pythonpath: [lab]
          Builtin:
            adapter: feedback
        """))
    return tmp_path


def test_an_entry_loads_its_adapter_with_its_config_and_the_device(folder: Path, monkeypatch):
    monkeypatch.setenv("MODELS", "/models")
    policies = PoliciesFile.load(folder / "policies.yml")
    check_policies_file(policies)  # imports tried in a separate interpreter
    policy = load_policy("Today", {}, "cuda:3", policies)
    assert isinstance(policy, WrappedAdapter) and policy.name == "Today" and policy.action_type == "ee"
    assert policy.inner.config == {"checkpoint": "/models/today.pt", "device": "cuda:3",
                                   "paths": ["/models/a", "plain"], "nested": {"inner": "/models/b"}, "steps": 4}
    seen: list = []
    policy.reset(seen, "press the bell")
    policy.step(seen, {"joint_action": {}})
    assert seen == [("reset", "press the bell"), ("step", {"joint_action": {}})]
    policy.close()
    assert policy.inner.closed
    with pytest.raises(ValueError, match="action_type 'delta_ee' is not one of"):
        load_policy("Bad", {}, "cpu", policies)
    assert load_policy("Builtin", {}, "cpu", policies).name == "feedback"  # rtbench's own: not wrapped


def test_the_interfaces_are_told_apart():
    from benchmark.policies.feedback import FeedbackPolicy

    class OneArgument:
        def load(self, config):
            pass

    assert takes_device(FeedbackPolicy) and not takes_device(OneArgument)


@pytest.mark.parametrize(("text", "words"), [
    ("- a list\n", "expected a top-level 'policies:' mapping"),
    ("policies:\n  X: just-a-string\n", "policy 'X': expected a mapping with 'adapter' and 'config'"),
    ("policies:\n  X:\n    adapter: a:B\n    colour: red\n", "policy 'X', key 'colour': unknown key"),
    ("policies:\n  X:\n    config: c.yml\n", "policy 'X', key 'adapter': missing"),
    ("policies:\n  X:\n    adapter: a:B\n    pythonpath: [1, 2]\n", "key 'pythonpath': expected a list of folders"),
    ("policies: {X: [\n", "not valid YAML at line"),
])
def test_a_malformed_file_is_named(tmp_path: Path, text: str, words: str):
    path = tmp_path / "policies.yml"
    path.write_text(text)
    with pytest.raises(PoliciesFileError, match=words):
        PoliciesFile.load(path)
    with pytest.raises(PoliciesFileError, match="cannot read it"):
        PoliciesFile.load(tmp_path / "missing.yml")


def test_configurations_that_are_not_mappings_and_imports_that_fail(folder: Path):
    (folder / "configs" / "today.yml").write_text("- a\n- b\n")
    policies = PoliciesFile.load(folder / "policies.yml")
    with pytest.raises(PoliciesFileError, match="must hold a mapping of keys, found list"):
        policies.entries["Today"].config({})
    (folder / "configs" / "today.yml").write_text("")
    assert policies.entries["Today"].config({}) == {}
    (folder / "policies.yml").write_text("policies:\n  Gone:\n    adapter: today:Missing\n    pythonpath: [lab]\n")
    gone = PoliciesFile.load(folder / "policies.yml").entries["Gone"]
    with pytest.raises(PoliciesFileError, match="today:Missing cannot be imported: .*Missing"):
        gone.check_import()
    with pytest.raises(PoliciesFileError, match="today:Missing cannot be imported"):
        import_adapter(gone)
