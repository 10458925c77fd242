"""Submitted PMFs: detect the file format, load without unpickling, check the contract, export.

Accepted: torch.export programs (``.pt2``, recommended) and TorchScript modules
(``.pt``). The format is read from the archive's contents, not its suffix.
Pickled modules and state dicts (``torch.save``) are refused: loading them would
run arbitrary code.

The contract (docs/spec.md section 2): input (B, *task.input_shape) float32 in
nm, output (B,) energies in the task's energy unit (kJ/mol; kT for Mueller-Brown),
any batch size B, finite values, each sample's energy independent of the others.
"""

from __future__ import annotations

import io
import logging
import os
import threading
import zipfile
from pathlib import Path
from typing import TYPE_CHECKING, Callable

import numpy as np

from cgbg_bench.errors import OutputPathError, PMFContractError, UnsafeArchive, UnsupportedFormat, UsageError

__all__ = ["detect_format", "load_pmf", "check_pmf", "export_pmf", "export_program", "default_device"]

if TYPE_CHECKING:
    import torch

log = logging.getLogger(__name__)

_EXPORT_HOWTO = (
    "export your model with cgbg_bench.export_pmf(model, task, 'model.pt2') "
    "(torch.export with a dynamic batch dimension) or torch.jit.save(torch.jit.script(model), 'model.pt')"
)
_LOADERS: dict[str, Callable[[Path, str], torch.nn.Module]] = {}


def register_loader(fmt: str):
    def deco(fn):
        _LOADERS[fmt] = fn
        return fn

    return deco


def default_device() -> str:
    import torch

    return "cuda" if torch.cuda.is_available() else "cpu"


def detect_format(path: str | os.PathLike) -> str:
    """Return "export" or "torchscript"; raise UnsupportedFormat for anything else."""
    path = Path(path)
    if not path.is_file():
        raise UnsupportedFormat(f"{path}: no such file")
    with open(path, "rb") as fh:
        head = fh.read(4)
    if head[:1] == b"\x80":
        raise UnsupportedFormat(f"{path} is a legacy pickle (torch.save); it is never unpickled: {_EXPORT_HOWTO}")
    if head != b"PK\x03\x04":
        raise UnsupportedFormat(f"{path} is not a torch archive (.pt2 or TorchScript .pt): {_EXPORT_HOWTO}")
    try:
        with zipfile.ZipFile(path) as z:
            names = z.namelist()
    except zipfile.BadZipFile as exc:
        raise UnsupportedFormat(f"{path}: damaged zip archive ({exc})") from exc
    stems = {n.split("/", 1)[1] if "/" in n else n for n in names}
    if "archive_format" in stems or "models/model.json" in stems:
        return "export"
    if "constants.pkl" in stems and any(s.startswith("code/") for s in stems):
        return "torchscript"
    if "data.pkl" in stems:
        raise UnsupportedFormat(
            f"{path} was written by torch.save (a pickled nn.Module or state dict); "
            f"submissions are never unpickled: {_EXPORT_HOWTO}"
        )
    raise UnsupportedFormat(f"{path}: unrecognised zip archive: {_EXPORT_HOWTO}")


@register_loader("export")
def _load_export(path: Path, device: str) -> torch.nn.Module:
    from cgbg_bench.archive import MAX_ARCHIVE_BYTES, load_export_bytes

    with open(path, "rb") as fh:  # read once: torch loads the very bytes that were checked
        data = fh.read(MAX_ARCHIVE_BYTES + 1)
    with _EXPORT_LOAD_LOCK:
        module = load_export_bytes(data, str(path)).module()
    return module.to(device)


#: torch.export's deserializer keeps process-wide state ("_CURRENT_DESERIALIZER is already set" when
#: two threads load at once, e.g. Dask worker threads): one load at a time per process.
_EXPORT_LOAD_LOCK = threading.Lock()


@register_loader("torchscript")
def _load_torchscript(path: Path, device: str) -> torch.nn.Module:
    import torch

    from cgbg_bench.archive import MAX_ARCHIVE_BYTES, check_torchscript_ops

    with open(path, "rb") as fh:  # read once: the module checked is the module run
        data = fh.read(MAX_ARCHIVE_BYTES + 1)
    if len(data) > MAX_ARCHIVE_BYTES:
        raise UnsafeArchive(f"{path}: larger than {MAX_ARCHIVE_BYTES} bytes")
    module = torch.jit.load(io.BytesIO(data), map_location=device).eval()
    check_torchscript_ops(module, str(path))
    return module


def load_pmf(path: str | os.PathLike, device: str | None = None) -> torch.nn.Module:
    """Load a submitted PMF (format detected from the file) onto ``device``."""
    device = device or default_device()
    fmt = detect_format(path)
    try:
        return _LOADERS[fmt](Path(path), device)
    except UnsafeArchive:
        raise
    except Exception as exc:  # a corrupt archive of a known format
        raise UnsupportedFormat(f"{path}: looks like a {fmt} archive but failed to load: {exc}") from exc


def _expected_input_shape(module) -> tuple | None:
    """The input shape a torch.export program was traced for, e.g. ("B", 1); None when unknown.

    Read from the graph's first placeholder (its fake tensor); a symbolic dimension prints as "B".
    TorchScript modules record no shapes.
    """
    graph = getattr(module, "graph", None)
    if graph is None or not hasattr(graph, "nodes"):
        return None
    try:
        for node in graph.nodes:
            if node.op == "placeholder":
                val = node.meta.get("val")
                if val is None or not hasattr(val, "shape"):
                    return None
                return tuple(d if isinstance(d, int) else "B" for d in val.shape)
    except Exception:  # an unusual graph: no diagnosis, the generic message stands
        return None
    return None


def _fmt_shape(dims) -> str:
    """("B", 6, 3) -> "(B, 6, 3)"."""
    return "(" + ", ".join(map(str, dims)) + ")"


def _call(module: torch.nn.Module, x: torch.Tensor, input_shape: tuple | None = None) -> torch.Tensor:
    """``module(x)`` without gradients; a failure is a PMFContractError that names its likely cause.

    ``input_shape``: the task's per-sample shape, so that a model made for another input shape is
    reported as a shape mismatch rather than as a batch-size problem.
    """
    import torch

    try:
        with torch.no_grad():
            return module(x)
    except Exception as exc:
        detail = f"{type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}"
        expected = _expected_input_shape(module)
        if input_shape is not None and expected is not None:
            given = ("B", *input_shape)
            if tuple(expected[1:]) != tuple(input_shape):
                raise PMFContractError(
                    f"input shape mismatch: the task gives input shape {_fmt_shape(given)}, the model expects "
                    f"{_fmt_shape(expected)} ({detail}); was it made for another task? "
                    "Score it on a task with its input shape (`cgbg-bench list`, `cgbg-bench info TASK`)"
                ) from exc
            if expected[0] != "B":
                raise PMFContractError(
                    f"the model was exported for a fixed batch size {expected[0]} (input shape "
                    f"{_fmt_shape(expected)}), it raised on a batch of {x.shape[0]} ({detail}); it must accept "
                    f"any batch size B: {_EXPORT_HOWTO}"
                ) from exc
        task_shape = "" if input_shape is None else f" (the task's input shape {_fmt_shape(('B', *input_shape))})"
        raise PMFContractError(
            f"the PMF raised on an input of shape {tuple(x.shape)} float32{task_shape} ({detail}); it must "
            f"accept the task's input shape with any batch size B (export with a dynamic batch dimension)"
        ) from exc


def check_pmf(pmf, task, sample: np.ndarray | None = None, device: str | None = None, rtol: float = 1e-4) -> None:
    """Run the submission contract on a small batch; raise PMFContractError naming the violation.

    ``pmf`` is a path (a submission: loaded and run in a confined child process,
    :mod:`cgbg_bench.confine`) or a loaded module of the caller's own (run here);
    ``sample`` a few positions (default: from the bank).
    """
    device = device or default_device()
    if sample is None:
        sample = task.load_proposal().positions[:7]
    if isinstance(pmf, (str, os.PathLike)):
        from cgbg_bench.confine import confined_check

        detect_format(pmf)
        confined_check(pmf, task, np.asarray(sample), device=device, rtol=rtol)
        return
    import torch

    module = pmf
    x = torch.as_tensor(np.array(sample[:7], np.float32), device=device)  # a copy: a read-only memmap warns
    if x.shape[0] < 7:
        raise UsageError(f"sample must hold at least 7 positions, got {x.shape[0]}")
    shape = "(B, " + ", ".join(map(str, task.input_shape)) + ")"
    input_shape = tuple(task.input_shape)
    out7 = _call(module, x, input_shape)
    if not isinstance(out7, torch.Tensor):
        raise PMFContractError(f"the PMF returned {type(out7).__name__}; it must return one tensor of shape (B,)")
    if tuple(out7.shape) != (7,):
        raise PMFContractError(
            f"for input {shape} with B=7 the PMF returned shape {tuple(out7.shape)}; expected (7,): "
            "one energy per configuration (squeeze a trailing dimension of size 1)"
        )
    if not out7.dtype.is_floating_point:
        raise PMFContractError(f"the PMF returned dtype {out7.dtype}; expected a floating-point energy")
    if not torch.isfinite(out7).all():
        raise PMFContractError("the PMF returned NaN or inf on proposal samples; energies must be finite")
    out3 = _call(module, x[:3], input_shape)
    if tuple(out3.shape) != (3,):
        raise PMFContractError(
            f"with B=3 the PMF returned shape {tuple(out3.shape)}: the batch size must be dynamic"
        )
    scale = float(out7[:3].abs().max()) + 1.0
    if float((out3 - out7[:3]).abs().max()) > rtol * scale:
        raise PMFContractError(
            "the energy of a configuration changes with the other configurations in its batch "
            "(put the model in eval mode; no batch statistics)"
        )


def export_program(module: torch.nn.Module, example: torch.Tensor, path: str | os.PathLike,
                   validate: Callable[[Path], None] | None = None) -> Path:
    """torch.export ``module`` with a dynamic batch dimension and save it atomically to ``path`` (.pt2).

    ``validate(tmp_path)`` runs on the written file before it is renamed into place.
    """
    import torch

    from cgbg_bench._io import atomic_path

    path = Path(path)
    if path.suffix != ".pt2":
        raise OutputPathError(f"path {path}: exported programs are saved with the suffix .pt2")
    program = torch.export.export(module.eval(), (example,), dynamic_shapes=({0: torch.export.Dim.DYNAMIC},))
    with atomic_path(path) as tmp:
        torch.export.save(program, str(tmp))
        if validate is not None:
            validate(tmp)
    return path


def export_pmf(module: torch.nn.Module, task, path: str | os.PathLike) -> Path:
    """Export ``module`` for ``task`` (torch.export, dynamic batch), save it, and check the contract."""
    import torch

    example = torch.as_tensor(task.load_proposal().positions[:7], dtype=torch.float32)
    return export_program(
        module, example, path, validate=lambda tmp: check_pmf(tmp, task, sample=example.numpy(), device="cpu")
    )
