"""Errors that the CLI turns into one clear line and exit code 2."""

from __future__ import annotations

import difflib
from collections.abc import Iterable


class NoisySegError(Exception):
    """A user-facing error: bad input, bad config or an unknown name.

    The message must be one line that names the file or option and the problem.
    """


class DataError(NoisySegError):
    """A data file is missing, unreadable or inconsistent."""


class ConfigError(NoisySegError):
    """A configuration value or option is invalid."""


def did_you_mean(name: str, choices: Iterable[str]) -> str:
    """Return a ' (did you mean X?)' hint for a misspelt name, or '' if nothing is close."""
    close = difflib.get_close_matches(name, list(choices), n=1, cutoff=0.5)
    return f" (did you mean '{close[0]}'?)" if close else ""


def unknown_name(kind: str, name: str, choices: Iterable[str]) -> ConfigError:
    """Build the error for an unknown method/protocol/option name, with a suggestion."""
    choices = sorted(choices)
    return ConfigError(
        f"unknown {kind} '{name}'{did_you_mean(name, choices)}; choose from: {', '.join(choices)}"
    )
