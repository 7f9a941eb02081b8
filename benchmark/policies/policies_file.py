"""The policies file: which adapter and which YAML configuration each results-folder name runs.

Users keep one adapter module and one YAML file per policy (``policies/motus_adapter.py``,
``configs/motus.yml``); the policies file (``RTBENCH_POLICIES_FILE``) names them so that
workers run them unchanged::

    policies:
      Motus:                                         # the results folder, results/Motus/...
        adapter: policies.motus_adapter:MotusAdapter  # module:Class, an entry point or a built-in name
        config: configs/motus.yml                     # relative to this file
      lingbot:
        adapter: policies.lingbot_va_adapter:LingbotVAAdapter
        config: configs/lingbot_va.yml
        pythonpath: [/opt/lingbot-va]                 # optional: folders imported from, before this file's own
        slots_per_gpu: 1                              # optional: at most this many worker slots of a GPU run it
        server: "localhost:{8000 + slot}"             # optional: the policy server this worker talks to
        server_shared: false                          # optional: true for a stateless server many may share

``module:Class`` modules are imported from the folders of ``pythonpath``, then the policies
file's folder. In a configuration (and in ``server``), ``${VAR}`` is replaced by the
environment variable (paths differ per machine), then ``{expression}`` by its value for the
worker's GPU slot (one policy server per slot), and ``device`` is replaced by the worker's
device. Every error names the file, the policy and the key.
"""

from __future__ import annotations

import ast
import difflib
import os
import re
import subprocess
import sys
from collections.abc import Collection
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from benchmark.common.errors import BenchmarkError

ENTRY_KEYS = {"adapter": str, "config": str, "pythonpath": list, "slots_per_gpu": int, "server": str,
              "server_shared": bool}
_VARIABLE = re.compile(r"\$\{(\w+)\}")
_PLACEHOLDER = re.compile(r"\{([^{}]*)\}")
SLOT_NAMES = ("gpu", "slot", "slots_per_gpu")


class PoliciesFileError(BenchmarkError):
    """The policies file, or a configuration it names, cannot be used as written."""


def _yaml(path: Path, what: str) -> Any:
    import yaml

    try:
        return yaml.safe_load(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise PoliciesFileError(f"{what} {path}: cannot read it ({exc.strerror})") from None
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        raise PoliciesFileError(f"{what} {path}: not valid YAML{where} ({getattr(exc, 'problem', exc)})") from None


@dataclass(frozen=True)
class WorkerSlot:
    """What ``{gpu}``, ``{slot}`` and ``{slots_per_gpu}`` stand for in one worker."""

    gpu: int | str      # the leased GPU's index (its id, e.g. a UUID, when that is not a number)
    slot: int           # the worker's slot on that GPU, from 0
    slots_per_gpu: int

    @classmethod
    def of(cls, gpu: str | None, slot: int | None, slots_per_gpu: int) -> WorkerSlot | None:
        """The slot of a worker with a GPU lease; None without one (``--device cpu``)."""
        if gpu is None or slot is None:
            return None
        return cls(int(gpu) if gpu.isdigit() else gpu, slot, slots_per_gpu)


# What a worker's start-up check fills placeholders with, before it has leased its slot.
PROBE_SLOT = WorkerSlot(0, 0, 1)


def _arithmetic(text: str) -> ast.expr | None:
    """The expression of ``{text}`` when it is whole numbers and names joined by + - *, else None."""
    try:
        tree = ast.parse(text.strip(), mode="eval").body
    except SyntaxError:
        return None

    def allowed(node: ast.expr) -> bool:
        if isinstance(node, ast.Constant):
            return type(node.value) is int
        if isinstance(node, ast.Name):
            return True
        if isinstance(node, ast.UnaryOp):
            return isinstance(node.op, ast.USub) and allowed(node.operand)
        if isinstance(node, ast.BinOp):
            return isinstance(node.op, (ast.Add, ast.Sub, ast.Mult)) and allowed(node.left) and allowed(node.right)
        return False

    return tree if allowed(tree) else None


def _placeholder(text: str, where: str) -> ast.expr | None:
    """The expression of a placeholder, None for braces that are not one; a name close to
    gpu, slot or slots_per_gpu is a typo, not an adapter's own template."""
    tree = _arithmetic(text)
    if tree is None:
        return None
    names = {node.id for node in ast.walk(tree) if isinstance(node, ast.Name)}
    if not names:
        return None  # "{0}": a format string's field, not ours
    unknown = sorted(names - set(SLOT_NAMES))
    for name in unknown:
        if (close := difflib.get_close_matches(name, SLOT_NAMES, n=1, cutoff=0.7)):
            raise PoliciesFileError(f"{where}: {{{text}}} names {name!r}; did you mean {close[0]!r}? "
                                    f"(placeholders know {', '.join(SLOT_NAMES)})")
    return None if unknown else tree


def _evaluate(tree: ast.expr, shown: str, where: str, slot: WorkerSlot) -> int | str:
    names = {"gpu": slot.gpu, "slot": slot.slot, "slots_per_gpu": slot.slots_per_gpu}

    def value(node: ast.expr) -> int | str:
        if isinstance(node, ast.Constant):
            return node.value
        if isinstance(node, ast.Name):
            return names[node.id]
        operands = [value(part) for part in ((node.operand,) if isinstance(node, ast.UnaryOp)
                                              else (node.left, node.right))]
        if not all(isinstance(operand, int) for operand in operands):
            raise PoliciesFileError(f"{where}: {shown}: this worker's GPU is {slot.gpu!r}, not an index, so "
                                    "only {gpu} alone can stand for it (or list GPUs by index)")
        if isinstance(node, ast.UnaryOp):
            return -operands[0]
        left, right = operands
        return left + right if isinstance(node.op, ast.Add) else left - right if isinstance(node.op, ast.Sub) \
            else left * right

    return value(tree)


@dataclass(frozen=True)
class PolicyEntry:
    """One policy of the file: its adapter and where its configuration is."""

    name: str
    adapter: str                     # "module:Class", or a registered name
    config_path: Path | None
    pythonpath: tuple[Path, ...]
    source: Path                     # the policies file
    slots_per_gpu: int | None = None  # at most this many of a GPU's worker slots run it (a large model: 1)
    server: str | None = None        # "host:port" of its policy server (placeholders allowed)
    server_shared: bool = False      # the server is stateless: many workers may share it

    def where(self, key: str | None = None) -> str:
        return f"{self.source}: policy {self.name!r}" + (f", key {key!r}" if key else "")

    @property
    def import_path(self) -> tuple[str, str] | None:
        """(module, class) for a ``module:Class`` adapter; None for a registered name."""
        module, colon, attribute = self.adapter.partition(":")
        return (module, attribute) if colon else None

    def search_path(self) -> list[str]:
        return [str(path) for path in self.pythonpath] + [str(self.source.parent)]

    def config(self, environ: dict[str, str] | None = None, slot: WorkerSlot | None = None) -> dict[str, Any]:
        """The adapter's configuration: its YAML file with ``${VAR}`` taken from the environment
        and ``{expression}`` from the worker's ``slot``."""
        if self.config_path is None:
            return {}
        data = _yaml(self.config_path, f"{self.where('config')}: configuration")
        if data is None:
            return {}
        if not isinstance(data, dict):
            raise PoliciesFileError(f"{self.where('config')}: {self.config_path} must hold a mapping of keys, "
                                    f"found {type(data).__name__}")
        env = os.environ if environ is None else environ
        return {key: self._expand(value, key, env, slot) for key, value in data.items()}

    def server_address(self, environ: dict[str, str] | None = None,
                       slot: WorkerSlot | None = None) -> str | None:
        """The policy server this worker reaches: ``server``, else the configuration's ``host``
        and ``port`` (PolicyServerClient's, openpi's convention); None for an in-process policy."""
        env = os.environ if environ is None else environ
        if self.server is not None:
            where = f"{self.source}: key 'server' of policy {self.name!r}"
            return str(self._fill(self._variables(self.server, where, env), where, slot))
        config = self.config(env, slot)
        host, port = config.get("host"), config.get("port")
        if isinstance(host, str) and host and isinstance(port, (int, str)) and not isinstance(port, bool):
            return f"{host}:{port}"
        return None

    def _expand(self, value: Any, key: str, env: dict[str, str], slot: WorkerSlot | None) -> Any:
        if isinstance(value, str):
            where = f"{self.config_path}: key {key!r} of policy {self.name!r}"
            return self._fill(self._variables(value, where, env), where, slot)
        if isinstance(value, list):
            return [self._expand(item, key, env, slot) for item in value]
        if isinstance(value, dict):
            return {inner: self._expand(item, f"{key}.{inner}", env, slot) for inner, item in value.items()}
        return value

    @staticmethod
    def _variables(text: str, where: str, env: dict[str, str]) -> str:
        def variable(match: re.Match) -> str:
            if match[1] not in env:
                raise PoliciesFileError(f"{where} uses ${{{match[1]}}}, which is not set in the environment")
            return env[match[1]]

        return _VARIABLE.sub(variable, text)

    @staticmethod
    def _fill(text: str, where: str, slot: WorkerSlot | None) -> Any:
        """``text`` with each ``{expression}`` over gpu, slot and slots_per_gpu replaced by its
        value; a string that is one placeholder becomes its value (``"{8000 + slot}"``: an int).
        Braces holding anything else (a template of the adapter's own) stay as written."""
        found = [(match, tree) for match in _PLACEHOLDER.finditer(text)
                 if (tree := _placeholder(match[1], where)) is not None]
        if not found:
            return text
        if slot is None:
            raise PoliciesFileError(f"{where} uses {found[0][0][0]}, which needs the worker's GPU slot: start "
                                    "the worker with a GPU lease (python -m worker, --lease-gpus, RTBENCH_GPU; "
                                    "on the CPU: CUDA_VISIBLE_DEVICES=0 with --lease-gpus --device cpu), or "
                                    "write the value itself")
        values = {match.span(): _evaluate(tree, match[0], where, slot) for match, tree in found}
        if len(found) == 1 and found[0][0].span() == (0, len(text)):
            return values[(0, len(text))]
        return _PLACEHOLDER.sub(lambda match: str(values.get(match.span(), match[0])), text)

    def check_import(self, timeout_s: float = 300.0) -> None:
        """Import the adapter class in a separate interpreter (this process stays free of the
        policy's imports, CUDA included); its error, if any, is raised naming the policy."""
        if self.import_path is None:
            return
        module, attribute = self.import_path
        code = ("import sys, importlib; sys.path[:0] = sys.argv[3:]; "
                "getattr(importlib.import_module(sys.argv[1]), sys.argv[2])")
        try:
            done = subprocess.run([sys.executable, "-c", code, module, attribute, *self.search_path()],
                                  capture_output=True, text=True, timeout=timeout_s, check=False)
        except subprocess.TimeoutExpired:
            raise PoliciesFileError(f"{self.where('adapter')}: importing {self.adapter} took over "
                                    f"{timeout_s:.0f} s") from None
        if done.returncode != 0:
            lines = [line for line in done.stderr.strip().splitlines() if line.strip()]
            raise PoliciesFileError(f"{self.where('adapter')}: {self.adapter} cannot be imported: "
                                    f"{lines[-1] if lines else 'exit ' + str(done.returncode)}")


def import_adapter(entry: PolicyEntry) -> type:
    """The ``module:Class`` adapter an entry names (imported now: in a worker child, never a producer)."""
    import importlib

    assert entry.import_path is not None, "registered names are looked up in benchmark.policies"
    module, attribute = entry.import_path
    for folder in reversed(entry.search_path()):
        if folder not in sys.path:
            sys.path.insert(0, folder)
    try:
        return getattr(importlib.import_module(module), attribute)
    except (ImportError, AttributeError) as exc:
        raise PoliciesFileError(f"{entry.where('adapter')}: {entry.adapter} cannot be imported: {exc}") from None


@dataclass(frozen=True)
class PoliciesFile:
    path: Path
    entries: dict[str, PolicyEntry]

    @classmethod
    def load(cls, path: str | Path) -> PoliciesFile:
        """The file, its structure and types checked (configurations are read when used)."""
        path = Path(path).expanduser().absolute()
        data = _yaml(path, "RTBENCH_POLICIES_FILE")
        if not isinstance(data, dict) or not isinstance(data.get("policies"), dict) or not data["policies"]:
            raise PoliciesFileError(f"{path}: expected a top-level 'policies:' mapping of policy names to "
                                    "{adapter, config}")
        entries = {}
        for name, body in data["policies"].items():
            where = f"{path}: policy {name!r}"
            if not isinstance(body, dict):
                raise PoliciesFileError(f"{where}: expected a mapping with 'adapter' and 'config'")
            for key, value in body.items():
                if key not in ENTRY_KEYS:
                    raise PoliciesFileError(f"{where}, key {key!r}: unknown key; known keys: {', '.join(ENTRY_KEYS)}")
                if not isinstance(value, ENTRY_KEYS[key]) or (key == "pythonpath" and
                                                             not all(isinstance(i, str) for i in value)) \
                        or (key == "slots_per_gpu" and (isinstance(value, bool) or value < 1)):
                    wanted = {"pythonpath": "a list of folders", "slots_per_gpu": "a whole number from 1",
                              "server_shared": "true or false"}.get(key, "a string")
                    raise PoliciesFileError(f"{where}, key {key!r}: expected {wanted}, found {value!r}")
            if "adapter" not in body:
                raise PoliciesFileError(f"{where}, key 'adapter': missing (module:Class, or a registered name)")
            config = body.get("config")
            config_path = (path.parent / os.path.expandvars(config)) if config else None
            if config_path is not None and not config_path.is_file():
                raise PoliciesFileError(f"{where}, key 'config': {config_path} does not exist")
            entries[str(name)] = PolicyEntry(str(name), body["adapter"], config_path,
                                             tuple(path.parent / os.path.expandvars(p)
                                                   for p in body.get("pythonpath", [])), path,
                                             body.get("slots_per_gpu"), body.get("server"),
                                             body.get("server_shared", False))
        return cls(path, entries)

    def check(self, registered: Collection[str], slot: WorkerSlot | None = None) -> None:
        """What a worker checks at start: every configuration reads (its placeholders filled
        for ``slot``), every adapter imports (``registered``: the built-in and entry-point
        policy names, for entries naming one)."""
        for entry in self.entries.values():
            entry.config(slot=slot)
            entry.server_address(slot=slot)
            if entry.import_path is not None:
                entry.check_import()
            elif entry.adapter not in registered:
                raise PoliciesFileError(f"{entry.where('adapter')}: {entry.adapter!r} is neither module:Class nor a "
                                        f"known policy ({', '.join(sorted(registered))}, or one registered "
                                        "through the 'rtbench.policies' entry-point group)")
