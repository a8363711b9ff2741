"""What every `vconv` command shares: one-line errors instead of tracebacks, and option parsing helpers."""

from __future__ import annotations

import functools
from typing import Callable, Optional, TypeVar

import typer

from vconv.errors import VconvError

F = TypeVar("F", bound=Callable[..., object])


def fail(message: str, code: int = 1) -> None:
    typer.echo(f"error: {message}", err=True)
    raise typer.Exit(code)


def friendly_errors(func: F) -> F:
    """Turn VconvError (and Ctrl-C) into a one-line message and a non-zero exit."""

    @functools.wraps(func)
    def wrapper(*args, **kwargs):
        try:
            return func(*args, **kwargs)
        except VconvError as exc:
            fail(str(exc).splitlines()[0] if str(exc) else type(exc).__name__)
        except KeyboardInterrupt:
            typer.echo("interrupted", err=True)
            raise typer.Exit(130) from None
        except MemoryError:
            fail("out of memory; use shorter inputs or fewer workers")

    return wrapper  # type: ignore[return-value]


def split_list(value: Optional[str]) -> Optional[list[str]]:
    if not value:
        return None
    return [s.strip() for s in value.split(",") if s.strip()]
