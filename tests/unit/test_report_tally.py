"""The tally behind every report: adding then removing entries undoes exactly, blobs round-trip,
merging equals adding, and each exclusion rule lands where the report reads it."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from benchmark.records.time_use import SUMS
from benchmark.spec.spec_file import load_spec
from reporting.entries import config_hash
from reporting.spec_digest import HASH_CHARS, SpecDigest
from reporting.tally import COMPLETED, CONFIG_MISMATCH, MISPLACED, OUT_OF_SPEC, SUCCESSES, VALID, Tally

SPEC = load_spec("lm20")
DIGEST = SpecDigest.from_spec(SPEC)
SETTINGS = [*(s.id for s in SPEC.settings[:3]), "drop_lm_always_on"]
TASKS = [*SPEC.tasks[:3], "not_a_task"]


def entry(name, policy, setting, task, repeat, success, error, config="spec", status="ok", machine="m1",
          sums=None) -> list:
    if status != "ok":
        return [name, 10, 1, status, "why", *[None] * 9]
    if config == "spec":
        logged = (config_hash(SPEC.config(setting, task, repeat))
                  if SPEC.contains(setting, task, repeat if repeat is not None else -1) else "0" * 32)
    else:
        logged = config
    return [name, 10, 1, "ok", None, policy, setting, task, repeat, success and error is None, error, logged, machine,
            sums]


entries = st.builds(
    entry, name=st.from_regex(r"episode_[0-9]{1,2}\.json", fullmatch=True), policy=st.sampled_from(["A", "A", "B"]),
    setting=st.sampled_from(SETTINGS), task=st.sampled_from(TASKS), repeat=st.one_of(st.none(), st.integers(0, 25)),
    success=st.booleans(), error=st.sampled_from([None, None, "eval_error", "unstable_seed"]),
    config=st.sampled_from(["spec", "spec", None, "f" * 32]),
    status=st.sampled_from(["ok"] * 5 + ["json_decode_error"]), machine=st.sampled_from(["m1", "m2"]),
    # whole seconds: adding and removing them is exact
    sums=st.one_of(st.none(), st.tuples(*[st.integers(0, 100).map(float)] * len(SUMS))))
directories = st.lists(st.tuples(st.sampled_from(["A/x", "A/y/z", "B/x"]), st.lists(entries, max_size=8)), max_size=6)


def is_empty(tally: Tally) -> bool:
    return all(not f.counts.any() and not +f.error_labels and not +f.excluded and not f.problems
               and not any(any(sums) for sums in f.time_use.values()) for f in tally.folders.values())


@settings(max_examples=60, deadline=None)
@given(directories)
def test_removing_what_was_added_leaves_nothing(dirs):
    tally = Tally(DIGEST)
    tally.apply(dirs)
    tally.apply(dirs, -1)
    assert is_empty(tally)


@settings(max_examples=40, deadline=None)
@given(directories, directories)
def test_merge_equals_adding_and_blobs_round_trip(first, second):
    together, a, b = Tally(DIGEST), Tally(DIGEST), Tally(DIGEST)
    together.apply(first + second)
    a.apply(first)
    b.apply(second)
    a.merge(b)
    again = Tally.from_blobs(DIGEST, *a.to_blobs())
    for tally in (a, again):
        assert set(tally.folders) == set(together.folders)
        for name, folder in together.folders.items():
            assert np.array_equal(tally.folders[name].counts, folder.counts)
            assert +tally.folders[name].error_labels == +folder.error_labels
            assert +tally.folders[name].excluded == +folder.excluded
            assert tally.folders[name].problems == folder.problems
            assert tally.folders[name].time_use == folder.time_use


def test_each_rule_counts_where_the_report_reads_it():
    s, t = SPEC.settings[0].id, SPEC.tasks[0]
    tally = Tally(DIGEST)
    tally.apply([("A/s/t", [
        entry("episode_0.json", "A", s, t, 0, True, None),                 # valid success
        entry("episode_1.json", "A", s, t, 1, False, "eval_error"),        # error
        entry("episode_2.json", "B", s, t, 2, True, None),                 # misplaced
        entry("episode_3.json", "A", "drop_lm_always_on", t, 3, True, None),  # unknown setting
        entry("episode_25.json", "A", s, t, 25, True, None),               # repeat beyond the spec
        entry("episode_4.json", "A", s, t, 4, True, None, config="f" * 32),  # another benchmark
        entry("episode_5.json", "A", s, t, 5, True, None, config=None),    # logs no config: accepted
        entry("episode_6.json", "A", s, t, 6, True, None, status="json_decode_error"),
    ])])
    folder = tally.folders["A"]
    slot = lambda r: r  # setting 0, task 0  # noqa: E731
    assert folder.counts[COMPLETED, [slot(0), slot(1), slot(5)]].tolist() == [1, 1, 1]
    assert folder.counts[VALID].sum() == 2 and folder.counts[SUCCESSES].sum() == 2
    assert folder.error_labels == {("eval_error", 1): 1}
    assert folder.excluded == {(MISPLACED, 2): 1, (OUT_OF_SPEC, 3): 1, (OUT_OF_SPEC, 25): 1,
                               (CONFIG_MISMATCH, 4): 1}
    assert folder.problems == {"A/s/t/episode_6.json": ("json_decode_error", "why")}


def test_spec_digest_round_trips_and_knows_caused_failure():
    verified = load_spec("verified")
    digest = SpecDigest.from_spec(verified)
    again = SpecDigest.from_blobs(*digest.to_blobs())
    assert again.sha256 == verified.sha256 and again.settings == verified.settings
    assert np.array_equal(again.caused_failure, digest.caused_failure) and again.config_hashes == digest.config_hashes
    assert digest.has_caused_failure_data and not DIGEST.has_caused_failure_data
    s, t = verified.settings[1], verified.tasks[2]
    slot = (1 * len(verified.tasks) + 2) * verified.repeats + 3
    assert digest.config_hashes[slot * HASH_CHARS:(slot + 1) * HASH_CHARS] == config_hash(verified.config(s.id, t, 3))
    assert digest.caused_failure[slot] == (verified.config(s.id, t, 3).get("caused_failure") is True)


@pytest.mark.parametrize("config", [{"a": 1, "caused_failure": True}, {"caused_failure": False, "a": 1}])
def test_config_hash_ignores_the_caused_failure_label_and_key_order(config):
    assert config_hash(config) == config_hash({"a": 1})
