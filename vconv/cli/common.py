"""What every `vconv` command shares: exit codes, one-line errors instead of tracebacks, batch reports.

Exit codes (the README's "Errors and exit codes" and ``vconv --help`` list the same):

* :data:`EXIT_OK` ``0``: everything asked for was done;
* :data:`EXIT_ERROR` ``1``: an error the user can act on (a :class:`~vconv.errors.VconvError`: bad input
  file, bad config, bad path, an existing output without ``--force``) - or every file of a batch failed;
* :data:`EXIT_USAGE` ``2``: a usage error (unknown option, missing argument, a value of the wrong type),
  Click's own convention;
* :data:`EXIT_PARTIAL` ``3``: some files of a batch failed (listed on stderr with their reasons), the rest
  were done.

Every error is one line ``error: <what>: <why>`` on stderr, usage errors included (:class:`OneLineErrorsGroup`).
"""

from __future__ import annotations

import errno
import functools
import gc
import re
import sys
import time
from typing import Any, Callable, Iterable, NoReturn, Optional, Sequence, TypeVar

import typer
from typer.core import TyperGroup

from vconv.errors import VconvError, printable
from vconv.fileio import discard_unwritten

F = TypeVar("F", bound=Callable[..., object])

EXIT_OK = 0
EXIT_ERROR = 1
EXIT_USAGE = 2
EXIT_PARTIAL = 3
EXIT_INTERRUPTED = 130  # the shell's convention for Ctrl-C

TARGET_MATCH_HELP = ("Move the converted spectrum onto the target's: meanstd (the target's band shape at the converted "
                     "level, and the spread of each band's slow contour above 600 Hz; default), mean (the shape only), or off "
                     "(the model's output as is).")
PRECISION_HELP = ("Arithmetic of the networks (and of a stream's content front-end): auto (bfloat16 on a CPU that "
                  "computes it natively, float32 otherwise; the default), float32, or bfloat16.")
FIT_VOICE_HELP = ("Tune the speaker embedding on the target references for STEPS steps before converting, so the "
                  "network renders a voice it never heard rather than its nearest training voice (30 steps, once per target: "
                  "about 0.7 s on two idle CPU cores, about 0.8 s beside another busy process, up to tens of seconds on a heavily "
                  "loaded machine, docs/BENCHMARKS.md; a second conversion to the same references takes the fitted voice "
                  "from the cache; 0 = off, the default; 30 is what "
                  "recipes/voices/MODEL_HISTORY.md measures).")
THREADS_HELP = ("Compute threads (default: one per core). Idle threads sleep rather than spin (OMP_WAIT_POLICY=PASSIVE "
                "unless you set it), so a busy machine slows vconv in proportion; fewer threads leave cores to other work.")
NO_CACHE_HELP = ("Do not read or write the cache of prepared voices (~/.cache/vconv/voices, or $XDG_CACHE_HOME/vconv/voices; "
                 "safe to delete), which spares a second conversion to the same references the target's preparation "
                 "(and the fit, with --fit-voice).")


PITCH_SHIFT_HELP = ("Transpose the converted voice by this many semitones (-24..24; e.g. 12 = an octave up), on top of "
                    "the register --pitch-register gives it. Needs a model trained with the pitch path, as the shipped one "
                    "is; with --no-harmonics the output moves only part of the way.")
PITCH_REGISTER_HELP = ("Whose pitch level the output speaks at: target (the target references' register: a converted voice "
                       "at its own pitch; the default) or source (the source's kept: singing, same-speaker edits). The "
                       "melody is always the source's.")


ENHANCE_HELP = ("off|auto|on: take the room's late reverberation (WPE) and steady noise out of the recordings read whole (the "
                "source of a file conversion, the target references) before converting; auto (default): only of those a "
                "quick estimate places in a room, as `vconv info` warns of (a source longer than 20 s: judged once, on "
                "20 s from its first sound). docs/ROOMS.md measures it; on clean speech `on` costs words.")


def enhance_option() -> Any:
    """The ``--enhance off|auto|on`` option (:data:`ENHANCE_HELP`), the same on every converting command."""
    return typer.Option("auto", "--enhance", metavar="off|auto|on", help=ENHANCE_HELP)
HARMONICS_HELP = ("Write the harmonics of the output F0 (the source's melody in the output register) into the converted "
                  "spectrum before the vocoder: the melody, the voicing and a --pitch-shift land, and the output is "
                  "clearer (recipes/voices/MODEL_HISTORY.md, \"Harmonic excitation in the mel domain\"). On by default "
                  "for a model with the pitch path; --no-harmonics gives the decoder's spectrum as it is.")


def pitch_options() -> tuple[Any, Any]:
    """The ``--pitch-shift`` and ``--pitch-register`` options of the commands that convert (one definition)."""
    return (typer.Option(0.0, "--pitch-shift", metavar="SEMITONES", help=PITCH_SHIFT_HELP),
            typer.Option("target", "--pitch-register", metavar="target|source", help=PITCH_REGISTER_HELP))


def conversion_settings(**values: Any) -> Any:
    """The command's :class:`~vconv.inference.settings.ConversionSettings` of its option ``values``, checked before any
    model loads; errors name the options (``--target-match``, ``--fit-voice``, ...)."""
    from vconv.inference.settings import CLI_NAMES, ConversionSettings

    return ConversionSettings(**values, names=CLI_NAMES)


def threads_option(help_text: str = THREADS_HELP) -> Any:
    """The ``--threads N`` option every computing command declares (one definition, one validation); a command
    whose default differs says so in ``help_text``."""
    return typer.Option(None, "--threads", min=1, max=256, metavar="N", help=help_text)


SERVE_NO_CACHE_HELP = ("Do not read or write the cache of fitted voices (~/.cache/vconv/voices, or "
                       "$XDG_CACHE_HOME/vconv/voices; safe to delete), which spares a second --fit-voice conversion to the "
                       "same upload the fit (the server keeps no unfitted upload there).")


def no_cache_option(help_text: str = NO_CACHE_HELP) -> Any:
    return typer.Option(False, "--no-cache", help=help_text)


EXIT_CODES_HELP = (
    f"Exit codes: {EXIT_OK} success; {EXIT_ERROR} error you can act on (bad file, config or path; one line "
    f"on stderr); {EXIT_USAGE} usage error (bad option or argument); {EXIT_PARTIAL} some files of a batch "
    "failed (listed on stderr), the rest done."
)


def fail(message: str, code: int = EXIT_ERROR) -> NoReturn:
    typer.echo(f"error: {printable(message)}", err=True)
    raise typer.Exit(code)


def one_line(exc: BaseException) -> str:
    """An exception's message on one line (its type name when it has none): a file name's own control
    characters are escaped, not printed (:func:`printable`); a message of several lines keeps its first."""
    text = str(exc).strip()
    if not text:
        return type(exc).__name__
    if isinstance(exc, VconvError):  # ours: one line by construction, so any line break is a file name's
        return printable(text)
    return printable(text.splitlines()[0])


def say(line: object) -> None:
    """Print one line on standard output through :func:`printable`: a path in it (an output folder, a bundle, a
    file of a batch) may hold bytes that are not UTF-8, which would end the command in a UnicodeEncodeError, or a
    line break or control characters, which would forge a second line or garble the terminal."""
    echo_out(printable(str(line)))


def say_report(text: str) -> None:
    """Print a report of several lines on standard output, each through :func:`printable`. The names inside it
    are escaped where it is made (a corpus summary, a similarity table), before their own line breaks mix with
    the report's; this catches the rest."""
    echo_out("\n".join(printable(line) for line in text.split("\n")))


def echo_out(text: str) -> None:
    """Print ``text`` on standard output; one that cannot take it (``> /dev/full``, a full disk, a device error) is
    a one-line VconvError rather than a traceback. What it could not write is dropped
    (:func:`~vconv.fileio.discard_unwritten`), or the interpreter's own last flush would fail once more, print a
    warning and change the exit code. A pipe whose reader has gone (``| head``) stays a BrokenPipeError, which
    :func:`vconv.cli.main` ends quietly, as other tools do."""
    try:
        typer.echo(text)
    except BrokenPipeError:
        raise
    except OSError as exc:
        discard_unwritten(sys.stdout)
        reason = "no space left on the device" if exc.errno == errno.ENOSPC else f"could not write ({exc.strerror or exc})"
        raise VconvError(f"standard output: {reason}") from None


def friendly_errors(func: F) -> F:
    """Turn VconvError (and Ctrl-C) into a one-line message and a non-zero exit."""

    @functools.wraps(func)
    def wrapper(*args, **kwargs):
        try:
            return func(*args, **kwargs)
        except VconvError as exc:
            fail(one_line(exc))
        except KeyboardInterrupt:
            typer.echo("interrupted", err=True)
            raise typer.Exit(EXIT_INTERRUPTED) from None
        except MemoryError:
            fail("out of memory; use shorter inputs or fewer workers")
        except PermissionError as exc:
            # the inputs vconv reads are checked where they are read (audio, manifests, configs, bundles); a file or
            # folder those checks do not reach (a bundle's folder that cannot be listed) still gets one line and exit 1
            if exc.filename is None:
                raise
            fail(f"{exc.filename}: permission denied; check its permissions (and its folder's)")

    return wrapper  # type: ignore[return-value]


def report_failures(failures: Iterable[Any]) -> int:
    """List per-file failures (objects with ``path`` and ``reason``) on stderr as ``error: PATH: reason``,
    one line each; returns their count."""
    count = 0
    for bad in failures:
        typer.echo(f"error: {printable(str(bad.path))}: {printable(str(bad.reason))}", err=True)
        count += 1
    return count


def batch_exit_code(done: int, failed: int) -> int:
    """:data:`EXIT_OK` when nothing failed, :data:`EXIT_PARTIAL` when some did, :data:`EXIT_ERROR` when all did."""
    if not failed:
        return EXIT_OK
    return EXIT_PARTIAL if done else EXIT_ERROR


def finish_batch(done: int, failures: list[Any], *, allow_failures: bool = False) -> None:
    """End a batch command: failures to stderr, then the exit code of :func:`batch_exit_code`
    (:data:`EXIT_OK` anyway with ``allow_failures``, e.g. ``extract --allow-skips``)."""
    report_failures(failures)
    code = EXIT_OK if allow_failures else batch_exit_code(done, len(failures))
    if code:
        raise typer.Exit(code)


# Click's exception classes as Typer raises them: recent Typer releases vendor their own copy of Click, so
# they are found through Typer's public BadParameter rather than `import click`
_CLICK_CLASSES = {cls.__name__: cls for cls in typer.BadParameter.__mro__}
_ClickException: Any = _CLICK_CLASSES["ClickException"]  # a class found at run time (see above)
_UsageError = _CLICK_CLASSES["UsageError"]
_NoArgsIsHelp = getattr(sys.modules[_UsageError.__module__], "NoArgsIsHelpError", None)
_ANSI = re.compile(r"\x1b\[[0-9;]*m")


class OneLineErrorsGroup(TyperGroup):
    """The top-level command group: a usage error is one line on stderr too (exit code 2), not a framed panel."""

    def main(self, args: Optional[Sequence[str]] = None, prog_name: Optional[str] = None, complete_var: Optional[str] = None,
             standalone_mode: bool = True, windows_expand_args: bool = True, **extra: Any) -> Any:
        try:
            result = super().main(args, prog_name, complete_var, standalone_mode=False,
                                  windows_expand_args=windows_expand_args, **extra)
        except _ClickException as exc:
            if not standalone_mode:
                raise
            if _NoArgsIsHelp is not None and isinstance(exc, _NoArgsIsHelp):  # `vconv bundle` alone: its help
                exc.show()
                sys.exit(exc.exit_code)
            ctx = getattr(exc, "ctx", None)
            where = ctx.command_path if ctx is not None else "vconv"
            message = _ANSI.sub("", exc.format_message())  # Typer may colour option names
            typer.echo(f"error: {one_line(Exception(message))} (see `{where} --help`)", err=True)
            sys.exit(exc.exit_code)
        except typer.Abort:
            if not standalone_mode:
                raise
            typer.echo("interrupted", err=True)
            sys.exit(EXIT_INTERRUPTED)
        if not standalone_mode:
            return result
        # without standalone mode Click returns an Exit's code (ours, or 0 after --help) instead of exiting
        sys.exit(result if isinstance(result, int) else EXIT_OK)


def split_list(value: Optional[str]) -> Optional[list[str]]:
    if not value:
        return None
    return [s.strip() for s in value.split(",") if s.strip()]


PROGRESS_AFTER_SECONDS = 1.0  # a fit shorter than this shows no progress line


class FitProgress:
    """The fit's progress on stderr, once it has run :data:`PROGRESS_AFTER_SECONDS`: a line rewritten in place on a
    terminal, one line at the end otherwise (a log gets no carriage returns)."""

    def __init__(self) -> None:
        self.started: float | None = None

    def __call__(self, step: int, steps: int) -> None:
        now = time.perf_counter()
        if self.started is None or step == 1:
            self.started = now
        elapsed = now - self.started
        if elapsed < PROGRESS_AFTER_SECONDS:
            return
        line = f"fitting the voice: step {step}/{steps}, {elapsed:.1f} s"
        if sys.stderr.isatty():
            sys.stderr.write(f"\r{line}" + ("\n" if step == steps else ""))
            sys.stderr.flush()
        elif step == steps:
            sys.stderr.write(line + "\n")


# A conversion's start imports torch and builds its networks: hundreds of thousands of objects, over which the cyclic
# garbage collector made three full passes (130-145 ms of the example's ~1.5 s `vconv convert`). The commands that load
# one converter hold it until the model is loaded (load_converter), then freeze what exists (never scanned again) and
# let it run on what comes after. What the start left as cyclic garbage is frozen with the rest and never freed:
# ~7,000 small objects (functions, tuples, types; no tensor), ~0.7 MB, once; collecting them first would take ~75 ms.
HELD_COLLECTION_COMMANDS = ("convert", "voice", "stream", "serve")


def hold_collection(argv: Sequence[str]) -> None:
    """Turn the cyclic garbage collector off when ``argv`` runs one of :data:`HELD_COLLECTION_COMMANDS` (from the
    entry point, before anything imports torch); :func:`release_collection` turns it back on."""
    if argv[1:2] and argv[1] in HELD_COLLECTION_COMMANDS:
        gc.disable()


def release_collection() -> None:
    """The start is over: what exists joins the permanent generation and the collector runs again (nothing is done
    when :func:`hold_collection` did not hold it: an API call, a test)."""
    if not gc.isenabled():
        gc.freeze()
        gc.enable()


def load_converter(model: Any, settings: Any, *, no_cache: bool = False, fitted_only: bool = False) -> Any:
    """:func:`vconv.load` of ``model`` with ``settings`` (:func:`conversion_settings`) for a CLI command: unless
    ``no_cache``, with the cache of prepared voices (:class:`~vconv.inference.voice_file.VoiceCache`; ``fitted_only``:
    of fitted ones only), and with a voice fit, the fit's progress line."""
    from vconv.inference.converter import load
    from vconv.inference.voice_file import VoiceCache

    converter = load(model, settings)
    release_collection()  # held by hold_collection since the entry point
    converter.voice_cache = None if no_cache else VoiceCache(fitted_only=fitted_only)
    if converter.fit_steps:
        converter.fit_progress = FitProgress()
    return converter
