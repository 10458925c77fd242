"""Run submitted model code in a child process with a wall-clock limit and a memory cap.

Loading a submission (``cgbg_bench.archive``) runs none of its code; calling it does.
Every call of a submitted file (the contract check and the energies on the bank) runs
in a fresh child process (``spawn``: no state shared with the parent) that

- has its address space capped (``RLIMIT_AS``, CPU runs; on CUDA the GPU memory
  fraction is capped instead, since the CUDA driver reserves large address ranges),
- is killed when it runs past its wall-clock limit,
- returns only plain numbers (energies as raw float64 bytes after a JSON header: the
  parent unpickles nothing from the child) or a typed error,
- ends with ``os._exit`` once its answer is sent (tearing down an interpreter with torch
  loaded took ~1 s that the parent spent waiting).

A call is started at once and answered later (:class:`ConfinedCall`): the child imports
torch and loads the model while the parent reads the bank, and the parent computes the bank's
histogram bins while the child computes the energies.

A limit that is hit raises :class:`ModelTimeout` or :class:`ModelMemoryLimit` naming the
limit and the option that raises it; a child that dies raises :class:`ModelCrashed`.
"""

from __future__ import annotations

import json
import os
import tempfile
import time
import traceback
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from cgbg_bench import errors

__all__ = ["Limits", "DEFAULT_LIMITS", "CHILD_MALLOC", "ConfinedCall", "DEFAULT_DEVICE", "run_confined", "receive",
           "confined_energies", "ConfinedEnergies", "confined_check"]


@dataclass(frozen=True)
class Limits:
    """Limits of a submitted model's child process.

    ``timeout_s``: wall-clock seconds for the whole call (load, check, every batch).
    ``memory_gb``: address-space cap of the child (GiB), model, bank slice and torch included;
    the child keeps freed large blocks for reuse (:data:`CHILD_MALLOC`), so its peak counts them.
    """

    timeout_s: float = 1800.0
    memory_gb: float = 8.0

    def __post_init__(self):
        if not (self.timeout_s > 0 and np.isfinite(self.timeout_s)):
            raise errors.SubmissionError(f"timeout_s must be a positive number of seconds, got {self.timeout_s}")
        if not (self.memory_gb > 0 and np.isfinite(self.memory_gb)):
            raise errors.SubmissionError(f"memory_gb must be a positive number of GiB, got {self.memory_gb}")


DEFAULT_LIMITS = Limits()


#: The child's glibc malloc settings (mallopt(3); a variable already set in the environment wins;
#: other C libraries ignore them): no mmap for large blocks, and freed memory kept up to 1 GiB.
#: A PMF's per-batch tensors are larger than glibc's largest mmap threshold (32 MiB) for the
#: bigger peptides (an ala6-core-beta PMF_B's features: 73 MB at the default batch), so by default
#: each one is mapped afresh and page-faulted in: ~30% of the forward passes' CPU time
#: (docs/benchmarks.md). The child is short-lived and its address space is capped
#: (``Limits.memory_gb``), so keeping freed memory costs nothing that the cap does not bound.
CHILD_MALLOC = {"MALLOC_MMAP_MAX_": "0", "MALLOC_TRIM_THRESHOLD_": str(2**30)}


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


def _send(conn, kind: str, text: str = "", array: np.ndarray | None = None, info: dict | None = None) -> None:
    """A message the parent reads without unpickling: a JSON header, then raw float64 bytes."""
    header = {"kind": kind, "text": text, "n": None if array is None else int(array.size), "info": info or {}}
    conn.send_bytes(json.dumps(header).encode())
    if array is not None:
        conn.send_bytes(np.ascontiguousarray(array, np.float64).tobytes())


def _receive(conn) -> tuple[str, str, np.ndarray | None, dict]:
    header = json.loads(conn.recv_bytes(1 << 20).decode())
    array = None
    if header["n"] is not None:
        array = np.frombuffer(conn.recv_bytes(), dtype=np.float64)
        if array.size != header["n"]:
            raise errors.ModelCrashed(f"the model's process sent {array.size} values, announced {header['n']}")
    info = header.get("info")
    info = {str(k): v for k, v in info.items() if isinstance(v, (str, int, float, bool))} \
        if isinstance(info, dict) else {}
    return str(header["kind"]), str(header["text"]), array, info


def _child_info(device: str) -> dict:
    """What the parent may want to know about the child's torch: the device used and torch's version."""
    import sys

    torch = sys.modules.get("torch")
    return {"device": device, **({"torch_version": str(torch.__version__)} if torch is not None else {})}


def _child(conn, fn, args, memory_gb: float, device: str) -> None:
    try:
        if not device:  # the default device of this machine (importing torch here is our own code)
            from cgbg_bench.pmf import default_device

            device = default_device()
            args = tuple(device if isinstance(a, str) and a == DEFAULT_DEVICE else a for a in args)
        _apply_memory_cap(memory_gb, device)
        result = fn(*args)
        _send(conn, "ok", array=None if result is None else np.asarray(result, np.float64), info=_child_info(device))
    except errors.CgbgError as exc:
        _send(conn, "error:" + type(exc).__name__, str(exc))
    except BaseException as exc:  # anything the model raised: report it to the parent
        if _is_out_of_memory(exc):
            _send(conn, "memory", f"{type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}")
        else:
            _send(conn, "crash", traceback.format_exception_only(type(exc), exc)[-1].strip())
    finally:
        conn.close()


#: In a child's arguments: the device the child picks (a ConfinedCall with ``device=None``).
DEFAULT_DEVICE = "<default device>"


def receive():
    """In a child: the next object the parent sent with :meth:`ConfinedCall.send` (blocks until it comes)."""
    import pickle
    import sys

    return pickle.load(sys.stdin.buffer)


class ConfinedCall:
    """``fn(*args)`` (a module-level function) running in a confined child, started at once.

    The child is a fresh interpreter (``python -m cgbg_bench.confine``): it does not
    re-import the caller's main module, shares no state, and writes its answer to a
    pipe of its own (what the model prints goes to stderr). ``send`` hands it further
    objects of ours (read there with :func:`receive`); ``result`` waits for its answer.
    The wall-clock limit counts from the start. ``device=None``: the child uses its default
    device (:func:`cgbg_bench.pmf.default_device`), passed to ``fn`` where ``args`` hold
    :data:`DEFAULT_DEVICE`; ``info`` says which, and the child's torch version, once answered.
    Use it as a context manager (or call ``close``): a call left unanswered is killed.
    """

    def __init__(self, fn, args: tuple, *, limits: Limits = DEFAULT_LIMITS, device: str | None = "cpu",
                 what: str = "the PMF"):
        import subprocess
        import sys
        from multiprocessing.connection import Connection

        self.limits, self.what, self.info = limits, what, {}
        self._done = False
        read_fd, write_fd = os.pipe()
        try:
            self._proc = subprocess.Popen(
                [sys.executable, "-m", "cgbg_bench.confine", str(write_fd), repr(limits.memory_gb), device or ""],
                stdin=subprocess.PIPE, stdout=sys.stderr.fileno() if _has_fileno(sys.stderr) else None,
                pass_fds=(write_fd,), env={**CHILD_MALLOC, **os.environ})
        except BaseException:
            os.close(read_fd)
            raise
        finally:
            os.close(write_fd)
        self._deadline = time.monotonic() + limits.timeout_s
        self._conn = Connection(read_fd)
        self.send((fn, args))

    def send(self, obj) -> None:
        """Pass ``obj`` (our own trusted objects; pickled) to the child."""
        import pickle

        try:  # parent -> child: our own trusted objects
            self._proc.stdin.write(pickle.dumps(obj, protocol=pickle.HIGHEST_PROTOCOL))
            self._proc.stdin.flush()
        except (BrokenPipeError, ValueError):  # the child is gone (or stdin closed): result() says why
            pass

    def result(self) -> np.ndarray | None:
        """The child's answer (a float64 array, or None); typed errors as :func:`run_confined`."""
        import subprocess

        if self._done:
            raise errors.UsageError("this confined call was answered already")
        self._done = True
        limits, what = self.limits, self.what
        try:
            try:
                self._proc.stdin.close()
            except BrokenPipeError:
                pass
            if not self._conn.poll(max(0.0, self._deadline - time.monotonic())):
                self._proc.kill()
                self._proc.wait()
                raise errors.ModelTimeout(
                    f"{what} ran for more than {limits.timeout_s:g} s (the wall-clock limit of model code); "
                    "raise it (timeout_s, seconds) if the model is really that slow")
            try:
                kind, text, array, self.info = _receive(self._conn)
            except (EOFError, OSError, ValueError, KeyError):
                self._proc.wait()
                raise errors.ModelCrashed(
                    f"{what} crashed its process (exit code {self._proc.returncode}); if it needs more than "
                    f"{limits.memory_gb:g} GiB, raise the cap (memory_gb, GiB)") from None
        finally:
            self._conn.close()
            try:
                self._proc.wait(10)
            except subprocess.TimeoutExpired:
                self._proc.kill()
                self._proc.wait()
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

    def close(self) -> None:
        """Kill the child unless it was answered; idempotent."""
        if self._done:
            return
        self._done = True
        self._proc.kill()
        self._proc.wait()
        for stream in (self._proc.stdin, self._conn):
            try:
                stream.close()
            except OSError:
                pass

    def __enter__(self) -> "ConfinedCall":
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def run_confined(fn, args: tuple, *, limits: Limits = DEFAULT_LIMITS, device: str = "cpu",
                 what: str = "the PMF"):
    """Call ``fn(*args)`` (a module-level function) in a confined child; return its result.

    The child is a fresh interpreter (``python -m cgbg_bench.confine``): it does not
    re-import the caller's main module, shares no state, and writes its answer to a
    pipe of its own (what the model prints goes to stderr). See :class:`ConfinedCall`.
    """
    with ConfinedCall(fn, args, limits=limits, device=device, what=what) as call:
        return call.result()


def _has_fileno(stream) -> bool:
    try:
        stream.fileno()
        return True
    except (AttributeError, OSError, ValueError):
        return False


def _main(argv: list[str]) -> None:
    """Child entry point: ``python -m cgbg_bench.confine FD MEMORY_GB DEVICE``, (fn, args) on stdin
    (then whatever the parent sends); DEVICE "" is the default device."""
    import gc
    import sys
    from multiprocessing.connection import Connection

    # Importing torch and loading a model make ~10^6 objects, and the cyclic garbage collector ran
    # through them over and over: 15-20% of the child's start-up (0.4 s on Mueller-Brown, 0.6 s on
    # ala2-core-beta's fm-biased). It is switched back on by _model_loaded.
    gc.disable()
    fd, memory_gb, device = int(argv[0]), float(argv[1]), argv[2]
    fn, args = receive()
    _child(Connection(fd), fn, args, memory_gb, device)
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except (OSError, ValueError):
            pass
    os._exit(0)  # the answer is sent: skip the interpreter's teardown (~1 s with torch loaded)


# --- the work done in the child --------------------------------------------------------


@dataclass(frozen=True)
class _Shape:
    """What the contract check needs of a task: its input shape. (A pickled Task would make every
    child import the task machinery, yaml and scipy, ~0.3 s.)"""

    input_shape: tuple[int, ...]


def _model_loaded() -> None:
    """In a child, once torch and the model are loaded: garbage collection back on (off since _main),
    with everything made so far set aside (``gc.freeze``: never scanned again)."""
    import gc

    gc.freeze()
    gc.enable()


def _check_in_child(path: str, task, sample: np.ndarray, device: str, rtol: float) -> None:
    from cgbg_bench.pmf import check_pmf, load_pmf

    module = load_pmf(path, device)
    _model_loaded()
    check_pmf(module, task, sample=sample, device=device, rtol=rtol)


def _energies_in_child(path: str, task, positions_file: str | None, batch_size: int, device: str,
                       progress: bool, subset_seed: int) -> np.ndarray:
    """Energies of the bank, then the model's RMS force on the first bank configurations
    (the reliability check), as one array (N + 1,): one load of the model, one process.
    ``positions_file`` (and ``task``) None: the model is loaded first, then (the file's name, the
    task's input shape) are received."""
    from cgbg_bench.evaluate import check_batch_independence, compute_energies
    from cgbg_bench.pmf import check_pmf, load_pmf
    from cgbg_bench.reliability import force_scale

    module = load_pmf(path, device)
    _model_loaded()
    if positions_file is None:  # the parent reads the task and the bank while this process loads the model
        positions_file, input_shape = receive()
        task = _Shape(tuple(input_shape))
    positions = np.load(positions_file, mmap_mode="c")  # read as the batches need it (private: never written back)
    check_pmf(module, task, sample=np.array(positions[:7]), device=device)
    energies = compute_energies(module, positions, batch_size=batch_size, device=device, progress=progress)
    check_batch_independence(module, positions, energies, batch_size=batch_size, device=device,
                             seed=subset_seed)
    return np.append(energies, force_scale(module, positions, device=device))


def confined_check(path: str | os.PathLike, task, sample: np.ndarray, *, device: str = "cpu",
                   rtol: float = 1e-4, limits: Limits = DEFAULT_LIMITS) -> None:
    """``check_pmf`` of a submitted file, run in a confined child."""
    run_confined(_check_in_child, (str(path), _Shape(tuple(task.input_shape)), np.asarray(sample, np.float32),
                                   device, rtol),
                 limits=limits, device=device, what=f"the PMF {path}")


class ConfinedEnergies:
    """:func:`confined_energies` in steps: the child starts at once (imports torch, loads and checks
    the archive) while the caller reads the task and the bank; ``send_positions`` hands it the bank
    and the task's input shape, ``result`` waits for (energies (N,), rms_force). The wall-clock limit
    counts from the start. ``device=None``: the child's default device; ``info["device"]`` (and
    ``info["torch_version"]``) say which once answered. Use it as a context manager: a call left
    unanswered is killed and its temporary file removed.
    """

    def __init__(self, path: str | os.PathLike, *, batch_size: int, device: str | None = "cpu",
                 progress: bool = False, limits: Limits = DEFAULT_LIMITS, subset_seed: int = 0):
        self.path, self.batch_size, self.device, self.limits = path, int(batch_size), device, limits
        self._n: int | None = None
        self._tmp = tempfile.TemporaryDirectory(prefix="cgbg-bench-")
        try:
            self._call = ConfinedCall(
                _energies_in_child,
                (str(path), None, None, self.batch_size, DEFAULT_DEVICE if device is None else device, progress,
                 int(subset_seed)),
                limits=limits, device=device, what=f"the PMF {path}")
        except BaseException:
            self._tmp.cleanup()
            raise

    @property
    def info(self) -> dict:
        return self._call.info

    def send_positions(self, positions: np.ndarray, input_shape) -> None:
        """The bank's positions (N, *input_shape), through a temporary .npy file, and the task's input shape."""
        positions_file = Path(self._tmp.name) / "positions.npy"
        np.save(positions_file, np.ascontiguousarray(positions, np.float32))
        self._n = len(positions)
        self._call.send((str(positions_file), tuple(int(d) for d in input_shape)))

    def result(self) -> tuple[np.ndarray, float]:
        if self._n is None:
            self.close()
            raise errors.UsageError("ConfinedEnergies.result() before send_positions()")
        try:
            out = self._call.result()
        finally:
            self._tmp.cleanup()
        if out is None or out.shape != (self._n + 1,):
            raise errors.ModelCrashed(f"the PMF {self.path}: its process returned "
                                      f"{None if out is None else out.shape} values, expected {self._n + 1}")
        return out[:-1], float(out[-1])

    def close(self) -> None:
        self._call.close()
        self._tmp.cleanup()

    def __enter__(self) -> "ConfinedEnergies":
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def confined_energies(path: str | os.PathLike, task, positions: np.ndarray, *, batch_size: int,
                      device: str = "cpu", progress: bool = False, limits: Limits = DEFAULT_LIMITS,
                      subset_seed: int = 0) -> tuple[np.ndarray, float]:
    """Contract check, energies of ``positions``, the batch-independence check and the RMS force
    (:func:`cgbg_bench.reliability.force_scale`) of a submitted file, in one confined child.

    Returns (energies (N,), rms_force). The positions reach the child through a temporary .npy file.
    """
    with ConfinedEnergies(path, batch_size=batch_size, device=device, progress=progress, limits=limits,
                          subset_seed=subset_seed) as call:
        call.send_positions(positions, task.input_shape)
        return call.result()


if __name__ == "__main__":
    import sys

    from cgbg_bench.confine import _main as main  # this module under its own name, not as __main__

    main(sys.argv[1:])
