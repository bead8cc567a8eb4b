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

#: Routing strategies this engine implements (SPEC ACD-1; the others come with later issues).
STRATEGIES: tuple[str, ...] = ("longest_idle",)


class QueueSpec(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    """One queue.

    - `ring_timeout`: seconds an agent's phone rings before the call goes back to the queue head
      (SPEC ACD-4).
    - `max_wait`: seconds from `enqueue` until the caller leaves with `QueueTimeout`; re-queues
      after no-answer do not restart it.
    - `wrap_up`: seconds of after-call work before the agent is idle again (0 = none).
    - `retry`: seconds an agent whose offer of a call failed (no answer within `ring_timeout`,
      or rejected) is not offered that same call again; other calls may go to it at once. When
      the window ends and the call still waits, the engine offers it again (Asterisk app_queue's
      `retry`). 0 = eligible again at once, but never re-offered in the same returned command
      list as its failure: the next `handle_timer`, due at the same instant, does it.
    """

    name: Annotated[str, msgspec.Meta(min_length=1)]
    strategy: str = "longest_idle"
    ring_timeout: Annotated[float, msgspec.Meta(gt=0)] = 15.0
    max_wait: Annotated[float, msgspec.Meta(gt=0)] = 300.0
    wrap_up: Annotated[float, msgspec.Meta(ge=0)] = 0.0
    retry: Annotated[float, msgspec.Meta(ge=0)] = 5.0


class AgentSpec(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    """One agent and the queues it serves (an agent may serve several)."""

    agent_id: Annotated[str, msgspec.Meta(min_length=1)]
    queues: tuple[str, ...] = ()


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
        for j, queue in enumerate(a.queues):
            if queue not in names:
                raise InvalidSpec(f"{where}.queues[{j}]: unknown queue {queue!r}")
    return queue_list, agent_list
