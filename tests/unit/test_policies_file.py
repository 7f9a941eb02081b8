"""The policies file and today's adapters, in process: structure, configurations, wrapping."""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest

from benchmark.policies import check_policies_file, load_policy
from benchmark.policies.policies_file import (
    PROBE_SLOT,
    PoliciesFile,
    PoliciesFileError,
    WorkerSlot,
    import_adapter,
)
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


def _slot_file(tmp_path: Path, config: str, entry: str = "") -> PoliciesFile:
    (tmp_path / "c.yml").write_text(textwrap.dedent(config))
    (tmp_path / "p.yml").write_text("policies:\n  A:\n    adapter: feedback\n    config: c.yml\n"
                                    + textwrap.indent(textwrap.dedent(entry), "    "))
    return PoliciesFile.load(tmp_path / "p.yml")


def test_placeholders_give_each_gpu_slot_its_own_values(tmp_path: Path):
    entry = _slot_file(tmp_path, """\
        host: localhost
        port: "{8000 + gpu * 2 + slot}"
        url: "ws://box:{${PORT_BASE} + slot}/v1"
        nested: {log: "/logs/gpu{gpu}.{slot}-of-{slots_per_gpu}", ports: ["{-slot + 9}"]}
        template: "{instruction} and {0}: not ours"
        """).entries["A"]
    env = {"PORT_BASE": "7000"}
    seen = {(gpu, slot): entry.config(env, WorkerSlot.of(gpu, slot, 2)) for gpu in ("0", "3") for slot in (0, 1)}
    assert [config["port"] for config in seen.values()] == [8000, 8001, 8006, 8007]  # ints, not strings
    assert seen["3", 1]["url"] == "ws://box:7001/v1"
    assert seen["3", 1]["nested"] == {"log": "/logs/gpu3.1-of-2", "ports": [8]}
    assert seen["3", 1]["template"] == "{instruction} and {0}: not ours"  # an adapter's own template
    assert entry.server_address(env, WorkerSlot.of("3", 1, 2)) == "localhost:8007"  # host and port


def test_the_server_key_and_its_checks(tmp_path: Path):
    policies = _slot_file(tmp_path, "chunk: 4\n", 'server: "ws://gpu-box:{9000 + slot}"\nserver_shared: true\n')
    entry = policies.entries["A"]
    assert entry.server_shared and entry.server_address({}, WorkerSlot.of("0", 1, 2)) == "ws://gpu-box:9001"
    (tmp_path / "p.yml").write_text("policies:\n  A:\n    adapter: feedback\n    server_shared: 'yes'\n")
    with pytest.raises(PoliciesFileError, match="key 'server_shared': expected true or false, found 'yes'"):
        PoliciesFile.load(tmp_path / "p.yml")


@pytest.mark.parametrize(("config", "slot", "words"), [
    ('port: "{8000 + solt}"\n', WorkerSlot.of("0", 0, 1),
     r"key 'port' of policy 'A': \{8000 \+ solt\} names 'solt'; did you mean 'slot'\?"),
    ('port: "{8000 + slot}"\n', None,
     r"key 'port' of policy 'A' uses \{8000 \+ slot\}, which needs the worker's GPU slot: start the worker "
     r"with a GPU lease"),
    ('port: "{8000 + gpu}"\n', WorkerSlot.of("GPU-5e3f", 0, 1),
     r"this worker's GPU is 'GPU-5e3f', not an index, so only \{gpu\} alone can stand for it"),
])
def test_placeholders_that_cannot_be_filled_are_named(tmp_path: Path, config: str, slot, words: str):
    entry = _slot_file(tmp_path, config).entries["A"]
    with pytest.raises(PoliciesFileError, match=words):
        entry.config({}, slot)


def test_a_worker_checks_placeholders_at_start_with_a_probe_slot(tmp_path: Path):
    policies = _slot_file(tmp_path, 'port: "{8000 + slto}"\n')
    with pytest.raises(PoliciesFileError, match="did you mean 'slot'"):
        check_policies_file(policies, PROBE_SLOT)
    check_policies_file(_slot_file(tmp_path, 'port: "{8000 + slot}"\n'), PROBE_SLOT)
