"""Proposal banks generated on first use from shipped flow weights, cached, and fingerprinted.

A 10^6-sample bank is ~70 MB of floats: the repository ships the flow weights instead
(a few MB), and every user regenerates the same bank from the same seed. The first
generation of a full bank is checked against the fingerprint recorded in the task (mean and
standard deviation of log q, mean radius of gyration) before it is cached.

Every cached bank, whatever its size, has a sidecar ``<bank>.npz.json`` written (atomically)
after the bank: its size in bytes, sha256 and fingerprint. A cached bank is re-checked against
its sidecar on every load (and a full one against the task's fingerprint: the one its sidecar
recorded, since the bytes are those it was computed from), so a truncated, bit-flipped or
swapped cache is regenerated with a warning, never used. A bank cached before
sidecars existed is adopted if it is full size and matches the task's fingerprint, else
regenerated. Generation holds an exclusive lock (``<bank>.npz.lock``, fcntl), so two
processes that need the same bank generate it once.
"""

from __future__ import annotations

import contextlib
import datetime as _dt
import json
import logging
import zipfile
from pathlib import Path
from typing import Callable, Iterator

import numpy as np

from cgbg_bench._io import atomic_savez, atomic_write_text, sha256_file
from cgbg_bench.errors import DataError
from cgbg_bench.paths import cache_dir  # re-exported

__all__ = ["bank_cache_path", "bank_fingerprint", "cache_dir", "generated_bank", "store_bank", "GENERATORS"]

log = logging.getLogger(__name__)

SIDECAR_FORMAT = "cgbg-bench bank cache v1"


def _ic_flow(weights: Path, n: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    from cgbg_bench.flows.internal import ICFlow

    return ICFlow.load(weights).sample_bank(n, seed)


#: generator name -> f(weights path, n, seed) -> (positions float32, log_q float64)
GENERATORS: dict[str, Callable[[Path, int, int], tuple[np.ndarray, np.ndarray]]] = {"ic-flow": _ic_flow}


def bank_fingerprint(positions: np.ndarray, log_q: np.ndarray) -> dict[str, float]:
    """Summary statistics that identify a bank (float64, order-independent)."""
    x = np.asarray(positions, np.float64)
    centred = x - x.mean(axis=1, keepdims=True)
    rg = np.sqrt((centred**2).sum(-1).mean(-1))
    lq = np.asarray(log_q, np.float64)
    return {"mean_log_q": float(lq.mean()), "std_log_q": float(lq.std()), "mean_rg_nm": float(rg.mean())}


def _matches(fp: dict[str, float], expected: dict[str, float], rtol: float) -> list[str]:
    bad = []
    for key, want in expected.items():
        got = fp.get(key)
        if got is None or not abs(got - want) <= rtol * max(abs(want), 1e-12):
            bad.append(f"{key}: got {got!r}, expected {want!r}")
    return bad


def bank_cache_path(task, n_samples: int | None = None) -> Path:
    """Where the task's generated bank of ``n_samples`` (default: full size) is cached.

    Keyed by what the samples depend on, the flow's weights (sha256), the seed and the size, plus
    the task name; not by the task version, so a version that keeps the flow (a reference-only
    refresh) reuses the bank.
    """
    n = task.bank.n_samples if n_samples is None else int(n_samples)
    return cache_dir() / f"{task.name}-{task.proposal.sha256[:12]}-{task.bank.seed}-{n}.npz"


def _sidecar_path(path: Path) -> Path:
    return path.with_name(path.name + ".json")


@contextlib.contextmanager
def _locked(path: Path, exclusive: bool) -> Iterator[None]:
    """fcntl lock on ``<bank>.npz.lock`` (blocking); without a writable cache, no lock."""
    import fcntl

    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fh = open(path.with_name(path.name + ".lock"), "a+")
    except OSError as exc:
        log.debug("no lock for %s (%s)", path, exc)
        yield
        return
    try:
        fcntl.flock(fh, fcntl.LOCK_EX if exclusive else fcntl.LOCK_SH)
        yield
    finally:
        fh.close()  # releases the lock


def _check_cached(task, path: Path, n: int) -> tuple[np.ndarray, np.ndarray] | None:
    """The cached bank if it is present and verified; None (with a warning if damaged) if not."""
    spec = task.bank
    if not path.is_file():
        return None
    sidecar = _sidecar_path(path)
    record = None
    if sidecar.is_file():
        try:
            record = json.loads(sidecar.read_text())
            if not isinstance(record, dict) or record.get("format") != SIDECAR_FORMAT:
                raise ValueError("not a bank cache record")
        except (OSError, ValueError) as exc:
            log.warning("cached bank %s: its record %s is unreadable (%s): regenerating",
                        path, sidecar.name, exc)
            return None
        size = path.stat().st_size
        if record.get("bytes") != size or record.get("n_samples") != n:
            log.warning("cached bank %s is damaged (%d bytes, its record says %s): regenerating",
                        path, size, record.get("bytes"))
            return None
        if sha256_file(path) != record.get("sha256"):
            log.warning("cached bank %s is damaged (its sha256 differs from the one recorded when it "
                        "was written): regenerating", path)
            return None
    elif n != spec.n_samples:
        # A small bank cached before sidecars existed cannot be checked: make it again (cheap).
        log.warning("cached bank %s has no record (%s) to check it against: regenerating",
                    path, sidecar.name)
        return None
    try:
        with np.load(path) as z:
            positions, log_q = z["positions"], z["log_q"]
    except (OSError, KeyError, ValueError, EOFError, zipfile.BadZipFile) as exc:
        log.warning("cached bank %s is unreadable (%s: %s): regenerating", path, type(exc).__name__, exc)
        return None
    if len(positions) != n or len(log_q) != n:
        log.warning("cached bank %s holds %d samples, not %d: regenerating", path, len(positions), n)
        return None
    if n == spec.n_samples:
        # A bank whose bytes have the sha256 of its record has the fingerprint the record computed from
        # those very arrays when it was written: when that one matches the task's, computing it again
        # (~1.3 CPU-s per 10^6 samples) can only give it again.
        recorded = record.get("fingerprint") if record is not None else None
        if not (isinstance(recorded, dict) and all(isinstance(recorded.get(k), (int, float))
                                                   for k in spec.fingerprint)
                and not _matches(recorded, spec.fingerprint, spec.rtol)):
            problems = _matches(bank_fingerprint(positions, log_q), spec.fingerprint, spec.rtol)
        else:
            problems = []
        if problems:
            log.warning("cached bank %s does not match the task's fingerprint (%s): regenerating",
                        path, "; ".join(problems))
            return None
        if record is None:  # cached before sidecars existed, and verified: record it now
            _write_sidecar(task, path, n, positions, log_q)
    return positions, log_q


def _stamp(path: Path) -> tuple:
    """What identifies the cached files' current versions (to notice another writer's)."""
    out = []
    for p in (path, _sidecar_path(path)):
        try:
            st = p.stat()
            out.append((st.st_ino, st.st_size, st.st_mtime_ns))
        except OSError:
            out.append(None)
    return tuple(out)


def _write_sidecar(task, path: Path, n: int, positions, log_q) -> None:
    record = {
        "format": SIDECAR_FORMAT, "task": task.name, "proposal_sha256": task.proposal.sha256,
        "seed": task.bank.seed, "n_samples": n, "bytes": path.stat().st_size, "sha256": sha256_file(path),
        "fingerprint": bank_fingerprint(positions, log_q),
        "written": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
    }
    atomic_write_text(_sidecar_path(path), json.dumps(record, indent=1) + "\n")


def store_bank(task, positions: np.ndarray, log_q: np.ndarray, n_samples: int | None = None) -> Path:
    """Cache a bank of the task (written atomically, then its sidecar); returns its path."""
    n = len(positions) if n_samples is None else int(n_samples)
    path = bank_cache_path(task, n)
    with _locked(path, exclusive=True):
        _store(task, path, n, positions, log_q)
    return path


def _store(task, path: Path, n: int, positions, log_q) -> None:
    _sidecar_path(path).unlink(missing_ok=True)  # a bank is never left with another bank's record
    atomic_savez(path, compressed=False, positions=positions, log_q=log_q)
    _write_sidecar(task, path, n, positions, log_q)


def generated_bank(task, n_samples: int | None = None) -> tuple[np.ndarray, np.ndarray]:
    """The task's generated bank (full size, or a separate smaller bank of ``n_samples``).

    Only the full bank is checked against the task's fingerprint; a smaller one (quick checks,
    tests) is drawn with the same seed but is not the first n samples of the full bank. Either
    is checked against the size and sha256 recorded when it was cached.
    """
    spec = task.bank
    if spec.generator not in GENERATORS:
        raise DataError(f"task {task.name}: unknown bank generator {spec.generator!r}; "
                        f"known: {sorted(GENERATORS)}")
    n = spec.n_samples if n_samples is None else int(n_samples)
    full = n == spec.n_samples
    weights = task.proposal.verify()
    path = bank_cache_path(task, n)
    with _locked(path, exclusive=False):
        seen = _stamp(path)
        cached = _check_cached(task, path, n)
    if cached is not None:
        return cached
    with _locked(path, exclusive=True):
        if path.is_file() and _stamp(path) != seen:  # another process wrote it while this one waited
            cached = _check_cached(task, path, n)
            if cached is not None:
                return cached
        log.info("generating the %s proposal bank (%d samples, seed %d) into %s", task.name, n, spec.seed, path)
        positions, log_q = GENERATORS[spec.generator](weights, n, spec.seed)
        if full:
            problems = _matches(bank_fingerprint(positions, log_q), spec.fingerprint, spec.rtol)
            if problems:
                raise DataError(
                    f"task {task.name}: the regenerated proposal bank does not match the fingerprint in "
                    f"task.yaml ({'; '.join(problems)}); a different torch build can change the samples: "
                    "report it with `cgbg-bench info " + task.name + "` output and your torch version"
                )
        _store(task, path, n, positions, log_q)
    return positions, log_q
