"""Exceptions of the `softswitch` package.

Errors are part of the interface (STYLE §8): each is caught at exactly one boundary, where it
becomes a SIP response, an HTTP problem, or a CLI message with exit status 2.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from softswitch.config_yaml import ConfigIssue


class ConfigError(Exception):
    """The configuration directory is invalid; `errors` lists every problem found.

    Each issue prints as ``file:line: path: message`` (SPEC DP-9). The loader collects all
    issues across all files before raising, so an admin fixes everything in one round.
    """

    def __init__(self, errors: Iterable[ConfigIssue]) -> None:
        self.errors: list[ConfigIssue] = list(errors)
        super().__init__("\n".join(str(issue) for issue in self.errors))
