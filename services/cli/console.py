"""The CLI's output: text that does not depend on the terminal it lands in.

- Messages are never soft-wrapped (a long line stays one line, whatever ``COLUMNS`` says), and
  when the output is not a terminal (a pipe, a file, a test runner) tables and panels are laid
  out at a fixed width, so scripts and tests read the same text on every machine.
- Usage errors are click's plain one-line ``Error: ...``, not Typer's rich panel, which wraps
  its message at the terminal's width.
"""

from __future__ import annotations

from typing import Any

import typer
from rich.console import Console

#: Layout width for tables and panels when the output is not a terminal.
PIPE_WIDTH = 120


def make_console(*, stderr: bool = False) -> Console:
    """A console for stdout (or stderr) that never wraps messages at the terminal's width."""
    console = Console(stderr=stderr, soft_wrap=True)
    if not console.is_terminal:
        console.width = PIPE_WIDTH
    return console


def make_app(**options: Any) -> typer.Typer:
    """A Typer app (or sub-app) of the CLI: plain help and one-line usage errors."""
    return typer.Typer(rich_markup_mode=None, **options)
