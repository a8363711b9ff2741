"""The one exception type that the CLI turns into a one-line message and a non-zero exit, and how a name
from the file system is shown on one line (:func:`printable`)."""

from __future__ import annotations


class VconvError(Exception):
    """A problem the user can act on (bad file, bad config, mismatched checkpoint).

    The message is one line: what (usually a path), why, and where sensible what to do.
    The CLI prints it as ``error: <message>`` and exits with code 1; it never shows a traceback.
    """


def printable(text: str) -> str:
    """``text`` safe to print as one line: control characters as escapes (``\\n``, ``\\x1b``) and the bytes
    of a file name that are not UTF-8 as ``\\xNN``, so no name can start a line of its own or garble the terminal.

    It lives here, below every stage, because reports made far from the CLI (a corpus scan's summary, a
    similarity table) hold file names too, and a name must be escaped before it is put into a text of
    several lines: afterwards its own line break can no longer be told from the text's.
    """
    out = []
    for ch in text:
        code = ord(ch)
        if 0xDC80 <= code <= 0xDCFF:  # os.fsdecode's stand-in for an undecodable byte
            out.append(f"\\x{code - 0xDC00:02x}")
        elif code < 0x20 or 0x7F <= code < 0xA0 or 0xD800 <= code <= 0xDFFF:
            out.append(ch.encode("unicode_escape", "backslashreplace").decode("ascii"))
        else:
            out.append(ch)
    return "".join(out)
