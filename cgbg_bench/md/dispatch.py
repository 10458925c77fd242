"""Run the MD walkers of a task build (one ``cgbg-bench md run`` each) as long-running tasks on a Dask cluster.

A walker is the argument list of one ``md run``. Each becomes one task (never cached, never run
twice at once by Dask) that runs ``python -m cgbg_bench md run ARGS`` as a subprocess on a
worker, with that worker's Python, in the folder the dispatch was started from (so the run
folders must be on a file system the workers share, or given as absolute paths that exist
there). ``md run`` continues from its run folder's checkpoint, so a walker whose worker was
lost is rerun by Dask on another worker and goes on from its last chunk; a walker whose run
folder is still being written by another process fails with ``RunLocked`` (exit code 2).
"""

from __future__ import annotations

import os
import shlex
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Sequence

from cgbg_bench.errors import UsageError

__all__ = ["MD_RUN", "WalkerResult", "read_walkers", "run_walker", "dispatch_walkers"]

#: What a walker runs, after the worker's Python: its arguments follow.
MD_RUN = ("-m", "cgbg_bench", "md", "run")

_PREFIXES = (("cgbg-bench", "md", "run"), ("md", "run"))


@dataclass(frozen=True)
class WalkerResult:
    """How one walker ended: ``returncode`` (None: it did not start), where, and its output's last lines."""

    args: tuple[str, ...]
    returncode: int | None
    worker: str
    output_tail: str

    @property
    def ok(self) -> bool:
        return self.returncode == 0


def read_walkers(path: str | os.PathLike) -> list[list[str]]:
    """The walkers of a file: one ``md run`` argument list per line (shell quoting, ``#`` comments).

    A line may start with ``cgbg-bench md run`` or ``md run``; the rest are its arguments.
    """
    path = Path(path)
    try:
        text = path.read_text()
    except OSError as exc:
        raise UsageError(f"walkers {path}: cannot read it ({exc.strerror or exc}); give a text file with one "
                         "md run argument list per line") from None
    walkers = []
    for number, line in enumerate(text.splitlines(), 1):
        try:
            words = shlex.split(line, comments=True)
        except ValueError as exc:
            raise UsageError(f"walkers {path}, line {number}: {exc}; quote it as in a shell") from None
        if not words:
            continue
        for prefix in _PREFIXES:
            if tuple(words[:len(prefix)]) == prefix:
                words = words[len(prefix):]
                break
        if not words:
            raise UsageError(f"walkers {path}, line {number}: no md run arguments, e.g. --system ala2 "
                             "--solvent obc2 --ns 10 --seed 1 --out data/ala2/obc2-1")
        walkers.append(words)
    if not walkers:
        raise UsageError(f"walkers {path}: no walker in it; write one md run argument list per line")
    return walkers


def run_walker(args: Sequence[str], *, command: Sequence[str] = MD_RUN, cwd: str | None = None,
               log_dir: str | None = None, tail_chars: int = 4000) -> WalkerResult:
    """Run ``python COMMAND ARGS`` (this interpreter) to its end; the result says how it ended.

    ``log_dir``: also keep the walker's whole output there (a ``walker-*.log`` file, named at the
    top of the output tail); otherwise it goes to a temporary file that is removed.
    """
    from cgbg_bench.distributed import worker_address

    worker = worker_address()
    if cwd is not None and not Path(cwd).is_dir():
        return WalkerResult(tuple(args), None, worker, f"the folder {cwd} does not exist on worker {worker}; "
                            "dispatch from a folder the workers share, or use absolute paths")
    argv = [sys.executable, *command, *args]
    with tempfile.TemporaryDirectory(prefix="cgbg-bench-walker-") as tmp:
        log = Path(log_dir) if log_dir else Path(tmp)
        log.mkdir(parents=True, exist_ok=True)
        with tempfile.NamedTemporaryFile("w+b", dir=log, prefix="walker-", suffix=".log",
                                         delete=not log_dir) as out:
            try:
                proc = subprocess.run(argv, cwd=cwd, stdin=subprocess.DEVNULL, stdout=out,
                                      stderr=subprocess.STDOUT, check=False)
            except OSError as exc:
                return WalkerResult(tuple(args), None, worker, f"cannot start {argv[0]}: {exc}")
            out.seek(0, os.SEEK_END)
            out.seek(max(0, out.tell() - tail_chars))
            tail = out.read().decode(errors="replace")
            if log_dir:
                tail = f"[{out.name}]\n{tail}"
    return WalkerResult(tuple(args), proc.returncode, worker, tail)


def dispatch_walkers(walkers: Sequence[Sequence[str]], scheduler, *, command: Sequence[str] = MD_RUN,
                     cwd: str | None = None, log_dir: str | None = None,
                     on_result: Callable[[int, WalkerResult], None] | None = None) -> list[WalkerResult]:
    """Run every walker as a long-running task on ``scheduler`` (:func:`cgbg_bench.distributed.connect`);
    wait for all of them. ``on_result(i, result)`` is called as each ends (in the order they end).

    ``cwd``: the folder the walkers run in (default: this process's); ``log_dir`` (relative to
    ``cwd``): keep each walker's whole output there. Returns the results in walker order. A walker
    that fails does not stop the others.
    """
    from cgbg_bench.distributed import connect, require_dask

    distributed = require_dask()
    cwd = os.getcwd() if cwd is None else str(cwd)
    log_dir = None if log_dir is None else str(Path(cwd, log_dir))
    with connect(scheduler) as client:
        futures = [client.submit(run_walker, list(args), command=tuple(command), cwd=cwd, log_dir=log_dir,
                                 pure=False) for args in walkers]
        index = {f.key: i for i, f in enumerate(futures)}
        results: list[WalkerResult | None] = [None] * len(futures)
        try:
            for future in distributed.as_completed(futures):
                i = index[future.key]
                results[i] = future.result()
                if on_result is not None:
                    on_result(i, results[i])
        except BaseException:
            client.cancel(futures)
            raise
    return results  # type: ignore[return-value]
