"""How the demo tells its story on a terminal: sections, lines stamped with the seconds since
the section began, verbatim kubectl output, check results, and a spinner while it waits.

Plain mode (a pipe, a CI log, ``--non-interactive``) prints whole lines only, so the output
reads the same in a file as on screen; the spinner and colours are for a terminal.
"""

from __future__ import annotations

import time
from typing import TextIO

SPINNER = "|/-\\"
BOLD, DIM, GREEN, RED, RESET = "\x1b[1m", "\x1b[2m", "\x1b[32m", "\x1b[31m", "\x1b[0m"
CLEAR_LINE = "\r\x1b[K"


class Timeline:
    def __init__(self, out: TextIO, *, interactive: bool) -> None:
        self.out = out
        self.interactive = interactive
        self._origin = time.monotonic()
        self._spinning = False
        self._frame = 0

    @property
    def elapsed(self) -> float:
        """Seconds since the current section began."""
        return time.monotonic() - self._origin

    def section(self, title: str) -> None:
        """A new part of the story; its lines count time from now."""
        self._write(f"\n{self._style(BOLD, title)}")
        self._origin = time.monotonic()

    def say(self, text: str) -> None:
        """An explanation, not something that happened at a moment."""
        self._write(f"  {text}")

    def mark(self, text: str) -> None:
        """Something that happened now."""
        self._write(f"  {self.elapsed:5.1f}s  {text}")

    def block(self, text: str, indent: int = 10) -> None:
        """Output of a command, shown as the user would see it."""
        pad = " " * indent
        self._write("\n".join(f"{pad}{line}" for line in text.rstrip("\n").splitlines()))

    def result(self, held: bool, claim: str, evidence: str) -> None:
        label = self._style(GREEN, "[ok]    ") if held else self._style(RED, "[FAILED]")
        self._write(f"  {label} {claim}" + (f" ({evidence})" if evidence else ""))

    def waiting(self, what: str) -> None:
        """Show that the demo is waiting (a spinner on a terminal; nothing in plain mode)."""
        if not self.interactive:
            return
        self._frame = (self._frame + 1) % len(SPINNER)
        spinner = f"{SPINNER[self._frame]} {what} ({self.elapsed:.1f}s)"
        self.out.write(f"{CLEAR_LINE}  {self._style(DIM, spinner)}")
        self.out.flush()
        self._spinning = True

    def _style(self, style: str, text: str) -> str:
        return f"{style}{text}{RESET}" if self.interactive else text

    def _write(self, text: str) -> None:
        if self._spinning:
            self.out.write(CLEAR_LINE)
            self._spinning = False
        self.out.write(text + "\n")
        self.out.flush()
