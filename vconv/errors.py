"""The one exception type that the CLI turns into a one-line message and a non-zero exit."""

from __future__ import annotations


class VconvError(Exception):
    """A problem the user can act on (bad file, bad config, mismatched checkpoint).

    The message is one line: what (usually a path), why, and where sensible what to do.
    The CLI prints it as ``error: <message>`` and exits with code 1; it never shows a traceback.
    """
