"""Inspect submitted model archives before torch reads them: nothing in them may run.

``torch.export.load`` unpickles some archive members and, when the restricted
(``weights_only=True``) unpickler refuses one, silently retries with the full
unpickler, which runs whatever the pickle asks. AOTInductor members are native
libraries that are loaded and run. So a submitted ``.pt2`` is read into memory once
and checked member by member before torch sees it:

- every member must be one of the names torch itself writes for a plain exported
  program (a fixed layout below); compiled code (AOTInductor, ExecuTorch), custom and
  opaque objects and legacy weight pickles are refused;
- every member that torch would unpickle (sample inputs, weights and constants
  flagged ``use_pickle`` in their configs) must load under the restricted unpickler
  to the expected type. Torch then reads exactly those checked bytes, so its full
  unpickler can only rebuild what the restricted one allowed;
- after loading, every operator in the graph must be an ``aten``/``prims`` operator
  (or ``operator.getitem``), none of which reads files or calls Python.

TorchScript archives (``.pt``) are read by TorchScript's C++ loader, which builds only
TorchScript types (no Python unpickling); their code runs only TorchScript operators.
Both formats run in a confined child process (:mod:`cgbg_bench.confine`).
"""

from __future__ import annotations

import io
import json
import operator
import re
import zipfile

from cgbg_bench._schema import short
from cgbg_bench.errors import UnsafeArchive

__all__ = ["MAX_ARCHIVE_BYTES", "check_export_archive", "check_program_ops", "load_export_bytes"]

#: Largest submitted archive read into memory (the largest shipped baseline is ~1 MB).
MAX_ARCHIVE_BYTES = 1 << 30

# Member names (below the archive's root folder) of a plain torch.export program.
_FIXED = {"archive_format", "archive_version", "byteorder", "version", ".data/version",
          ".data/serialization_id"}
_MODEL = re.compile(r"models/(?P<m>[A-Za-z0-9_]+)\.json")
_SAMPLE_INPUTS = re.compile(r"data/sample_inputs/(?P<m>[A-Za-z0-9_]+)\.pt")
_WEIGHTS_CONFIG = re.compile(r"data/weights/(?P<m>[A-Za-z0-9_]+)_weights_config\.json")
_CONSTANTS_CONFIG = re.compile(r"data/constants/(?P<m>[A-Za-z0-9_]+)_constants_config\.json")
_WEIGHT = re.compile(r"data/weights/weight_[0-9]+")
_TENSOR_CONSTANT = re.compile(r"data/constants/tensor_[0-9]+")
_EXTRA = re.compile(r"extra/[^/]+")
_ALLOWED_PATTERNS = (_MODEL, _SAMPLE_INPUTS, _WEIGHTS_CONFIG, _CONSTANTS_CONFIG, _WEIGHT,
                     _TENSOR_CONSTANT, _EXTRA)
#: Operator namespaces a submitted program may call.
_OP_NAMESPACES = {"aten", "prims"}
#: aten operators that touch files or the process.
_DENIED_OPS = {"from_file", "_print", "save", "load"}


def _members(data: bytes, name: str) -> dict[str, bytes]:
    try:
        with zipfile.ZipFile(io.BytesIO(data)) as z:
            infos = z.infolist()
            seen: set[str] = set()
            for i in infos:  # torch's reader looks names up case-insensitively: any repeat is ambiguous
                key = i.filename.lower()
                if key in seen:
                    raise UnsafeArchive(f"{name}: member {short(i.filename, 80)} appears more than once "
                                        "(names compared without case); torch could read a copy that was "
                                        "not checked")
                seen.add(key)
            roots = {i.filename.split("/", 1)[0] for i in infos}
            if len(roots) != 1 or any("/" not in i.filename for i in infos):
                raise UnsafeArchive(f"{name}: members must share one root folder, as torch.export.save "
                                    f"writes them (found {len(roots)} roots)")
            out = {}
            for i in infos:
                if i.is_dir():
                    continue
                out[i.filename.split("/", 1)[1]] = z.read(i)
            return out
    except zipfile.BadZipFile as exc:
        raise UnsafeArchive(f"{name}: damaged zip archive ({exc})") from exc


def _restricted_load(blob: bytes, what: str, name: str, expect: tuple[type, ...]):
    import torch

    try:
        obj = torch.load(io.BytesIO(blob), weights_only=True, map_location="cpu")
    except Exception as exc:
        raise UnsafeArchive(
            f"{name}: member {what} is a pickle that the restricted unpickler refuses "
            f"({type(exc).__name__}); submissions are never unpickled beyond plain tensors. "
            "Re-export the model with cgbg_bench.export_pmf"
        ) from None
    if not isinstance(obj, expect):
        raise UnsafeArchive(f"{name}: member {what} holds a {type(obj).__name__}, expected "
                            f"{' or '.join(t.__name__ for t in expect)}")
    return obj


def _config(members: dict[str, bytes], key: str, name: str) -> dict:
    try:
        cfg = json.loads(members[key].decode("utf-8"))
        entries = cfg["config"]
        if not isinstance(entries, dict):
            raise TypeError("config is not a mapping")
        return entries
    except Exception as exc:
        raise UnsafeArchive(f"{name}: {key} is not a valid payload config ({exc})") from None


def check_export_archive(data: bytes, name: str = "archive") -> None:
    """Raise UnsafeArchive unless ``data`` is a plain torch.export archive that runs no code on load."""
    import torch

    if len(data) > MAX_ARCHIVE_BYTES:
        raise UnsafeArchive(f"{name}: {len(data)} bytes, more than the {MAX_ARCHIVE_BYTES} allowed")
    members = _members(data, name)
    unknown = sorted(k for k in members
                     if k not in _FIXED and not any(p.fullmatch(k) for p in _ALLOWED_PATTERNS))
    if unknown:
        raise UnsafeArchive(
            f"{name}: members {unknown[:5]} are not part of a plain torch.export program (compiled "
            "code, custom objects and legacy pickles are refused); export with cgbg_bench.export_pmf")
    models = [m.group("m") for k in members if (m := _MODEL.fullmatch(k))]
    if not models:
        raise UnsafeArchive(f"{name}: no models/*.json program in the archive")
    for model in models:
        inputs = f"data/sample_inputs/{model}.pt"
        if inputs not in members:
            raise UnsafeArchive(f"{name}: {inputs} is missing")
        _restricted_load(members[inputs], inputs, name, (tuple, dict))
        for kind, prefix in (("weights", "weight_"), ("constants", "tensor_")):
            key = f"data/{kind}/{model}_{kind}_config.json"
            if key not in members:
                raise UnsafeArchive(f"{name}: {key} is missing")
            for fqn, meta in _config(members, key, name).items():
                path = meta.get("path_name") if isinstance(meta, dict) else None
                if not isinstance(path, str) or not path.startswith(prefix):
                    raise UnsafeArchive(f"{name}: {kind} entry {fqn!r} points at {path!r}; only "
                                        f"plain tensors ({prefix}N) are accepted")
                member = f"data/{kind}/{path}"
                if member not in members:
                    raise UnsafeArchive(f"{name}: {kind} entry {fqn!r} points at missing {member}")
                if meta.get("use_pickle"):
                    _restricted_load(members[member], member, name, (torch.Tensor,))


def check_program_ops(program, name: str = "archive") -> None:
    """Raise UnsafeArchive if the exported program calls anything but aten/prims operators."""
    import torch

    for node in program.graph.nodes:
        if node.op != "call_function":
            continue
        target = node.target
        if target is operator.getitem:
            continue
        if isinstance(target, torch._ops.OpOverload):
            ns = target.namespace
            base = target.name().split("::", 1)[-1].split(".", 1)[0]
            if ns in _OP_NAMESPACES and base not in _DENIED_OPS:
                continue
        raise UnsafeArchive(
            f"{name}: the program calls {target!r}, which is not an aten/prims tensor operator; "
            "submissions may only use standard tensor operations")


#: TorchScript node kinds a submitted module may run: aten/prim operators, minus file access.
_TS_NAMESPACES = {"aten", "prim"}
_TS_DENIED = {"aten::save", "aten::load", "aten::from_file", "prim::PythonOp", "prim::CallFunction",
              "prim::CallMethod"}


def check_torchscript_ops(module, name: str = "archive") -> None:
    """Raise UnsafeArchive unless ``forward`` (with every call inlined) runs only aten/prim operators
    and none that touches files (TorchScript can call ``torch.save``)."""
    try:
        graph = module.inlined_graph
    except Exception as exc:
        raise UnsafeArchive(f"{name}: the TorchScript module has no inspectable forward ({exc})") from None

    def walk(block):
        for node in block.nodes():
            kind = node.kind()
            if kind.split("::", 1)[0] not in _TS_NAMESPACES or kind in _TS_DENIED:
                raise UnsafeArchive(f"{name}: the TorchScript forward calls {kind}, which is not an allowed "
                                    "tensor operator; submissions may only use standard tensor operations")
            for sub in node.blocks():
                walk(sub)

    walk(graph)


def load_export_bytes(data: bytes, name: str = "archive"):
    """Check ``data`` (the bytes of a .pt2 file) and load its ExportedProgram from those bytes."""
    import torch

    check_export_archive(data, name)
    program = torch.export.load(io.BytesIO(data))
    check_program_ops(program, name)
    return program
