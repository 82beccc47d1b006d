"""Progress display for long work: rich bars on a terminal, plain log lines otherwise, or nothing.

The downloader, packer and loader report through :class:`Progress`; they never print.
"""

from __future__ import annotations

import sys
import time
from typing import TYPE_CHECKING, Protocol, TextIO

from .errors import human_bytes

if TYPE_CHECKING:  # rich is loaded only for a terminal's bars
    from rich.console import Console
    from rich.progress import TaskID


class Progress(Protocol):
    def begin(self, what: str, total_items: int, total_bytes: int | None) -> None: ...
    def start(self, key: str, label: str, size: int | None) -> None: ...
    def advance(self, key: str, n: int) -> None: ...
    def finish(self, key: str, ok: bool, note: str = "") -> None: ...
    def end(self) -> None: ...


class NullProgress:
    def begin(self, what: str, total_items: int, total_bytes: int | None) -> None:
        pass

    def start(self, key: str, label: str, size: int | None) -> None:
        pass

    def advance(self, key: str, n: int) -> None:
        pass

    def finish(self, key: str, ok: bool, note: str = "") -> None:
        pass

    def end(self) -> None:
        pass


class LogProgress:
    """A summary line at most every ``interval`` seconds, every failure, and one line per finished
    item when there are few (``itemised``)."""

    def __init__(self, stream: TextIO | None = None, interval: float = 5.0, itemised: int = 50) -> None:
        self.stream = stream or sys.stderr
        self.interval = interval
        self.itemised = itemised
        self.what = ""
        self.total_items = 0
        self.total_bytes: int | None = None
        self.done_items = 0
        self.done_bytes = 0
        self.t0 = time.monotonic()
        self.last = self.t0

    def _say(self, text: str) -> None:
        print(text, file=self.stream, flush=True)

    def begin(self, what: str, total_items: int, total_bytes: int | None) -> None:
        self.what, self.total_items, self.total_bytes = what, total_items, total_bytes
        self.done_items = self.done_bytes = 0
        self.t0 = self.last = time.monotonic()
        size = f", {human_bytes(total_bytes)}" if total_bytes else ""
        self._say(f"{what}: {total_items} item(s){size}")

    def start(self, key: str, label: str, size: int | None) -> None:
        pass

    def advance(self, key: str, n: int) -> None:
        self.done_bytes += n
        now = time.monotonic()
        if now - self.last >= self.interval:
            self.last = now
            rate = self.done_bytes / max(now - self.t0, 1e-9)
            self._say(
                f"{self.what}: {self.done_items}/{self.total_items} item(s), "
                f"{human_bytes(self.done_bytes)} at {human_bytes(rate)}/s"
            )

    def finish(self, key: str, ok: bool, note: str = "") -> None:
        self.done_items += 1
        if not ok or self.total_items <= self.itemised:  # big jobs: failures and the periodic summary only
            status = "ok" if ok else "FAILED"
            self._say(f"  [{self.done_items}/{self.total_items}] {status} {key}{' ' + note if note else ''}")

    def end(self) -> None:
        done = f"{self.done_items} item(s), {human_bytes(self.done_bytes)}"
        self._say(f"{self.what}: done, {done} {took(self.t0, self.done_bytes)}")


def took(t0: float, done: int) -> str:
    """``in 3.2s (118.0 MiB/s)``; below 0.1 s the milliseconds and no rate (a rate over a few
    milliseconds says nothing true)."""
    dt = time.monotonic() - t0
    if dt < 0.1:
        return f"in {dt * 1000:.0f} ms"
    return f"in {dt:.1f}s ({human_bytes(done / dt)}/s)"


class RichProgress:
    """Overall bytes, rate and ETA, plus one bar per active item."""

    def __init__(self, console: Console | None = None) -> None:
        from rich.console import Console
        from rich.progress import BarColumn, DownloadColumn, TextColumn, TimeRemainingColumn, TransferSpeedColumn
        from rich.progress import Progress as RichBar

        self.bar = RichBar(
            TextColumn("{task.description}", justify="left"),
            BarColumn(),
            DownloadColumn(),
            TransferSpeedColumn(),
            TimeRemainingColumn(),
            console=console or Console(stderr=True),
            transient=False,
        )
        self.overall: TaskID | None = None
        self.tasks: dict[str, TaskID] = {}
        self.done = 0
        self.total_items = 0
        self.what = ""

    def begin(self, what: str, total_items: int, total_bytes: int | None) -> None:
        self.what, self.total_items, self.done = what, total_items, 0
        self.bar.start()
        self.overall = self.bar.add_task(f"{what} 0/{total_items}", total=total_bytes or None)

    def start(self, key: str, label: str, size: int | None) -> None:
        short = label if len(label) <= 50 else "…" + label[-49:]
        self.tasks[key] = self.bar.add_task(f"  {short}", total=size)

    def advance(self, key: str, n: int) -> None:
        if key in self.tasks:
            self.bar.advance(self.tasks[key], n)
        if self.overall is not None:
            self.bar.advance(self.overall, n)

    def finish(self, key: str, ok: bool, note: str = "") -> None:
        self.done += 1
        task = self.tasks.pop(key, None)
        if task is not None:
            self.bar.remove_task(task)
        if not ok:
            self.bar.console.print(f"[red]FAILED[/red] {key}: {note}")
        if self.overall is not None:
            self.bar.update(self.overall, description=f"{self.what} {self.done}/{self.total_items}")

    def end(self) -> None:
        self.bar.stop()


def make_progress(quiet: bool, stream: TextIO | None = None) -> Progress:
    if quiet:
        return NullProgress()
    stream = stream or sys.stderr
    if stream.isatty():
        return RichProgress()
    return LogProgress(stream)
