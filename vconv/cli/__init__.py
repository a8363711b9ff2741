"""The `vconv` command line: each command is a thin wrapper over a library function.

Exit codes (defined once in :mod:`vconv.cli.common`, listed in ``vconv --help`` and the README):

* ``0`` success;
* ``1`` an error the user can act on (:class:`~vconv.errors.VconvError`: bad input file, config or path),
  printed as one line ``error: ...`` on stderr, never a traceback; also a batch where every file failed;
* ``2`` a usage error (unknown option, missing argument, a value of the wrong type), also one line;
* ``3`` some files of a batch failed (each listed on stderr as ``error: FILE: reason``), the rest were done.

Commands that load a model (convert, embed, evaluate) check their inputs, options and output paths
first, so a typo fails at once rather than after the model load.

Every path parameter (here, in :mod:`vconv.cli.artifacts` and :mod:`vconv.cli.stream`) says ``readable=False``:
Typer's default has Click refuse an unreadable path itself, as a usage error (exit 2, in Click's words), before
vconv's own checks can say it is an input they cannot read (exit 1, or one failure of a batch, exit 3).
"""

from __future__ import annotations

import errno
import gc
import signal
import sys

import typer

from vconv.cli.artifacts import bundle_app, frontend_app
from vconv.cli.common import EXIT_CODES_HELP, EXIT_ERROR, OneLineErrorsGroup, hold_collection
from vconv.cli.conversion import convert, embed, evaluate, models
from vconv.cli.data import extract, info, prepare
from vconv.cli.serve import serve
from vconv.cli.stream import stream
from vconv.cli.training import train, train_vocoder
from vconv.cli.voice import voice
from vconv.fileio import discard_unwritten
from vconv.inference.threads import prepare_threads

app = typer.Typer(
    name="vconv",
    help="One-shot voice conversion: prepare corpora, extract features, train, convert, embed, evaluate, serve.",
    epilog=EXIT_CODES_HELP,
    cls=OneLineErrorsGroup,
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
    # plain help text: Rich markup would eat "[live]" in "vconv[live]" and print a "<bool>" type beside every flag
    rich_markup_mode=None,
)

# the commands in the order `vconv --help` lists them; each module holds its commands' options and docstrings
for command in (prepare, extract, train, convert, embed, evaluate, models):
    app.command()(command)
app.command("train-vocoder")(train_vocoder)
app.command()(info)
app.command("serve")(serve)  # vconv/cli/serve.py: the local web page
app.command("stream")(stream)  # vconv/cli/stream.py: live conversion from a file or a pipe
app.command("voice")(voice)  # vconv/cli/voice.py: a target voice prepared once, saved as a voice file
app.add_typer(bundle_app, name="bundle")
app.add_typer(frontend_app, name="frontend")


def main() -> None:
    """Console-script entry point."""
    prepare_threads()  # before anything imports torch: idle OpenMP threads sleep instead of spinning (inference/threads.py)
    hold_collection(sys.argv)  # no garbage collection over torch's import in a conversion's start (cli/common.py)
    signal.signal(signal.SIGTERM, _terminate)  # so temporary files are removed on SIGTERM as on Ctrl-C
    try:
        app()
    except BrokenPipeError:  # `vconv ... | head` must not print a traceback
        sys.exit(1)
    except OSError as exc:
        # what Click and Rich print themselves, outside any command (`--help > /dev/full`): a failed write to a
        # stream has no file name, every file vconv opens is checked where it is opened
        if exc.filename is not None or exc.errno not in (errno.ENOSPC, errno.EIO):
            raise
        discard_unwritten(sys.stdout)
        typer.echo(f"error: standard output: {'no space left on the device' if exc.errno == errno.ENOSPC else exc.strerror}", err=True)
        sys.exit(EXIT_ERROR)
    finally:
        # Exit without a last garbage collection over everything torch created: the interpreter still
        # runs atexit handlers, closes files and tears modules down, but a process that imported torch
        # spends ~0.2 s (here) walking its objects first; `vconv convert` of a short file then takes a
        # sixth less time (benchmarks/bench_convert.py, start-up).
        gc.freeze()


def _terminate(signum: int, frame: object) -> None:
    """SIGTERM ends the command through the same unwinding as Ctrl-C: every ``finally`` runs (temporary
    files are removed), then the exit code the shell expects for a terminated process."""
    raise SystemExit(128 + signum)


if __name__ == "__main__":
    main()
