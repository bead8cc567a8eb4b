"""Queue and agent specifications: the configuration the ACD engine decides with.

They are frozen msgspec Structs (STYLE §4). The constraints are declared with `msgspec.Meta`, so
a loader that decodes YAML straight into them gets path-named errors; `validate_specs` checks the
same rules for values built in code, plus the cross-references (agent → queue, duplicates).
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from typing import Annotated

import msgspec

from acd.errors import InvalidSpec

#: Routing strategies this engine implements (SPEC ACD-1), the one list the configuration
#: schema and the engine share. Each picks among the idle agents eligible for a call:
#: - `longest_idle`: the agent idle the longest;
#: - `skills`: the best skill level for the queue's skills first (the sum of the agent's
#:   levels in them), then the longest idle;
#: - `round_robin`: the next agent after the one last offered a call of the queue, in the
#:   order agents are configured (the position is remembered across calls);
#: - `fewest_calls`: the agent that answered the fewest calls since the engine started,
#:   then the longest idle;
#: - `random`: any of them, from the engine's seeded generator (the same inputs and seed
#:   give the same choices);
#: - `ring_all`: all of them at once; the first to answer takes the call, the others' rings
#:   are withdrawn (agents that become idle while it rings are offered it too).
STRATEGIES: tuple[str, ...] = (
    "longest_idle", "skills", "round_robin", "fewest_calls", "random", "ring_all",
)  # fmt: skip
#: Skill levels, lowest to highest.
MIN_LEVEL, MAX_LEVEL = 1, 10


class QueueSpec(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    """One queue.

    - `ring_timeout`: seconds an agent's phone rings before the call goes back to the queue head
      (SPEC ACD-4); with `ring_all`, each agent's ring times out on its own and the call goes
      back when its last ring has ended.
    - `max_wait`: seconds from `enqueue` until the caller leaves with `QueueTimeout`; re-queues
      after no-answer do not restart it.
    - `wrap_up`: seconds of after-call work before the agent is idle again (0 = none).
    - `retry`: seconds an agent whose offer of a call failed (no answer within `ring_timeout`,
      or rejected) is not offered that same call again; other calls may go to it at once. When
      the window ends and the call still waits, the engine offers it again (Asterisk app_queue's
      `retry`). 0 = eligible again at once, but never re-offered in the same returned command
      list as its failure: the next `handle_timer`, due at the same instant, does it.
    - `skills`: skill name → minimum level (1–10). Every agent whose skills meet all of them
      serves the queue, whether or not it lists the queue; an agent that lists the queue must
      meet them too.
    - `region_wait`: seconds a call that has a region (the caller's locality) is offered only
      to agents of that region, before any agent may take it; 0 = no region preference. No
      wait when no agent of that region is logged in to the queue.
    - `max_callers`: calls the queue holds at once (waiting or ringing); one more does not
      join (`QueueTimeout` reason ``"full"``). 0 = no limit.
    - `leave_when_empty`: a call arriving while no agent of the queue is logged in does not
      join, and waiting calls leave when the last one logs out (reason ``"empty"``).
    - `lock_after`: an agent that misses this many offers in a row (no answer or refused,
      in any queue; an answer resets the count), the last one a call of this queue, is
      locked until a supervisor unlocks it. 0 = never.
    - `busy_alert`: seconds an agent of the queue may be busy or on a break before the
      engine raises an AGENT_ALERT event (the smallest of its queues'); 0 = never.
    - `sticky_wait`: seconds a call with a preferred agent (the one who served the caller
      last) is kept for that agent alone; 0 = no stickiness. No wait when that agent is not
      logged in or does not serve the queue.
    - `hold_alert`: seconds an agent may keep a call of the queue on hold before the engine
      raises an AGENT_ALERT event (once per hold); 0 = never.
    """

    name: Annotated[str, msgspec.Meta(min_length=1)]
    strategy: str = "longest_idle"
    ring_timeout: Annotated[float, msgspec.Meta(gt=0)] = 15.0
    max_wait: Annotated[float, msgspec.Meta(gt=0)] = 300.0
    wrap_up: Annotated[float, msgspec.Meta(ge=0)] = 0.0
    retry: Annotated[float, msgspec.Meta(ge=0)] = 5.0
    skills: dict[str, int] = msgspec.field(default_factory=dict)
    region_wait: Annotated[float, msgspec.Meta(ge=0)] = 0.0
    sticky_wait: Annotated[float, msgspec.Meta(ge=0)] = 0.0
    max_callers: Annotated[int, msgspec.Meta(ge=0)] = 0
    leave_when_empty: bool = False
    lock_after: Annotated[int, msgspec.Meta(ge=0)] = 0
    busy_alert: Annotated[float, msgspec.Meta(ge=0)] = 0.0
    hold_alert: Annotated[float, msgspec.Meta(ge=0)] = 0.0


class AgentSpec(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    """One agent: the queues it lists (an agent may serve several), its skills (name →
    level 1–10, which also make it serve every queue whose `skills` it meets) and its region
    (site), if any."""

    agent_id: Annotated[str, msgspec.Meta(min_length=1)]
    queues: tuple[str, ...] = ()
    skills: dict[str, int] = msgspec.field(default_factory=dict)
    region: str | None = None

    def meets(self, required: dict[str, int]) -> bool:
        """Whether the agent has every skill of `required` at its level or above."""
        return all(self.skills.get(name, 0) >= level for name, level in required.items())

    def score(self, required: dict[str, int]) -> int:
        """How well the agent fits a queue needing `required`: the sum of its levels there."""
        return sum(self.skills.get(name, 0) for name in required)


def memberships(
    queues: Iterable[QueueSpec], agents: Iterable[AgentSpec]
) -> dict[str, tuple[str, ...]]:
    """Agent id → the queues it serves: those it lists, then every queue with `skills`
    that it meets, in queue order."""
    skilled = [q for q in queues if q.skills]
    result: dict[str, tuple[str, ...]] = {}
    for agent in agents:
        extra = tuple(
            q.name for q in skilled if q.name not in agent.queues and agent.meets(q.skills)
        )
        result[agent.agent_id] = agent.queues + extra
    return result


def _check_skills(where: str, skills: object) -> None:
    if not isinstance(skills, dict):
        raise InvalidSpec(f"{where}: expected a mapping of skill name to level")
    for name, level in skills.items():
        if not isinstance(name, str) or not name:
            raise InvalidSpec(f"{where}: skill names must be non-empty strings, got {name!r}")
        if (
            isinstance(level, bool)
            or not isinstance(level, int)
            or not MIN_LEVEL <= level <= MAX_LEVEL
        ):
            raise InvalidSpec(
                f"{where}.{name}: expected a level {MIN_LEVEL}-{MAX_LEVEL}, got {level!r}"
            )


def _check_seconds(where: str, value: float, *, allow_zero: bool) -> None:
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        raise InvalidSpec(f"{where}: expected a finite number of seconds, got {value!r}")
    if value < 0 or (value == 0 and not allow_zero):
        bound = ">= 0" if allow_zero else "> 0"
        raise InvalidSpec(f"{where}: expected seconds {bound}, got {value!r}")


def validate_specs(
    queues: Iterable[QueueSpec], agents: Iterable[AgentSpec]
) -> tuple[tuple[QueueSpec, ...], tuple[AgentSpec, ...]]:
    """Check queue and agent specs; return them as tuples in the given order.

    Raises `InvalidSpec` (message starting with a path such as ``agents[3].queues[0]``) for a
    bad value, a duplicate name, or an agent naming a queue that is not in `queues`.
    """
    queue_list = tuple(queues)
    agent_list = tuple(agents)
    names: set[str] = set()
    for i, q in enumerate(queue_list):
        where = f"queues[{i}]"
        if not isinstance(q, QueueSpec):
            raise InvalidSpec(f"{where}: expected QueueSpec, got {type(q).__name__}")
        if not isinstance(q.name, str) or not q.name:
            raise InvalidSpec(f"{where}.name: expected a non-empty string")
        if q.name in names:
            raise InvalidSpec(f"{where}.name: duplicate queue {q.name!r}")
        names.add(q.name)
        if q.strategy not in STRATEGIES:
            raise InvalidSpec(
                f"{where}.strategy: {q.strategy!r} is not supported (supported: "
                f"{', '.join(STRATEGIES)})"
            )
        _check_seconds(f"{where}.ring_timeout", q.ring_timeout, allow_zero=False)
        _check_seconds(f"{where}.max_wait", q.max_wait, allow_zero=False)
        _check_seconds(f"{where}.wrap_up", q.wrap_up, allow_zero=True)
        _check_seconds(f"{where}.retry", q.retry, allow_zero=True)
        _check_seconds(f"{where}.region_wait", q.region_wait, allow_zero=True)
        _check_seconds(f"{where}.sticky_wait", q.sticky_wait, allow_zero=True)
        _check_seconds(f"{where}.busy_alert", q.busy_alert, allow_zero=True)
        _check_seconds(f"{where}.hold_alert", q.hold_alert, allow_zero=True)
        _check_skills(f"{where}.skills", q.skills)
        for field in ("max_callers", "lock_after"):
            value = getattr(q, field)
            if isinstance(value, bool) or not isinstance(value, int) or value < 0:
                raise InvalidSpec(f"{where}.{field}: expected an integer >= 0")
        if q.strategy == "skills" and not q.skills:
            raise InvalidSpec(f"{where}.skills: strategy 'skills' needs the queue's skills")
    ids: set[str] = set()
    for i, a in enumerate(agent_list):
        where = f"agents[{i}]"
        if not isinstance(a, AgentSpec):
            raise InvalidSpec(f"{where}: expected AgentSpec, got {type(a).__name__}")
        if not isinstance(a.agent_id, str) or not a.agent_id:
            raise InvalidSpec(f"{where}.agent_id: expected a non-empty string")
        if a.agent_id in ids:
            raise InvalidSpec(f"{where}.agent_id: duplicate agent {a.agent_id!r}")
        ids.add(a.agent_id)
        if len(set(a.queues)) != len(a.queues):
            raise InvalidSpec(f"{where}.queues: a queue is listed twice")
        _check_skills(f"{where}.skills", a.skills)
        if a.region is not None and (not isinstance(a.region, str) or not a.region):
            raise InvalidSpec(f"{where}.region: expected a non-empty string or None")
        for j, queue in enumerate(a.queues):
            if queue not in names:
                raise InvalidSpec(f"{where}.queues[{j}]: unknown queue {queue!r}")
            spec = next(q for q in queue_list if q.name == queue)
            if not a.meets(spec.skills):
                lacking = ", ".join(
                    f"{name} {level}"
                    for name, level in spec.skills.items()
                    if a.skills.get(name, 0) < level
                )
                raise InvalidSpec(
                    f"{where}.queues[{j}]: agent {a.agent_id!r} lacks what queue {queue!r} "
                    f"requires ({lacking})"
                )
    return queue_list, agent_list
