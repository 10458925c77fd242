"""The one progress display of the command line: a tqdm bar on a terminal, plain lines in a log.

    from cgbg_bench.progress import progress

    with progress(total=200, desc="training", unit="epoch") as bar:
        for epoch in range(200):
            ...
            bar.update(1, note=f"val RMSE {rmse:.1f}")

On a terminal (stderr is a TTY) it is a tqdm bar with the elapsed time and an estimate of
the time left. When stderr is not a terminal (a log file, a pipe, CI) no carriage returns
are written: one plain line per ``every_s`` seconds (and a last one), each with the count,
the elapsed time and the estimate. ``delay_s`` keeps quick work quiet. ``CGBG_BENCH_PROGRESS``
overrides the choice: ``bar``, ``lines`` or ``off``.

Use it for every progress display (energies, simulations, training), so that all of them
behave alike in a terminal and in a log.
"""

from __future__ import annotations

import os
import sys
import time

__all__ = ["progress", "mode", "format_duration", "Progress"]

MODES = ("bar", "lines", "off")


def mode(stream=None) -> str:
    """'bar' on a terminal, else 'lines'; ``$CGBG_BENCH_PROGRESS`` (bar, lines, off) wins."""
    env = os.environ.get("CGBG_BENCH_PROGRESS", "").strip().lower()
    if env in MODES:
        return env
    stream = sys.stderr if stream is None else stream
    try:
        if not stream.isatty():
            return "lines"
    except (AttributeError, ValueError):  # closed or not a real stream
        return "lines"
    try:
        width = os.get_terminal_size(stream.fileno()).columns
    except (AttributeError, ValueError, OSError):  # a terminal-like stream without a size: tqdm picks one
        return "bar"
    return "bar" if width > 0 else "lines"  # a pseudo-terminal of width 0 would get an empty bar


def format_duration(seconds: float) -> str:
    """12 s, 4:05 (min:s), 1:02:03 (h:min:s)."""
    if not seconds == seconds or seconds == float("inf"):  # nan, inf
        return "?"
    s = int(round(max(seconds, 0.0)))
    if s < 60:
        return f"{s} s"
    h, rest = divmod(s, 3600)
    m, s = divmod(rest, 60)
    return f"{h}:{m:02d}:{s:02d}" if h else f"{m}:{s:02d}"


class Progress:
    """Counts done out of ``total``; shows them as a bar, as plain lines, or not at all.

    ``update(n, note=...)`` advances by n; ``note`` (e.g. the last validation error) is shown
    beside the count. ``bound``: the total is an upper bound (training that may stop early),
    so the estimate is the time left at most. Use it as a context manager, or call close().
    """

    def __init__(self, total: int | None, *, desc: str = "", unit: str = "it", stream=None,
                 display: str | None = None, every_s: float = 10.0, bound: bool = False, delay_s: float = 0.0):
        self.total, self.desc, self.unit, self.bound = total, desc, unit, bound
        self.stream = sys.stderr if stream is None else stream
        self.display = mode(self.stream) if display is None else display
        if self.display not in MODES:
            from cgbg_bench.errors import UsageError

            raise UsageError(f"display must be one of {MODES}, got {self.display!r}")
        self.every_s, self.delay_s = float(every_s), float(delay_s)
        self.n, self.note = 0, ""
        self.t0 = time.perf_counter()
        self._last_line = -float("inf")
        self._emitted: tuple | None = None
        self._closed = False
        self._bar = None
        if self.display == "bar":
            from tqdm.auto import tqdm

            self._bar = tqdm(total=total, desc=desc, unit=f" {unit}", file=self.stream, leave=True,
                             dynamic_ncols=True, delay=self.delay_s)

    # --------------------------------------------------------------------------------
    def elapsed(self) -> float:
        return time.perf_counter() - self.t0

    def remaining(self) -> float:
        """Estimated seconds left (the mean time per unit so far times the units left); nan before the first."""
        if not self.n or self.total is None:
            return float("nan")
        return self.elapsed() / self.n * max(self.total - self.n, 0)

    def line(self) -> str:
        """The plain-text state: 'desc: 12/200 epochs, 0:31 elapsed, ~8:05 left (note)'; once closed,
    'desc: done after 12/200 epochs, 0:31 elapsed (note)'."""
        count = f"{self.n}/{self.total}" if self.total is not None else f"{self.n}"
        done = "done after " if self._closed else ""
        text = f"{self.desc}: {done}{count} {self.unit}s, {format_duration(self.elapsed())} elapsed"
        if self.total is not None and self.n < self.total and not self._closed:
            text += f", {'at most ' if self.bound else ''}~{format_duration(self.remaining())} left"
        return text + (f" ({self.note})" if self.note else "")

    def update(self, n: int = 1, *, note: str | None = None) -> None:
        self.n += n
        if note is not None:
            self.note = note
        if self._bar is not None:
            if note is not None:
                self._bar.set_postfix_str(note, refresh=False)
            self._bar.update(n)
        elif self.display == "lines":
            now = time.perf_counter()
            if now - self.t0 < self.delay_s:
                return  # quick work shows nothing
            if now - self._last_line >= self.every_s or (self.total is not None and self.n >= self.total):
                self._emit()
                self._last_line = now

    def update_to(self, done: int, *, note: str | None = None) -> None:
        """Advance to ``done`` in all (for loops that count what they finished)."""
        self.update(done - self.n, note=note)

    def _emit(self) -> None:
        self.stream.write(self.line() + "\n")
        self.stream.flush()
        self._emitted = (self.n, self.note)

    def close(self, note: str | None = None) -> None:
        """End the display; in lines mode, a last line unless the last update wrote it."""
        if self._closed:
            return
        self._closed = True
        if note is not None:
            self.note = note
        if self._bar is not None:
            if note is not None:
                self._bar.set_postfix_str(note, refresh=False)
            self._bar.close()
        elif self.display == "lines" and self.n and self.elapsed() >= self.delay_s and (
                self._emitted != (self.n, self.note) or (self.total is not None and self.n < self.total)):
            self._emit()  # the last state; one that ends short of the total (early stop) says "done"

    def __enter__(self) -> "Progress":
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def progress(total: int | None = None, *, desc: str = "", unit: str = "it", stream=None,
             display: str | None = None, every_s: float = 10.0, bound: bool = False, delay_s: float = 0.0,
             enabled: bool = True) -> Progress:
    """A :class:`Progress`; ``enabled=False`` shows nothing (for library callers that want silence);
    ``delay_s``: show nothing until that many seconds have passed (quick work stays quiet)."""
    return Progress(total, desc=desc, unit=unit, stream=stream, display=display if enabled else "off",
                    every_s=every_s, bound=bound, delay_s=delay_s)
