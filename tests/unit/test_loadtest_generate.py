"""Synthetic traces: seeded, shaped by the hourly profile, distributions with their means."""

from __future__ import annotations

import math
from pathlib import Path

import pytest

from loadtest.cli import loadtest_command
from loadtest.generate import (
    FLAT,
    HOTLINE_DAY,
    Distribution,
    GeneratorError,
    GeneratorSpec,
    KeyMenu,
    KeySequence,
    Region,
    generate,
    hour_list,
    load_profile,
    parse_hours,
)
from loadtest.trace import read_trace
from softswitch.cli import _parser

# chi-square critical value, 11 degrees of freedom, p = 0.001
CHI2_11_999 = 31.26


def _per_hour(offsets: list[float], hours: int) -> list[int]:
    counts = [0] * hours
    for t in offsets:
        counts[int(t // 3600)] += 1
    return counts


def test_same_seed_same_trace_other_seed_other_trace() -> None:
    spec = GeneratorSpec(seed=11, bhca=300)
    assert generate(spec) == generate(GeneratorSpec(seed=11, bhca=300))
    assert generate(spec).calls != generate(GeneratorSpec(seed=12, bhca=300)).calls


def test_arrivals_per_hour_follow_the_hotline_day_profile() -> None:
    trace = generate(GeneratorSpec(seed=1, hours=(8, 20), bhca=4000))
    counts = _per_hour([c.offset_s for c in trace.calls], 12)
    weights = HOTLINE_DAY[8:20]
    total = sum(counts)
    expected = [total * w / sum(weights) for w in weights]
    chi2 = sum((o - e) ** 2 / e for o, e in zip(counts, expected, strict=True))
    assert chi2 < CHI2_11_999, (counts, expected)
    # the shape a hotline's day has: morning peak, lunch dip, afternoon peak
    assert counts[1] > counts[4] < counts[6]  # 09 > 12 < 14


def test_busiest_hour_has_bhca_calls_within_four_sigma() -> None:
    for seed in range(3):
        trace = generate(GeneratorSpec(seed=seed, bhca=5000))
        busiest = max(_per_hour([c.offset_s for c in trace.calls], 12))
        assert abs(busiest - 5000) < 4 * math.sqrt(5000), busiest


def test_flat_profile_gives_the_same_rate_every_hour() -> None:
    trace = generate(GeneratorSpec(seed=2, hours=(0, 24), profile=FLAT, bhca=500))
    counts = _per_hour([c.offset_s for c in trace.calls], 24)
    assert all(abs(n - 500) < 4 * math.sqrt(500) for n in counts), counts
    assert abs(sum(counts) - 12000) < 4 * math.sqrt(12000)


def test_hours_may_cross_midnight() -> None:
    assert parse_hours("22-02") == (22, 2)
    assert hour_list((22, 2)) == [22, 23, 0, 1]
    assert hour_list((0, 24)) == list(range(24))
    trace = generate(GeneratorSpec(seed=3, hours=(22, 2), bhca=100))
    assert trace.calls[-1].offset_s < 4 * 3600
    for bad in ("8", "08-08", "25-03", "a-b"):
        with pytest.raises(GeneratorError):
            parse_hours(bad)


@pytest.mark.parametrize(
    ("text", "mean"),
    [("exp:180", 180.0), ("lognormal:120:0.8", 120.0), ("fixed:15", 15.0), ("uniform:10:30", 20.0)],
)
def test_talk_time_distributions_have_their_mean(text: str, mean: float) -> None:
    trace = generate(GeneratorSpec(seed=4, bhca=2000, talk=Distribution.parse(text)))
    talks = [c.talk_s for c in trace.calls]
    assert abs(sum(talks) / len(talks) - mean) < 0.05 * mean
    assert min(talks) >= 0
    if text.startswith("uniform"):
        assert 10 <= min(talks) and max(talks) <= 30


def test_patience_is_exponential_with_its_mean_or_absent() -> None:
    calls = generate(GeneratorSpec(seed=5, bhca=2000, patience_s=45.0)).calls
    patience = [c.patience_s for c in calls if c.patience_s is not None]
    assert len(patience) == len(calls)
    assert abs(sum(patience) / len(patience) - 45.0) < 0.05 * 45.0
    # exponential: the median is mean * ln 2
    assert abs(sorted(patience)[len(patience) // 2] - 45.0 * math.log(2)) < 0.08 * 45.0
    none = generate(GeneratorSpec(seed=5, bhca=100, patience_s=None)).calls
    assert all(c.patience_s is None for c in none)


def test_regions_and_keys_are_drawn_by_weight() -> None:
    regions = (Region("010", "beijing", 3.0, 11), Region("1380", "mobile", 1.0, 11))
    menu = KeyMenu((KeySequence("1", 1.0), KeySequence("0 2", 1.0)), Distribution.parse("fixed:2"))
    calls = generate(GeneratorSpec(seed=6, bhca=2000, regions=regions, menu=menu)).calls
    beijing = [c for c in calls if c.region == "beijing"]
    assert abs(len(beijing) / len(calls) - 0.75) < 0.03
    assert all(c.caller.startswith("010") and len(c.caller) == 11 for c in beijing)
    assert all(c.caller.startswith("1380") for c in calls if c.region == "mobile")
    sequences = {" ".join(k.key for k in c.keys) for c in calls}
    assert sequences == {"1", "0 2"}
    assert {k.think_s for c in calls for k in c.keys} == {2.0}


def test_lognormal_think_time_has_its_mean() -> None:
    calls = generate(GeneratorSpec(seed=8, bhca=3000)).calls
    thinks = [k.think_s for c in calls for k in c.keys]
    assert abs(sum(thinks) / len(thinks) - 2.5) < 0.05 * 2.5


def test_bad_distributions_are_refused() -> None:
    for bad in ("exp", "exp:-1", "gauss:3", "uniform:5:1", "lognormal:10", "exp:0", "fixed:x"):
        with pytest.raises(GeneratorError):
            Distribution.parse(bad)


def test_profile_from_csv_and_yaml(tmp_path: Path) -> None:
    csv_file = tmp_path / "p.csv"
    csv_file.write_text("hour,weight\n" + "".join(f"{h},{h + 1}\n" for h in range(24)))
    assert load_profile(str(csv_file))[1] == tuple(float(h + 1) for h in range(24))
    yaml_file = tmp_path / "p.yaml"
    yaml_file.write_text("[" + ", ".join(["1"] * 24) + "]\n")
    assert load_profile(str(yaml_file))[1] == FLAT
    yaml_file.write_text("[1, 2]\n")
    with pytest.raises(GeneratorError, match="expected 24 weights"):
        load_profile(str(yaml_file))
    with pytest.raises(GeneratorError, match="no such file"):
        load_profile("busy-monday")


def test_generate_command_writes_a_trace_that_reads_back(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "day.csv"
    regions = tmp_path / "regions.csv"
    regions.write_text("prefix,region,weight,length\n0571,hangzhou,1,12\n")
    keys = tmp_path / "keys.yaml"
    keys.write_text('think: fixed:1\nsequences: [{keys: "3", weight: 1}]\n')
    argv = ["loadtest", "generate", "--out", str(out), "--seed", "9", "--hours", "09-11",
            "--profile", "flat", "--calls-per-hour", "200", "--talk", "fixed:30",
            "--patience", "none", "--regions", str(regions), "--keys", str(keys)]  # fmt: skip
    assert loadtest_command(_parser().parse_args(argv)) == 0
    trace = read_trace(out)
    assert capsys.readouterr().out == f"{out}: {len(trace.calls)} calls\n"
    assert trace.metadata["seed"] == "9" and trace.metadata["profile"] == "flat"
    assert {c.region for c in trace.calls} == {"hangzhou"}
    assert {c.talk_s for c in trace.calls} == {30.0}
    assert all(c.keys[0].key == "3" and c.patience_s is None for c in trace.calls)
    assert abs(len(trace.calls) - 400) < 4 * math.sqrt(400)


def test_generate_usage_errors_exit_2_with_one_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    base = ["loadtest", "generate", "--out", str(tmp_path / "x.csv")]
    for extra in (["--talk", "exp"], ["--hours", "9"], ["--patience", "-3"], ["--bhca", "0"]):
        assert loadtest_command(_parser().parse_args(base + extra)) == 2
        err = capsys.readouterr().err
        assert err.startswith("hotline: ") and err.count("\n") == 1, err
    assert not (tmp_path / "x.csv").exists()
