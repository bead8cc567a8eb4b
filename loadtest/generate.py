"""Seeded synthetic traces: a hotline's day of calls, drawn from stated distributions.

- Arrivals: a non-homogeneous Poisson process over the chosen hours, its rate constant within
  each clock hour and proportional to that hour's weight in the profile; the rates are scaled
  so the busiest chosen hour expects `GeneratorSpec.bhca` calls. (Each hour draws a Poisson
  count and places its calls uniformly in the hour: exactly the process with that rate.)
- Callers: a region drawn by weight, then the region's prefix followed by random digits up to
  its number length.
- IVR keys: a key sequence drawn by weight from the menu, each key after a think time drawn
  from `KeyMenu.think`.
- Patience: exponential with mean `patience_s`, or none (callers wait forever).
- Talk and wrap-up: `Distribution`s (``exp:MEAN``, ``lognormal:MEAN:SIGMA``, ``fixed:S``,
  ``uniform:A:B``).

Times are rounded to the millisecond. One seed gives the same trace on every machine
(numpy's `Generator` with PCG64; draws are made in a fixed order).
"""

from __future__ import annotations

import csv
import io
import math
from pathlib import Path
from typing import Any

import msgspec
import numpy as np
import yaml

from loadtest.trace import KeyPress, Trace, TraceCall, format_seconds

#: A citizen hotline's day (relative calls per clock hour 00 … 23): quiet at night, a morning
#: peak 09-11, a lunch dip 12-13, an afternoon peak 14-16 and a decline through the evening.
HOTLINE_DAY = (
    0.05, 0.03, 0.02, 0.02, 0.02, 0.04, 0.12, 0.35, 0.75, 1.00, 0.95, 0.70,
    0.40, 0.55, 0.90, 0.92, 0.80, 0.55, 0.35, 0.25, 0.18, 0.14, 0.10, 0.07,
)  # fmt: skip
FLAT = (1.0,) * 24
PROFILES = {"hotline-day": HOTLINE_DAY, "flat": FLAT}


class GeneratorError(Exception):
    """A generator argument or input file that cannot be used; the message names it."""


class Distribution(msgspec.Struct, frozen=True):
    """Seconds drawn from ``exp:MEAN``, ``lognormal:MEAN:SIGMA`` (MEAN the distribution's
    mean, SIGMA the standard deviation of its logarithm), ``fixed:S`` or ``uniform:A:B``."""

    kind: str
    a: float
    b: float = 0.0

    @classmethod
    def parse(cls, text: str) -> Distribution:
        kind, _, rest = text.strip().partition(":")
        arity = {"exp": 1, "lognormal": 2, "fixed": 1, "uniform": 2}
        usage = "expected exp:MEAN, lognormal:MEAN:SIGMA, fixed:S or uniform:A:B"
        if kind not in arity:
            raise GeneratorError(f"{text!r}: {usage}")
        try:
            values = [float(v) for v in rest.split(":")] if rest else []
        except ValueError:
            raise GeneratorError(f"{text!r}: {usage}") from None
        if len(values) != arity[kind] or not all(math.isfinite(v) and v >= 0 for v in values):
            raise GeneratorError(f"{text!r}: {usage}, numbers >= 0")
        if kind == "uniform" and values[0] > values[1]:
            raise GeneratorError(f"{text!r}: uniform:A:B needs A <= B")
        if kind in ("exp", "lognormal") and values[0] == 0:
            raise GeneratorError(f"{text!r}: the mean must be > 0 (or use fixed:0)")
        return cls(kind, *values)

    def __str__(self) -> str:
        if self.kind in ("exp", "fixed"):
            return f"{self.kind}:{format_seconds(self.a)}"
        return f"{self.kind}:{format_seconds(self.a)}:{format_seconds(self.b)}"

    @property
    def mean(self) -> float:
        return (self.a + self.b) / 2 if self.kind == "uniform" else self.a

    def sample(self, rng: np.random.Generator, n: int) -> np.ndarray:
        if self.kind == "exp":
            return rng.exponential(self.a, n)
        if self.kind == "lognormal":
            mu = math.log(self.a) - self.b**2 / 2  # E[X] = exp(mu + sigma²/2) = MEAN
            return rng.lognormal(mu, self.b, n)
        if self.kind == "uniform":
            return rng.uniform(self.a, self.b, n)
        return np.full(n, self.a)


class Region(msgspec.Struct, frozen=True):
    """Callers of `region`: numbers of `length` digits starting with `prefix`."""

    prefix: str
    region: str
    weight: float = 1.0
    length: int = 11


#: Default callers: a few area codes and mobile prefixes (numbers of 11 or 12 digits).
DEFAULT_REGIONS = (
    Region("010", "beijing", 0.14, 11),
    Region("021", "shanghai", 0.10, 11),
    Region("020", "guangzhou", 0.06, 11),
    Region("0755", "shenzhen", 0.05, 12),
    Region("028", "chengdu", 0.05, 11),
    Region("1380", "mobile", 0.20, 11),
    Region("1390", "mobile", 0.15, 11),
    Region("1860", "mobile", 0.15, 11),
    Region("1500", "mobile", 0.10, 11),
)


class KeySequence(msgspec.Struct, frozen=True):
    """A way through the IVR: the keys pressed (``"1"``, ``"0 2"``; ``""`` none), by weight."""

    keys: str
    weight: float


class KeyMenu(msgspec.Struct, frozen=True):
    """The IVR key sequences callers take, and the think time before each key."""

    sequences: tuple[KeySequence, ...]
    think: Distribution = Distribution("lognormal", 2.5, 0.5)


#: The shipped demo's 12345 menu: 1 citizen, 2 enterprise, 0 hears the menu again, and some
#: callers press nothing (after the retries a person takes the call).
DEFAULT_MENU = KeyMenu(
    (
        KeySequence("1", 0.65),
        KeySequence("2", 0.22),
        KeySequence("0 1", 0.05),
        KeySequence("0 2", 0.02),
        KeySequence("", 0.06),
    )
)


class GeneratorSpec(msgspec.Struct, frozen=True):
    """What `generate` draws. `hours`: clock hours [start, end) (``(20, 8)`` crosses midnight;
    ``(0, 24)`` the whole day); `profile`: 24 weights, one per clock hour; `bhca`: calls
    expected in the busiest chosen hour; `patience_s`: mean patience, None: wait forever."""

    seed: int = 0
    hours: tuple[int, int] = (8, 20)
    profile: tuple[float, ...] = HOTLINE_DAY
    profile_name: str = "hotline-day"
    bhca: float = 1000.0
    called: str = "12345"
    regions: tuple[Region, ...] = DEFAULT_REGIONS
    menu: KeyMenu = DEFAULT_MENU
    patience_s: float | None = 60.0
    talk: Distribution = Distribution("exp", 180.0)
    wrap: Distribution = Distribution("fixed", 15.0)


# --- inputs -------------------------------------------------------------------------------------
def parse_hours(text: str) -> tuple[int, int]:
    """``08-20`` → (8, 20): the clock hours from 08:00 to 20:00."""
    start, dash, end = text.partition("-")
    try:
        hours = int(start), int(end)
    except ValueError:
        hours = (-1, -1)
    if not dash or not (0 <= hours[0] <= 23 and 1 <= hours[1] <= 24) or hours[0] == hours[1]:
        raise GeneratorError(f"--hours {text!r}: expected START-END clock hours, e.g. 08-20")
    return hours


def hour_list(hours: tuple[int, int]) -> list[int]:
    """The clock hours of a window, in order (``(22, 2)`` → 22, 23, 0, 1)."""
    start, end = hours
    span = (end - start) % 24 or 24
    return [(start + i) % 24 for i in range(span)]


def _load_file(path: Path) -> Any:
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise GeneratorError(f"{path}: {exc}") from None
    if path.suffix.lower() in (".yaml", ".yml", ".json"):
        try:
            return yaml.safe_load(text)
        except yaml.YAMLError as exc:
            raise GeneratorError(f"{path}: {exc}") from None
    lines = [line for line in text.splitlines() if line.strip() and not line.startswith("#")]
    return list(csv.reader(io.StringIO("\n".join(lines))))


def load_profile(name_or_path: str) -> tuple[str, tuple[float, ...]]:
    """A built-in profile by name, or 24 weights from a file: YAML (a list of 24 numbers, or
    a mapping hour → weight with every hour) or CSV (24 rows of ``weight`` or
    ``hour,weight``, an optional header row)."""
    if name_or_path in PROFILES:
        return name_or_path, PROFILES[name_or_path]
    path = Path(name_or_path)
    if not path.exists():
        raise GeneratorError(
            f"--profile {name_or_path!r}: not {' or '.join(PROFILES)} and no such file"
        )
    data = _load_file(path)
    weights: list[Any]
    if isinstance(data, dict):
        if sorted(data, key=str) != sorted(range(24), key=str):
            raise GeneratorError(f"{path}: a mapping needs the hours 0 … 23, each once")
        weights = [data[h] for h in range(24)]
    elif isinstance(data, list) and data and isinstance(data[0], list):  # CSV rows
        rows = data[1:] if data and not _is_number(data[0][-1]) else data
        weights = [row[-1] for row in rows]
    elif isinstance(data, list):
        weights = data
    else:
        raise GeneratorError(f"{path}: expected 24 weights")
    if len(weights) != 24 or not all(_is_number(w) and float(w) >= 0 for w in weights):
        raise GeneratorError(f"{path}: expected 24 weights >= 0, one per hour, got {weights!r}")
    return str(path), tuple(float(w) for w in weights)


def _is_number(value: Any) -> bool:
    try:
        return math.isfinite(float(value))
    except (TypeError, ValueError):
        return False


def load_regions(path: Path) -> tuple[Region, ...]:
    """Regions from YAML (a list of ``{prefix, region, weight, length}``) or CSV with the
    header ``prefix,region,weight[,length]``."""
    data = _load_file(path)
    if isinstance(data, list) and data and isinstance(data[0], list):
        header, *rows = data
        data = [dict(zip([h.strip() for h in header], row, strict=False)) for row in rows]
    try:
        regions = msgspec.convert(data, tuple[Region, ...], strict=False)
    except msgspec.ValidationError as exc:
        raise GeneratorError(f"{path}: {exc}") from None
    for index, r in enumerate(regions):
        if not r.prefix.isdigit() or r.length < len(r.prefix) or r.weight < 0:
            raise GeneratorError(
                f"{path}: regions[{index}]: prefix must be digits, length >= the prefix's, "
                "weight >= 0"
            )
    if not regions or sum(r.weight for r in regions) <= 0:
        raise GeneratorError(f"{path}: no region with a weight > 0")
    return regions


def load_menu(path: Path) -> KeyMenu:
    """A key menu from YAML: ``{think: "lognormal:2.5:0.5", sequences: [{keys: "1",
    weight: 65}, {keys: "0 2", weight: 5}, {keys: "", weight: 10}]}``."""
    data = _load_file(path)
    if not isinstance(data, dict) or not isinstance(data.get("sequences"), list):
        raise GeneratorError(f"{path}: expected a mapping with a list `sequences`")
    think = Distribution.parse(str(data.get("think", str(DEFAULT_MENU.think))))
    try:
        sequences = msgspec.convert(data["sequences"], tuple[KeySequence, ...], strict=False)
    except msgspec.ValidationError as exc:
        raise GeneratorError(f"{path}: sequences: {exc}") from None
    for index, s in enumerate(sequences):
        if any(k not in "0123456789*#" or len(k) != 1 for k in s.keys.split()) or s.weight < 0:
            raise GeneratorError(
                f"{path}: sequences[{index}]: keys are space-separated 0-9 * #, weight >= 0"
            )
    if not sequences or sum(s.weight for s in sequences) <= 0:
        raise GeneratorError(f"{path}: no key sequence with a weight > 0")
    return KeyMenu(sequences, think)


# --- the draw -----------------------------------------------------------------------------------
def hourly_rates(spec: GeneratorSpec) -> list[tuple[int, float]]:
    """(clock hour, expected calls) for each hour of the window."""
    hours = hour_list(spec.hours)
    peak = max(spec.profile[h] for h in hours)
    if peak <= 0:
        raise GeneratorError("the profile's weights are all 0 in the chosen hours")
    return [(h, spec.bhca * spec.profile[h] / peak) for h in hours]


def _ms(values: np.ndarray) -> list[float]:
    return [float(v) for v in np.round(values, 3)]


def generate(spec: GeneratorSpec) -> Trace:
    """The trace `spec` describes; the same spec (seed included) gives the same trace."""
    rng = np.random.Generator(np.random.PCG64(spec.seed))
    rates = hourly_rates(spec)
    counts = rng.poisson([rate for _, rate in rates])
    offsets = np.concatenate(
        [index * 3600.0 + np.sort(rng.uniform(0.0, 3600.0, n)) for index, n in enumerate(counts)]
    )
    offsets = np.maximum.accumulate(np.round(offsets, 3))  # rounding keeps the order
    n = len(offsets)

    region_weights = np.array([r.weight for r in spec.regions], dtype=float)
    region_index = rng.choice(len(spec.regions), n, p=region_weights / region_weights.sum())
    callers = []
    for i in region_index:
        region = spec.regions[i]
        width = region.length - len(region.prefix)
        tail = int(rng.integers(0, 10**width)) if width else 0
        callers.append(region.prefix + (f"{tail:0{width}d}" if width else ""))

    menu = spec.menu
    key_weights = np.array([s.weight for s in menu.sequences], dtype=float)
    sequence_index = rng.choice(len(menu.sequences), n, p=key_weights / key_weights.sum())
    sequences = [menu.sequences[i].keys.split() for i in sequence_index]
    thinks = iter(_ms(menu.think.sample(rng, sum(len(s) for s in sequences))))

    patience: list[float | None]
    if spec.patience_s is None:
        patience = [None] * n
    else:
        patience = list(_ms(rng.exponential(spec.patience_s, n)))
    talk = _ms(spec.talk.sample(rng, n))
    wrap = _ms(spec.wrap.sample(rng, n))

    width = max(7, len(str(n)))
    calls = tuple(
        TraceCall(
            call_id=f"c{i + 1:0{width}d}",
            offset_s=float(offsets[i]),
            caller=callers[i],
            called=spec.called,
            region=spec.regions[region_index[i]].region,
            keys=tuple(KeyPress(k, next(thinks)) for k in sequences[i]),
            patience_s=patience[i],
            talk_s=talk[i],
            wrap_s=wrap[i],
        )
        for i in range(n)
    )
    return Trace(calls, metadata(spec))


def metadata(spec: GeneratorSpec) -> dict[str, str]:
    """The ``# key: value`` lines that say how a trace was drawn."""
    start, end = spec.hours
    return {
        "generator": "hotline loadtest generate",
        "seed": str(spec.seed),
        "start": f"{start:02d}:00",
        "hours": f"{start:02d}-{end:02d}",
        "profile": spec.profile_name,
        "bhca": format_seconds(spec.bhca),
        "called": spec.called,
        "patience": "none" if spec.patience_s is None else format_seconds(spec.patience_s),
        "talk": str(spec.talk),
        "wrap": str(spec.wrap),
        "think": str(spec.menu.think),
    }
