"""A Dask cluster for cgbg-bench: parse ``scheduler``, connect, map a function over items in order.

``scheduler`` is ``local:N`` (a ``LocalCluster`` of N single-threaded workers started here and
closed afterwards) or the address of a running scheduler (``tcp://host:8786`` or ``host:8786``).
Dask is an optional extra (``pip install 'cgbg-bench[dask]'``): nothing imports it until a
scheduler is used, and without it :func:`require_dask` raises :class:`MissingExtra`.

What runs on a worker is cgbg-bench's own code, sent by reference (the worker needs the same
cgbg-bench installed); a submitted model only ever runs in a confined child process there
(:mod:`cgbg_bench.confine`), exactly as in a single process.
"""

from __future__ import annotations

import contextlib
import logging
import re
from dataclasses import dataclass
from typing import Any, Callable, Iterator, Sequence

from cgbg_bench.errors import MissingExtra, SchedulerError

__all__ = ["Scheduler", "parse_scheduler", "require_dask", "connect", "map_ordered", "worker_device",
           "worker_address", "INSTALL_HINT"]

INSTALL_HINT = "pip install 'cgbg-bench[dask]'"

#: Seconds to wait for a scheduler at an address before giving up.
CONNECT_TIMEOUT_S = 10.0

_ADDRESS = re.compile(r"^(?:(tcp|tls|ws|wss)://)?(\[[0-9A-Fa-f:.]+\]|[A-Za-z0-9_.-]+):(\d{1,5})$")


@dataclass(frozen=True)
class Scheduler:
    """A parsed ``scheduler``: ``n_workers`` for a local cluster, else ``address``."""

    n_workers: int | None = None
    address: str | None = None

    def __str__(self) -> str:
        return f"local:{self.n_workers}" if self.address is None else self.address


def parse_scheduler(value: str, name: str = "scheduler") -> Scheduler:
    """``local:N`` (N >= 1) or ``[tcp://]host:port``; anything else raises SchedulerError naming ``name``."""
    text = str(value).strip()
    hint = "use local:N (N workers on this machine) or a scheduler address such as tcp://host:8786"
    if text == "local" or text.startswith("local:"):  # a host named local is local:N; localhost:PORT is an address
        _, sep, n = text.partition(":")
        if not sep or not (n.isascii() and n.isdigit()) or int(n) < 1:
            raise SchedulerError(f"{name} {value!r}: local needs a worker count of at least 1, e.g. local:2; "
                                 f"{hint}")
        return Scheduler(n_workers=int(n))
    match = _ADDRESS.match(text)
    if match is None:
        raise SchedulerError(f"{name} {value!r} is neither local:N nor a host:port address; {hint}")
    port = int(match.group(3))
    if not 0 < port < 65536:
        raise SchedulerError(f"{name} {value!r}: port {port} is not in 1..65535; {hint}")
    protocol = match.group(1) or "tcp"
    return Scheduler(address=f"{protocol}://{match.group(2)}:{port}")


def require_dask():
    """The ``distributed`` module, or MissingExtra naming the extra to install."""
    try:
        import distributed
    except ImportError as exc:
        raise MissingExtra(f"running on a Dask cluster needs dask and distributed ({exc}); install them with "
                           f"{INSTALL_HINT}") from None
    return distributed


@contextlib.contextmanager
def connect(scheduler, *, processes: bool = True, quiet: bool = True) -> Iterator[Any]:
    """A ``distributed.Client`` for ``scheduler`` (text, :class:`Scheduler`, or a Client, used as it is).

    ``local:N`` starts a LocalCluster of N workers with one thread each (``processes``: worker
    processes, else threads of this process), without a dashboard, and closes it on exit.
    ``quiet``: Dask's own log lines below WARNING are dropped while connected.
    """
    distributed = require_dask()
    if isinstance(scheduler, distributed.Client):
        yield scheduler
        return
    spec = scheduler if isinstance(scheduler, Scheduler) else parse_scheduler(scheduler)
    with _quiet_dask(quiet):
        if spec.address is None:
            with distributed.LocalCluster(n_workers=spec.n_workers, threads_per_worker=1, processes=processes,
                                          dashboard_address=None) as cluster, distributed.Client(cluster) as client:
                yield client
            return
        try:
            client = distributed.Client(spec.address, timeout=CONNECT_TIMEOUT_S)
        except (OSError, TimeoutError) as exc:
            raise SchedulerError(f"no Dask scheduler answered at {spec.address} within {CONNECT_TIMEOUT_S:g} s "
                                 f"({type(exc).__name__}); start one there (dask scheduler, then dask worker "
                                 f"{spec.address}) or give local:N") from None
        with client:
            yield client


@contextlib.contextmanager
def _quiet_dask(quiet: bool) -> Iterator[None]:
    logger = logging.getLogger("distributed")
    level = logger.level
    if quiet:
        logger.setLevel(max(level, logging.WARNING))
    try:
        yield
    finally:
        logger.setLevel(level)


def map_ordered(fn: Callable, items: Sequence, client, *, on_result: Callable[[int, Any], None] | None = None,
                **kwargs) -> list:
    """``[fn(item, **kwargs) for item in items]``, each call a task of its own on ``client``'s workers.

    All calls are submitted at once and run in parallel; results are collected in the order of
    ``items``, and ``on_result(i, result)`` is called in that order as soon as result i and those
    before it are in. A call that raised re-raises here (the first in order, as in a loop), after
    the calls still running were cancelled.
    """
    futures = [client.submit(fn, item, pure=False, **kwargs) for item in items]
    results: list = []
    try:
        for i, future in enumerate(futures):
            results.append(future.result())
            if on_result is not None:
                on_result(i, results[i])
    except BaseException:
        client.cancel(futures)
        raise
    return results


def worker_device(requested: str | None) -> str:
    """The torch device of work run on this Dask worker.

    ``cpu`` or ``cuda:N`` are used as given. ``cuda`` or None (the default device) give the GPU
    of this worker when the worker has CUDA: ``cuda:K`` with K = worker number modulo the GPU
    count for the numbered workers of ``local:N``, else ``cuda`` (start one worker per GPU, each
    with its own ``CUDA_VISIBLE_DEVICES``). Without CUDA, None gives ``cpu``.
    """
    if requested not in (None, "cuda"):
        return requested
    import torch

    if not torch.cuda.is_available():
        return "cpu" if requested is None else requested
    count = torch.cuda.device_count()
    try:
        from distributed import get_worker

        name = get_worker().name
    except (ImportError, ValueError):  # not on a worker
        name = None
    if count > 1 and isinstance(name, int):
        return f"cuda:{name % count}"
    return "cuda"


def worker_address() -> str:
    """The address of the Dask worker running this code, or "this process" outside a worker."""
    try:
        from distributed import get_worker

        return str(get_worker().address)
    except (ImportError, ValueError):
        return "this process"
