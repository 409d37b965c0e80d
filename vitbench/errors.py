"""User-facing errors: one line that says what is wrong and what to do about it.

The CLI prints `VitbenchError` messages without a traceback and exits non-zero; anything else
is a bug and keeps its traceback.
"""

from __future__ import annotations

import difflib
from collections.abc import Iterable


class VitbenchError(Exception):
    """A problem with the user's input or environment, explained in one line."""

    exit_code = 1


class UnknownNameError(VitbenchError, KeyError):
    """An unknown model, task or dataset name; the message lists the closest known names."""

    exit_code = 2

    def __init__(self, kind: str, name: str, known: Iterable[str]):
        self.name = name
        close = difflib.get_close_matches(name, list(known), n=5, cutoff=0.4)
        hint = f"; closest: {', '.join(close)}" if close else ""
        super().__init__(f"unknown {kind} {name!r}{hint} (see `vitbench list` / `vitbench tasks`)")

    def __str__(self) -> str:  # KeyError would quote the message
        return self.args[0]


class BadImageError(VitbenchError):
    """An image file that cannot be decoded correctly."""

    def __init__(self, path: str, reason: str):
        self.path, self.reason = path, reason
        super().__init__(f"cannot decode image {path}: {reason} "
                         "(pass --skip-bad-images to skip such files)")

    def __reduce__(self):  # travels back from data-loader workers intact
        return (type(self), (self.path, self.reason))


def check_options(given: Iterable[str], accepted: Iterable[str], what: str) -> None:
    """Reject unknown option names with the list of accepted ones (never swallow kwargs)."""
    accepted = sorted(accepted)
    unknown = sorted(set(given) - set(accepted))
    if unknown:
        raise VitbenchError(f"unknown {what} option(s) {', '.join(unknown)}; "
                            f"accepted: {', '.join(accepted) or '(none)'}")
