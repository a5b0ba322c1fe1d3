"""The small family of expected failures.

An expected failure is one clear message plus an optional hint; the command-line
entry points print it without a traceback and exit non-zero.  Anything that is not a
DibpyError is a bug and keeps its traceback.
"""

from __future__ import annotations

import difflib
from collections.abc import Iterable


class DibpyError(Exception):
    """An expected failure with a message for the user and an optional hint."""

    exit_code = 1

    def __init__(self, message: str, hint: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.hint = hint

    def __str__(self) -> str:
        if self.hint:
            return f"{self.message}\n  hint: {self.hint}"
        return self.message


class ConfigError(DibpyError):
    """Bad input: an option, an environment variable, a YAML file, an element."""

    exit_code = 2


class ElementError(ConfigError):
    """A problem with an element or with resolving the element set."""


def describe_status(returncode: int) -> str:
    """How a child ended, as a verb phrase: ``failed with exit status 3``, ``was killed
    by SIGKILL``; a shell's 128+N (its own child killed by signal N) is spelled out."""
    if returncode < 0:
        return f"was killed by {_signal_name(-returncode)}"
    text = f"failed with exit status {returncode}"
    if 128 < returncode < 128 + 65:
        text += f" (128+{_signal_name(returncode - 128)}: something it ran was killed)"
    return text


def _signal_name(num: int) -> str:
    import signal

    try:
        return signal.Signals(num).name
    except ValueError:
        return f"signal {num}"


class CommandError(DibpyError):
    """An external program failed: non-zero exit, killed by a signal, timed out or could
    not start.  ``returncode`` is negative for a signal; ``status`` says it in words."""

    def __init__(
        self,
        argv: list[str],
        exit_code: int,
        output_tail: str = "",
        hint: str | None = None,
        status: str | None = None,
    ) -> None:
        self.argv = argv
        self.returncode = exit_code
        self.output_tail = output_tail
        self.status = status or describe_status(exit_code)
        msg = f"command {self.status}: {' '.join(argv)}"
        if output_tail:
            msg += "\n" + "\n".join("  | " + line for line in output_tail.splitlines())
        super().__init__(msg, hint)


class HookError(DibpyError):
    """A hook script exited non-zero."""


class Interrupted(DibpyError):
    """The build got SIGINT or SIGTERM; raised so that every ExitStack unwinds."""

    exit_code = 130


class MultiError(ConfigError):
    """Several problems found in one validation pass, reported together."""

    def __init__(self, problems: Iterable[str], hint: str | None = None) -> None:
        self.problems = list(problems)
        if len(self.problems) == 1:
            message = self.problems[0]
        else:
            message = f"{len(self.problems)} problems:\n" + "\n".join(
                f"  - {p}" for p in self.problems
            )
        super().__init__(message, hint)


def did_you_mean(
    name: str, candidates: Iterable[str], *, n: int = 3, cutoff: float = 0.6, quote: bool = True
) -> str | None:
    """``did you mean 'a' or 'b'?`` naming up to ``n`` of ``candidates`` close to
    ``name`` (difflib's ratio of at least ``cutoff``), or None if none is.  The one
    suggestion helper of dibpy: for unknown elements, plugins, keys, outputs, commands."""
    close = difflib.get_close_matches(name, sorted(set(candidates)), n=n, cutoff=cutoff)
    if not close:
        return None
    return "did you mean " + " or ".join(repr(c) if quote else c for c in close) + "?"
