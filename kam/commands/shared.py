"""What every command shares: the console, failing with one clear line, and the settings."""

from __future__ import annotations

from pathlib import Path
from typing import Any, NoReturn, TypeVar

import typer
from pydantic import ValidationError
from rich.console import Console
from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn

from kam.features.settings import StoreSettings

console = Console(stderr=True)

S = TypeVar("S", bound=StoreSettings)


def fail(message: str) -> NoReturn:
    """Print ``message`` as the command's one error line and exit with code 2."""
    # one line however long: a path broken across lines cannot be copied
    console.print(f"[bold red]error:[/] {message}", soft_wrap=True)
    raise typer.Exit(code=2)


def invalid(err: ValidationError) -> str:
    """A settings error in one line per field: which setting, and what is wrong with it."""
    return "; ".join(
        f"setting {'.'.join(str(p) for p in e['loc']) or '?'}: "
        f"{str(e['msg']).removeprefix('Value error, ')}"
        for e in err.errors()
    )


def load_settings(kind: type[S], data: Path | None = None, **options: Any) -> S:
    """The command's settings: ``kind``'s sources, then ``--data`` and the other options."""
    try:
        return kind().override(**options).for_data(data)
    except ValidationError as err:
        fail(invalid(err))


def progress_bar() -> Progress:
    """A transient progress bar on the console (counts and elapsed time)."""
    return Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        TextColumn("{task.completed}/{task.total}"),
        TimeElapsedColumn(),
        console=console,
        transient=True,
    )
