"""Run submitted model code in a child process with a wall-clock limit and a memory cap.

Loading a submission (``cgbg_bench.archive``) runs none of its code; calling it does.
Every call of a submitted file (the contract check and the energies on the bank) runs
in a fresh child process (``spawn``: no state shared with the parent) that

- has its address space capped (``RLIMIT_AS``, CPU runs; on CUDA the GPU memory
  fraction is capped instead, since the CUDA driver reserves large address ranges),
- is killed when it runs past its wall-clock limit,
- returns only plain numbers (energies as raw float64 bytes after a JSON header: the
  parent unpickles nothing from the child) or a typed error.

A limit that is hit raises :class:`ModelTimeout` or :class:`ModelMemoryLimit` naming the
limit and the option that raises it; a child that dies raises :class:`ModelCrashed`.
"""

from __future__ import annotations

import json
import os
import tempfile
import traceback
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from cgbg_bench import errors

__all__ = ["Limits", "DEFAULT_LIMITS", "run_confined", "confined_energies", "confined_check"]


@dataclass(frozen=True)
class Limits:
    """Limits of a submitted model's child process.

    ``timeout_s``: wall-clock seconds for the whole call (load, check, every batch).
    ``memory_gb``: address-space cap of the child (GiB), model, bank slice and torch included.
    """

    timeout_s: float = 1800.0
    memory_gb: float = 8.0

    def __post_init__(self):
        if not (self.timeout_s > 0 and np.isfinite(self.timeout_s)):
            raise errors.SubmissionError(f"timeout_s must be a positive number of seconds, got {self.timeout_s}")
        if not (self.memory_gb > 0 and np.isfinite(self.memory_gb)):
            raise errors.SubmissionError(f"memory_gb must be a positive number of GiB, got {self.memory_gb}")


DEFAULT_LIMITS = Limits()


def _apply_memory_cap(memory_gb: float, device: str) -> None:
    import resource

    if device.startswith("cuda"):
        import torch

        total = torch.cuda.get_device_properties(torch.device(device)).total_memory
        torch.cuda.set_per_process_memory_fraction(min(1.0, memory_gb * 2**30 / total), torch.device(device))
        return
    cap = int(memory_gb * 2**30)
    resource.setrlimit(resource.RLIMIT_AS, (cap, cap))


def _is_out_of_memory(exc: BaseException) -> bool:
    text = f"{type(exc).__name__}: {exc}".lower()
    return isinstance(exc, MemoryError) or "can't allocate memory" in text or "out of memory" in text \
        or "cannot allocate memory" in text


def _send(conn, kind: str, text: str = "", array: np.ndarray | None = None) -> None:
    """A message the parent reads without unpickling: a JSON header, then raw float64 bytes."""
    header = {"kind": kind, "text": text, "n": None if array is None else int(array.size)}
    conn.send_bytes(json.dumps(header).encode())
    if array is not None:
        conn.send_bytes(np.ascontiguousarray(array, np.float64).tobytes())


def _receive(conn) -> tuple[str, str, np.ndarray | None]:
    header = json.loads(conn.recv_bytes(1 << 20).decode())
    array = None
    if header["n"] is not None:
        array = np.frombuffer(conn.recv_bytes(), dtype=np.float64)
        if array.size != header["n"]:
            raise errors.ModelCrashed(f"the model's process sent {array.size} values, announced {header['n']}")
    return str(header["kind"]), str(header["text"]), array


def _child(conn, fn, args, memory_gb: float, device: str) -> None:
    try:
        _apply_memory_cap(memory_gb, device)
        result = fn(*args)
        _send(conn, "ok", array=None if result is None else np.asarray(result, np.float64))
    except errors.CgbgError as exc:
        _send(conn, "error:" + type(exc).__name__, str(exc))
    except BaseException as exc:  # anything the model raised: report it to the parent
        if _is_out_of_memory(exc):
            _send(conn, "memory", f"{type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}")
        else:
            _send(conn, "crash", traceback.format_exception_only(type(exc), exc)[-1].strip())
    finally:
        conn.close()


def run_confined(fn, args: tuple, *, limits: Limits = DEFAULT_LIMITS, device: str = "cpu",
                 what: str = "the PMF"):
    """Call ``fn(*args)`` (a module-level function) in a confined child; return its result.

    The child is a fresh interpreter (``python -m cgbg_bench.confine``): it does not
    re-import the caller's main module, shares no state, and writes its answer to a
    pipe of its own (what the model prints goes to stderr).
    """
    import pickle
    import subprocess
    import sys
    from multiprocessing.connection import Connection

    read_fd, write_fd = os.pipe()
    try:
        proc = subprocess.Popen(
            [sys.executable, "-m", "cgbg_bench.confine", str(write_fd), repr(limits.memory_gb), device],
            stdin=subprocess.PIPE, stdout=sys.stderr.fileno() if _has_fileno(sys.stderr) else None,
            pass_fds=(write_fd,))
    except BaseException:
        os.close(read_fd)
        raise
    finally:
        os.close(write_fd)
    conn = Connection(read_fd)
    try:
        try:  # parent -> child: our own trusted objects
            proc.stdin.write(pickle.dumps((fn, args), protocol=pickle.HIGHEST_PROTOCOL))
            proc.stdin.close()
        except BrokenPipeError:
            pass
        if not conn.poll(limits.timeout_s):
            proc.kill()
            proc.wait()
            raise errors.ModelTimeout(
                f"{what} ran for more than {limits.timeout_s:g} s (the wall-clock limit of model code); "
                "raise it (timeout_s, seconds) if the model is really that slow")
        try:
            kind, text, array = _receive(conn)
        except (EOFError, OSError, ValueError, KeyError):
            proc.wait()
            raise errors.ModelCrashed(
                f"{what} crashed its process (exit code {proc.returncode}); if it needs more than "
                f"{limits.memory_gb:g} GiB, raise the cap (memory_gb, GiB)") from None
    finally:
        conn.close()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
    if kind == "ok":
        return array
    if kind == "memory":
        raise errors.ModelMemoryLimit(
            f"{what} tried to use more than {limits.memory_gb:g} GiB ({text}); raise the cap "
            "(memory_gb, GiB), or use a smaller batch_size")
    if kind.startswith("error:"):
        cls = getattr(errors, kind.split(":", 1)[1], None)
        if not (isinstance(cls, type) and issubclass(cls, errors.CgbgError)):
            cls = errors.SubmissionError
        raise cls(text)
    raise errors.ModelCrashed(f"{what} raised {text}")


def _has_fileno(stream) -> bool:
    try:
        stream.fileno()
        return True
    except (AttributeError, OSError, ValueError):
        return False


def _main(argv: list[str]) -> None:
    """Child entry point: ``python -m cgbg_bench.confine FD MEMORY_GB DEVICE``, (fn, args) on stdin."""
    import pickle
    import sys
    from multiprocessing.connection import Connection

    fd, memory_gb, device = int(argv[0]), float(argv[1]), argv[2]
    fn, args = pickle.loads(sys.stdin.buffer.read())
    _child(Connection(fd), fn, args, memory_gb, device)


# --- the work done in the child --------------------------------------------------------


def _check_in_child(path: str, task, sample: np.ndarray, device: str, rtol: float) -> None:
    from cgbg_bench.pmf import check_pmf, load_pmf

    check_pmf(load_pmf(path, device), task, sample=sample, device=device, rtol=rtol)


def _energies_in_child(path: str, task, positions_file: str, batch_size: int, device: str,
                       progress: bool, subset_seed: int) -> np.ndarray:
    """Energies of the bank, then the model's RMS force on the first bank configurations
    (the reliability check), as one array (N + 1,): one load of the model, one process."""
    from cgbg_bench.evaluate import check_batch_independence, compute_energies
    from cgbg_bench.pmf import check_pmf, load_pmf
    from cgbg_bench.reliability import force_scale

    module = load_pmf(path, device)
    positions = np.load(positions_file)
    check_pmf(module, task, sample=np.array(positions[:7]), device=device)
    energies = compute_energies(module, positions, batch_size=batch_size, device=device, progress=progress)
    check_batch_independence(module, positions, energies, batch_size=batch_size, device=device,
                             seed=subset_seed)
    return np.append(energies, force_scale(module, positions, device=device))


def confined_check(path: str | os.PathLike, task, sample: np.ndarray, *, device: str = "cpu",
                   rtol: float = 1e-4, limits: Limits = DEFAULT_LIMITS) -> None:
    """``check_pmf`` of a submitted file, run in a confined child."""
    run_confined(_check_in_child, (str(path), task, np.asarray(sample, np.float32), device, rtol),
                 limits=limits, device=device, what=f"the PMF {path}")


def confined_energies(path: str | os.PathLike, task, positions: np.ndarray, *, batch_size: int,
                      device: str = "cpu", progress: bool = False, limits: Limits = DEFAULT_LIMITS,
                      subset_seed: int = 0) -> tuple[np.ndarray, float]:
    """Contract check, energies of ``positions``, the batch-independence check and the RMS force
    (:func:`cgbg_bench.reliability.force_scale`) of a submitted file, in one confined child.

    Returns (energies (N,), rms_force). The positions reach the child through a temporary .npy file.
    """
    with tempfile.TemporaryDirectory(prefix="cgbg-bench-") as tmp:
        positions_file = Path(tmp) / "positions.npy"
        np.save(positions_file, np.ascontiguousarray(positions, np.float32))
        out = run_confined(_energies_in_child,
                           (str(path), task, str(positions_file), int(batch_size), device, progress,
                            int(subset_seed)),
                           limits=limits, device=device, what=f"the PMF {path}")
    if out is None or out.shape != (len(positions) + 1,):
        raise errors.ModelCrashed(f"the PMF {path}: its process returned {None if out is None else out.shape} "
                                  f"values, expected {len(positions) + 1}")
    return out[:-1], float(out[-1])


if __name__ == "__main__":
    import sys

    _main(sys.argv[1:])
