"""Loading, identity, filtering and validation of spec files."""

from __future__ import annotations

import gzip
import hashlib
import json
import math

import pytest

from benchmark.common.errors import SpecError
from benchmark.spec.spec_file import load_spec, resolve_spec_path, spec_sha256


def test_aliases_resolve_to_shipped_files():
    assert resolve_spec_path("lm20").name == "benchmark_spec_lm20.json"
    assert resolve_spec_path("full").name == "benchmark_spec.json.gz"  # .json missing -> .json.gz
    assert resolve_spec_path("verified").name == "benchmark_spec_verified.json"
    with pytest.raises(SpecError, match=r"spec file not found \(nope\.json\); give an alias \(full, lm20, verified\)"):
        resolve_spec_path("nope.json")


def test_lm20_loads_with_identity_and_counts():
    spec = load_spec("lm20")
    raw = resolve_spec_path("lm20").read_bytes()
    assert spec.sha256 == hashlib.sha256(raw).hexdigest() == spec_sha256("lm20")
    assert (len(spec.settings), len(spec.tasks), spec.repeats) == (10, 50, 20)
    assert spec.episodes_per_policy == 10_000
    assert all(s.severity == "lm" for s in spec.settings)
    assert spec.data["verified"] is False
    assert spec.data["derived_from"]["sha256"] == spec_sha256("full")
    assert spec.step_limit("open_microwave") == 1500
    assert spec.config("bias_lm_always_on", "click_bell", 3)["perturbation_type"] == "bias"
    assert spec.env_seed("bias_lm_always_on", "click_bell", 3) == spec.env_seed("iir_lm_always_on", "click_bell", 0)


def test_gzip_does_not_change_identity_and_unknown_keys_are_kept(small_spec_data, write_spec, tmp_path):
    small_spec_data["my_notes"] = {"owner": "lab"}
    small_spec_data["settings"][0]["comment"] = "kept"
    plain = write_spec(small_spec_data)
    gz = tmp_path / "spec.json.gz"
    gz.write_bytes(gzip.compress(plain.read_bytes()))
    a, b = load_spec(plain), load_spec(gz)
    assert a.sha256 == b.sha256 == hashlib.sha256(plain.read_bytes()).hexdigest()
    assert b.data["my_notes"] == {"owner": "lab"}
    assert b.data["settings"][0]["comment"] == "kept"
    # A path to a .json that only exists gzipped is found too.
    plain.unlink()
    assert load_spec(tmp_path / "spec.json").sha256 == a.sha256


def test_filters_keep_order_identity_and_recount(small_spec_data, write_spec):
    spec = load_spec(write_spec(small_spec_data))
    sub = spec.filter(settings=["iir_high_always_on", "scale_lm_always_on"], tasks=["open_laptop"], max_repeat=2)
    assert [s.id for s in sub.settings] == ["scale_lm_always_on", "iir_high_always_on"]  # spec order
    assert sub.tasks == ("open_laptop",)
    assert sub.repeats == 2 and sub.episodes_per_policy == 4
    assert sub.sha256 == spec.sha256
    assert sub.config("iir_high_always_on", "open_laptop", 1) == spec.config("iir_high_always_on", "open_laptop", 1)
    with pytest.raises(SpecError, match="repeat_idx 2"):
        sub.config("iir_high_always_on", "open_laptop", 2)
    with pytest.raises(SpecError, match=r"unknown setting 'nope'.*known settings"):
        spec.filter(settings=["nope"])
    with pytest.raises(SpecError, match="unknown task 'lift_pot'"):
        spec.filter(tasks=["lift_pot"])
    assert spec.filter(max_repeat=3).repeats == 3
    with pytest.raises(SpecError, match="max_repeat: 4 is more than the 3 repeats per setting"):
        spec.filter(max_repeat=4)  # silently 3 would read as a complete run of 4


def _mutate(data, path, value):
    target = data
    for part in path[:-1]:
        target = target[part]
    if value is _DELETE:
        del target[path[-1]]
    else:
        target[path[-1]] = value


_DELETE = object()
CFG = ["perturbation_configs"]

MALFORMED = [
    # (mutation path, new value, JSON path expected in the message, words expected)
    (["env_seeds"], _DELETE, "env_seeds", "missing required key"),
    (["repeats_per_setting"], "3", "repeats_per_setting", "expected an integer, found string '3'"),
    (["tasks"], {"a": 1}, "tasks", "expected a list"),
    ([*CFG, "bias_lm_always_on", "click_bell"], _DELETE, "perturbation_configs.bias_lm_always_on.click_bell",
     "task has no configs"),
    ([*CFG, "bias_lm_always_on", "click_bell"], [], "perturbation_configs.bias_lm_always_on.click_bell",
     "task has no configs"),
    (["env_seeds", "bias_lm_always_on", "open_laptop"], [1, 2],
     "env_seeds.bias_lm_always_on.open_laptop", "at least repeats_per_setting=3 entries, found 2"),
    (["settings", 1, "id"], "scale_high_always_on", "settings[1].id",
     "does not match its fields"),
    ([*CFG, "bias_lm_always_on", "click_bell", 2, "params", "b", 4], math.nan,
     "perturbation_configs.bias_lm_always_on.click_bell[2].params.b[4]", "expected a finite number, found nan"),
    ([*CFG, "scale_high_always_on", "click_bell", 0, "params", "S", 0], math.inf,
     "perturbation_configs.scale_high_always_on.click_bell[0].params.S[0]", "finite number, found inf"),
    ([*CFG, "iir_lm_always_on", "open_laptop", 1, "params", "alpha"], math.nan,
     "perturbation_configs.iir_lm_always_on.open_laptop[1].params.alpha", "finite number"),
    ([*CFG, "coupling_lm_always_on", "click_bell", 1, "params", "M", 3], [0.0] * 13,
     "perturbation_configs.coupling_lm_always_on.click_bell[1].params.M", "14x14 matrix"),
    ([*CFG, "coupling_lm_always_on", "click_bell", 1, "params", "M", 5, 2], "x",
     "perturbation_configs.coupling_lm_always_on.click_bell[1].params.M[5][2]", "expected a number"),
    ([*CFG, "fir_high_always_on", "open_laptop", 2, "params", "w"], [0.5, 0.4],
     "perturbation_configs.fir_high_always_on.open_laptop[2].params.w", "must sum to 1"),
    ([*CFG, "fir_high_always_on", "open_laptop", 2, "params", "w"], [0.0, 1.0],
     "perturbation_configs.fir_high_always_on.open_laptop[2].params.w[0]", "w0 > 0"),
    ([*CFG, "scale_lm_always_on", "click_bell", 0, "params", "S"], [1.0] * 13,
     "perturbation_configs.scale_lm_always_on.click_bell[0].params.S", "expected 14 numbers, found 13"),
    ([*CFG, "scale_lm_always_on", "click_bell", 0, "perturbation_type"], "bias",
     "perturbation_configs.scale_lm_always_on.click_bell[0].perturbation_type", "expected 'scale'"),
    ([*CFG, "scale_lm_always_on", "click_bell", 0, "t_on_raw"], -1,
     "perturbation_configs.scale_lm_always_on.click_bell[0].t_on_raw", "non-negative integer"),
    ([*CFG, "scale_lm_always_on", "click_bell", 0, "params"], _DELETE,
     "perturbation_configs.scale_lm_always_on.click_bell[0].params", "missing required key"),
    ([*CFG, "scale_lm_always_on", "click_bell", 0, "caused_failure"], "yes",
     "perturbation_configs.scale_lm_always_on.click_bell[0].caused_failure", "expected a boolean"),
    (["step_limits", "open_laptop"], 0, "step_limits.open_laptop", "positive integer"),
    (["num_tasks"], 3, "num_tasks", "expected 2"),
    (["tasks", 1], "../etc", "tasks[1]", "not a valid name"),
    (["settings", 0, "timing"], "sometimes", "settings[0].timing", "expected one of"),
]


@pytest.mark.parametrize(("path", "value", "location", "words"), MALFORMED,
                         ids=[case[2] + ":" + case[3][:20] for case in MALFORMED])
def test_malformed_spec_names_file_and_json_path(small_spec_data, write_spec, path, value, location, words):
    _mutate(small_spec_data, path, value)
    spec_file = write_spec(small_spec_data)
    with pytest.raises(SpecError) as caught:
        load_spec(spec_file)
    message = str(caught.value)
    assert message.startswith(f"{spec_file}: {location}: "), message
    assert words in message
    assert "\n" not in message


def test_truncated_and_non_json_files_are_refused_with_position(small_spec_data, write_spec, tmp_path):
    text = json.dumps(small_spec_data)
    with pytest.raises(SpecError, match=r"spec.json: not valid JSON at line 1, column \d+ \(.*; truncated\?\)"):
        load_spec(write_spec(text[: len(text) // 2]))
    bad_gz = tmp_path / "bad.json.gz"
    bad_gz.write_bytes(gzip.compress(text.encode())[:100])
    with pytest.raises(SpecError, match=r"bad\.json\.gz: corrupt gzip data"):
        load_spec(bad_gz)
    with pytest.raises(SpecError, match="top level"):
        load_spec(write_spec("[1, 2]"))
    with pytest.raises(SpecError, match="not found"):
        load_spec(tmp_path / "missing.json")


def test_longer_repeat_lists_than_declared_are_accepted(small_spec_data, write_spec):
    cfgs = small_spec_data["perturbation_configs"]["bias_lm_always_on"]["click_bell"]
    cfgs.append(dict(cfgs[0]))
    assert load_spec(write_spec(small_spec_data)).repeats == 3


def test_verified_labels_are_detected(small_spec_data, write_spec):
    assert not load_spec(write_spec(small_spec_data)).has_caused_failure
    small_spec_data["perturbation_configs"]["fir_lm_always_on"]["open_laptop"][0]["caused_failure"] = True
    assert load_spec(write_spec(small_spec_data)).has_caused_failure


def test_spec_summaries_are_cached_per_file_state(tmp_path, monkeypatch, small_spec_data):
    from benchmark.spec.spec_file import load_spec
    from benchmark.spec.summary import cache_path, spec_summary

    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    spec_file = tmp_path / "small.json"
    spec_file.write_text(json.dumps(small_spec_data))
    loads = []

    def load(ref):
        loads.append(ref)
        return load_spec(ref)

    first = spec_summary(str(spec_file), load)
    spec = load_spec(str(spec_file))
    assert (first.name, first.sha256, first.episodes_per_policy) == ("small.json", spec.sha256, 120)
    assert spec_summary(str(spec_file), load) == first and len(loads) == 1  # the second one is cached
    spec_file.write_text(json.dumps(small_spec_data, indent=1))  # other bytes, another sha256: loaded again
    changed = spec_summary(str(spec_file), load)
    assert len(loads) == 2 and changed.sha256 == load_spec(str(spec_file)).sha256 != first.sha256
    cache_path().write_text("{damaged")  # a damaged cache costs one load, nothing else
    assert spec_summary(str(spec_file), load) == changed and len(loads) == 3
