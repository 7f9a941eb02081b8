"""The report JSON (``--export-json``), field by field: what ``reporting.aggregate.build_report``
returns and every renderer reads. Today's keys keep their names and meaning (compatibility
with the reports users have); rtbench's additions are marked "added". A test checks a real
report against these types, key by key, so that the two cannot drift apart;
``docs/report_format.md`` is generated from this file (``scripts/schema_docs.py``).

Rates are fractions in [0, 1]; intervals are ``[low, high]`` pairs.
"""

from __future__ import annotations

import sys

if sys.version_info >= (3, 11):
    from typing import NotRequired, TypedDict  # novermin (3.11 and later only)
else:  # Python 3.10: typing's TypedDict there knows no NotRequired
    from typing_extensions import NotRequired, TypedDict

Interval = list[float]  # [low, high], 95%


class OnTheseTasks(TypedDict):
    """Added: "how good is the policy on these tasks?" (the tasks fixed, the repeats random);
    docs/statistics.md."""

    rate: float                    # the mean of the task success rates (tasks with valid episodes)
    ci95: Interval                 # Wilson interval with the effective n of the per-task binomial variance
    tasks: int                     # tasks with valid episodes


class OverTasks(TypedDict):
    """Added: "how good is it on tasks like these?" (the tasks a draw too); docs/statistics.md."""

    rate: float                    # the mean of the task success rates (as on_these_tasks)
    ci95: Interval | None          # Wilson-t interval of the spread between tasks; None under 2 tasks
    tasks: int                     # tasks with valid episodes
    approximate: bool              # fewer than 10 tasks: the interval's coverage is approximate


class GroupStats(TypedDict):
    """One group of episodes: a policy overall, a setting, a dimension's value or a task."""

    completed: int                 # readable records in scope (valid or error)
    expected: int                  # episodes the spec holds for the group (min(repeats, --max-repeat))
    progress: float                # completed / expected
    valid: int                     # records without an error
    errors: int                    # completed - valid
    successes: int                 # valid records with success
    success_rate: float            # successes / valid
    eff_total: int                 # completed episodes whose perturbation caused_failure (verified specs)
    eff_valid: int                 # ... of them valid
    eff_successes: int             # ... of them successes
    eff_success_rate: float | None  # eff_successes / eff_valid (None if 0): success where perturbing mattered
    success_rate_all: float        # added: successes / completed (errors count as failures)
    success_rate_ci95: Interval    # added: Wilson interval of success_rate
    success_rate_ci95_cluster: Interval  # added: bootstrap over tasks (repeats of a task share a scene)
    success_rate_all_ci95: Interval      # added: Wilson interval of success_rate_all
    eff_success_rate_ci95: Interval | None  # added: Wilson interval of eff_success_rate; None with it
    on_these_tasks: OnTheseTasks   # added: the success rate on these tasks, with its interval
    over_tasks: OverTasks          # added: the success rate on tasks like these, with its interval


class SettingStats(GroupStats):
    setting_id: str                # <type>_<severity>_<timing>
    perturb_type: str              # bias, scale, iir, fir, delay ...
    severity: str                  # e.g. lm, hm
    timing: str                    # e.g. always_on


class TaskStats(GroupStats):
    task: str


class CellStats(TypedDict):
    """Added: one (setting, task) cell of the heatmap."""

    setting_id: str
    task: str
    completed: int
    valid: int
    successes: int
    success_rate: float


class PolicyReport(TypedDict):
    overall: GroupStats
    error_types: dict[str, int]    # error label -> count, most common first (at most 20)
    per_setting: list[SettingStats]  # in spec order
    per_dimension: dict[str, dict[str, GroupStats]]  # perturb_type / severity / timing -> value -> stats
    per_task: list[TaskStats]      # worst first (progress, then success rate)
    per_setting_task: list[CellStats]  # added: cells with records, in spec order


class PairedOnTheseTasks(TypedDict):
    """Added: a - b on these tasks, paired by episode (the same numbers as difference and
    difference_ci95, named by their question)."""

    difference: float
    ci95: Interval


class PairedOverTasks(TypedDict):
    """Added: a - b on tasks like these, paired by task: the mean of the per-task differences
    with a t interval (tasks - 1 degrees of freedom)."""

    difference: float              # mean over tasks of (a's rate - b's rate) on the task's shared episodes
    ci95: Interval | None          # None under 2 tasks, or when every task differs by the same amount
    tasks: int                     # tasks with shared episodes
    approximate: bool              # fewer than 10 tasks


class PairedStats(TypedDict):
    """Two policies on the episodes both completed validly (added)."""

    pairs: int                     # such episodes
    both: int                      # both succeeded
    a_only: int                    # only policy_a succeeded
    b_only: int                    # only policy_b succeeded
    neither: int
    difference: float              # success rate of a minus b on these episodes
    difference_ci95: Interval      # Newcombe's interval for paired proportions
    mcnemar_p: float               # McNemar's exact test, two-sided
    on_these_tasks: PairedOnTheseTasks  # added: the difference on these tasks (paired by episode)
    over_tasks: PairedOverTasks    # added: the difference on tasks like these (paired by task)


class SettingPairedStats(PairedStats):
    setting_id: str


class PairedComparison(PairedStats):
    policy_a: str
    policy_b: str
    per_setting: list[SettingPairedStats]


class SpecSummary(TypedDict):
    num_settings: int
    num_tasks: int                 # tasks with records (all of the spec's with --include-all-tasks)
    repeats_per_setting: int       # min(spec repeats, --max-repeat)
    total_per_policy: int          # num_settings x num_tasks x repeats_per_setting
    name: str                      # added: the spec's name
    sha256: str                    # added: the spec's identity
    verified_with: dict | None     # added: provenance of caused_failure labels (verified specs)


class UnusablePath(TypedDict):
    path: str
    status: str                    # json_decode_error, os_error, invalid, unsupported_schema
    problem: str | None


class IoErrors(TypedDict):
    """Files that are not usable records: today's two counts, then added ones and the paths."""

    json_decode_error: int         # truncated, half-written or not JSON
    os_error: int                  # unreadable
    invalid: int                   # added: JSON, but not a record
    unsupported_schema: int        # added: written by a newer rtbench
    first_paths: list[UnusablePath]  # added: the first 20, in path order


class DuplicatePaths(TypedDict):
    """Added: one episode with more than one record; the first path is the one counted."""

    episode: str                   # <policy>/<setting>/<task>/episode_<r>
    paths: list[str]               # its own path first (when there), then the others in path order


class MisplacedPath(TypedDict):
    """Added: a record in another policy's folder than the one it names."""

    path: str
    names: str                     # the policy the record names


class Slice(TypedDict):
    """The part of the spec reported (``--settings``, ``--tasks``, ``--max-repeat``); None: all."""

    settings: list[str] | None
    tasks: list[str] | None
    max_repeat: int | None


class TimeUseSeconds(TypedDict):
    wall_s: float                  # the episodes' own wall time (duration_s)
    gpu_s: float                   # wall time times the worker's share of its GPU (1/slots per GPU)
    setup_s: float                 # the record's phases, summed
    expert_check_s: float
    policy_s: float
    sim_s: float
    write_s: float


class TimeUseSummary(TypedDict):
    episodes: int                  # records with phases
    duty_cycle: float | None       # policy seconds / wall seconds: the share spent in policy calls
    setup_share: float | None      # (set-up + expert check) seconds / wall seconds
    sim_share: float | None        # simulator seconds / wall seconds
    episodes_per_gpu_hour: float | None  # episodes / GPU-hours
    seconds: TimeUseSeconds


class PolicyTimeUse(TypedDict):
    overall: TimeUseSummary
    machines: dict[str, TimeUseSummary]  # machine -> its episodes' time use


class AnytimeRate(TypedDict):
    rate: float | None             # the mean outcome of the completed rounds (null: none)
    cs95: list[float] | None       # [low, high]: holds at every look with 95% (null: no round)


class AnytimeDifference(TypedDict):
    difference: float | None       # a - b over the rounds both completed
    cs95: list[float] | None


class AnytimeStop(TypedDict):
    """A slice stopped by its ``enqueue --stop-when`` rule (the note beside its records)."""

    rule: str                      # e.g. width<0.05, decided:A,B
    after_round: int               # the completed rounds the rule held on
    rounds: int                    # the rounds the slice had
    detail: str                    # what the sequences said then
    at: str                        # when (ISO 8601, UTC)
    episodes_not_run: int          # episodes in scope without a record now
    resumed: bool                  # more rounds completed since (enqueue --resume-stopped)


class AnytimePolicy(TypedDict):
    rounds: int                    # completed rounds: repeat r of every setting and task in scope
    overall: AnytimeRate
    per_setting: dict[str, AnytimeRate]
    stopped: NotRequired[AnytimeStop]  # only for a slice a stop rule stopped


class AnytimePair(TypedDict):
    a: str
    b: str
    rounds: int                    # the rounds both completed
    overall: AnytimeDifference
    per_setting: dict[str, AnytimeDifference]


class Anytime(TypedDict):
    """Confidence sequences on completed rounds, valid at every look (reporting/anytime.py)."""

    method: str
    alpha: float                   # 0.05: the chance that a sequence ever misses, over all looks
    per_policy: dict[str, AnytimePolicy]
    paired: list[AnytimePair]      # every pair of policies, as paired_comparisons


class MediaProblem(TypedDict):
    path: str                      # the video, relative to the media folder
    problem: str                   # missing (not pulled, deleted) or damaged (size, sha256)


class Media(TypedDict):
    """The videos the records name (``rtbench-report --media``, on with --export-html)."""

    media_dir: str                 # where they were looked for
    per_policy: dict[str, dict[str, int]]  # policy -> failures, and records per video state (ok, missing, ...)
    problems: list[MediaProblem]   # every missing or damaged video


class Report(TypedDict):
    generated_at: str              # local time, ISO 8601, seconds
    spec_summary: SpecSummary
    has_caused_failure_data: bool  # the spec labels caused_failure (eff_* columns mean something)
    policies: list[str]
    io_errors: IoErrors
    per_policy: dict[str, PolicyReport]
    global_error_types: dict[str, int]
    cross_policy_by_setting: list[dict]  # per setting: setting fields, then policy -> its SettingStats
    out_of_spec: dict[str, int]    # added: policy -> records outside the spec, excluded
    config_mismatch: dict[str, int]  # added: policy -> records whose logged config is not the spec's, excluded
    misplaced: dict[str, int]      # added: policy -> records naming another policy, excluded
    duplicates: dict[str, int]     # added: policy -> records beyond the first of one episode, not counted
    duplicate_paths: list[DuplicatePaths]  # added: the first 20 episodes with duplicates, by episode
    misplaced_paths: list[MisplacedPath]  # added: the first 20 misplaced records, in path order
    paired_comparisons: list[PairedComparison]  # added: every pair of policies
    slice: Slice                   # added: the part of the spec reported
    time_use: dict[str, PolicyTimeUse]  # added: policy -> where its episodes' time went
    anytime: Anytime               # added: confidence sequences valid at every look (docs/statistics.md)
    notes: list[str]               # how the numbers were computed
    media: NotRequired[Media]      # added with --media: the videos' state (docs/media.md)
