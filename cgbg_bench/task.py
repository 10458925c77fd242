"""Tasks: ``tasks/<name>/task.yaml`` loaded into frozen dataclasses, data files hash-checked.

A task fixes everything a score depends on: the CG representation and input
shape, kT, the observables and their histogram settings, the metric settings,
the proposal bank, the reference, and the baselines. Paths in task.yaml are
relative to the task folder.

task.yaml is read with anchors and aliases refused (:func:`cgbg_bench._schema.load_yaml_text`).
Every file in a task folder carries a sha256 in its task.yaml (the data files, the baselines,
``baseline_scores.json``, and a flow a shipped bank was drawn from, as ``flow`` /
``flow_sha256`` in the proposal's provenance); :meth:`Task.verify_files` checks them all
(``cgbg-bench info TASK --verify``).
"""

from __future__ import annotations

import difflib
import math
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping

import numpy as np
import yaml

from cgbg_bench._io import sha256_file
from cgbg_bench._schema import check_keys, load_yaml_file, require, short
from cgbg_bench.errors import (
    DataError, HashMismatch, TaskFileMissing, TaskFileUnlisted, TaskNotFound, TaskSchemaError,
)
from cgbg_bench.paths import tasks_dir as tasks_root  # re-exported: the folder of task folders
from cgbg_bench.weighting import WEIGHTINGS, bank_weights, describe

__all__ = [
    "Observable",
    "DataFile",
    "BankSpec",
    "Baseline",
    "MetricSettings",
    "Task",
    "Proposal",
    "Reference",
    "ReferenceNoise",
    "tasks_root",
    "list_tasks",
    "load_task",
    "parse_task",
]

DIHEDRAL_RANGE = (-math.pi, math.pi)
OBSERVABLE_KINDS = ("coordinate", "dihedral_pair")
BASELINE_KINDS = ("pmf", "md-histogram")
ENERGY_UNITS = ("kT", "kJ/mol")


@dataclass(frozen=True)
class Observable:
    """One histogrammed quantity: a coordinate (1-D) or a (phi, psi) pair (2-D)."""

    name: str
    kind: str
    indices: tuple[tuple[int, ...], ...]  # coordinate: ((flat index,),); dihedral_pair: (phi, psi)
    bins: tuple[int, ...]
    range: tuple[tuple[float, float], ...]

    @property
    def n_bins(self) -> int:
        return int(np.prod(self.bins))

    @property
    def ndim(self) -> int:
        return len(self.bins)


@dataclass(frozen=True)
class DataFile:
    """A shipped file with its sha256 and provenance (command, seed, code version)."""

    path: Path
    sha256: str
    provenance: Mapping[str, Any] = field(default_factory=dict)

    def verify(self) -> Path:
        """Return the path after checking that it exists and its hash matches."""
        if not self.path.is_file():
            raise TaskFileMissing(
                f"{self.path} is listed in the task but not on disk; regenerate it with the "
                f"command in its provenance ({self.provenance.get('command', 'unknown')!r}) "
                "or restore it from git"
            )
        actual = sha256_file(self.path)
        if actual != self.sha256:
            raise HashMismatch(
                f"{self.path}: sha256 is {actual[:16]}..., the task records {self.sha256[:16]}...; "
                "the file was modified or the task.yaml is stale: restore the file from git or "
                "rebuild the task with the command in its provenance"
            )
        return self.path


@dataclass(frozen=True)
class BankSpec:
    """A proposal bank generated on first use from shipped flow weights, then cached.

    fingerprint: statistics of the full bank (mean/std of log q, mean radius of gyration)
    that a regenerated bank must reproduce to relative tolerance ``rtol``, so every user
    scores against the same bank.
    """

    generator: str
    n_samples: int
    seed: int
    fingerprint: Mapping[str, float]
    rtol: float


@dataclass(frozen=True)
class Baseline:
    name: str
    kind: str  # "pmf": a .pt2 scored like a submission; "md-histogram": unweighted MD histograms
    file: DataFile
    description: str = ""


@dataclass(frozen=True)
class MetricSettings:
    """How a task scores (task.yaml ``metrics``): weighting, bootstrap replicates, bank blocks.

    ``weighting`` is one of :data:`cgbg_bench.weighting.WEIGHTINGS`; ``clip_percentile`` is the
    clip of ``weighting: clip`` (None under PSIS). A task.yaml without ``weighting`` predates
    PSIS and is read as ``clip``.
    """

    clip_percentile: float | None
    n_bootstrap: int
    proposal_blocks: int
    weighting: str = "clip"

    def bank_weights(self, log_w: np.ndarray):
        """The task's weights of the bank and the raw weights' k-hat (:func:`cgbg_bench.weighting.bank_weights`)."""
        return bank_weights(log_w, self.weighting, self.clip_percentile)

    def describe(self) -> str:
        """The weighting in words, for output headers."""
        return describe(self.weighting, self.clip_percentile)


@dataclass(frozen=True)
class Resolution:
    """The task's resolution (task.yaml ``resolution``; :mod:`cgbg_bench.resolution`): the JS, with its
    bootstrap error, and the noise floor of the PMF exact along the headline ``observable``, made
    from the PMF ``base`` (a baseline's name, or "proposal")."""

    observable: str
    base: str
    js: tuple[float, float]
    js_floor: tuple[float, float]

    def as_dict(self) -> dict:
        return {"observable": self.observable, "base": self.base,
                "js": {"value": self.js[0], "error": self.js[1]},
                "js_floor": {"value": self.js_floor[0], "error": self.js_floor[1]}}


@dataclass(frozen=True)
class ReferenceNoise:
    """The MD reference's own noise (task.yaml ``reference_noise``; :mod:`cgbg_bench.provisional`): the
    JS between its halves along the headline ``observable`` (None: too few blocks to split) and the
    system's target. Above the target (or unmeasured) the task is provisional."""

    observable: str
    js_halves: float | None
    target: float

    @property
    def provisional(self) -> bool:
        return self.js_halves is None or self.js_halves > self.target

    def describe(self) -> str:
        """'provisional: reference JS(1st half, 2nd half) 0.034 > target 0.01' or the final-task line."""
        if self.js_halves is None:
            return (f"provisional: reference too short to split in halves (target JS(1st half, 2nd half) "
                    f"<= {self.target:g} on {self.observable})")
        sign = ">" if self.provisional else "<="
        return (f"{'provisional: ' if self.provisional else ''}reference JS(1st half, 2nd half) on "
                f"{self.observable} {self.js_halves:.3g} {sign} target {self.target:g}")

    def as_dict(self) -> dict:
        return {"observable": self.observable, "js_halves": self.js_halves, "target": self.target,
                "provisional": self.provisional}


@dataclass(frozen=True)
class Proposal:
    """The proposal bank: CG positions with the exact log-density of the flow that drew them."""

    positions: np.ndarray  # (N, *input_shape) float32
    log_q: np.ndarray  # (N,) float64


@dataclass(frozen=True)
class Reference:
    """Reference histograms stored per block, so that they can be block-bootstrapped.

    block_hist has shape (n_blocks, n_observables, n_bins) (bins flattened in C order).
    ``exact`` marks an analytic reference with no sampling error (n_blocks == 1).
    """

    block_hist: np.ndarray
    exact: bool
    extras: Mapping[str, np.ndarray] = field(default_factory=dict)

    @property
    def hist(self) -> np.ndarray:
        """The full-data histograms (n_observables, n_bins), normalized to sum 1 each."""
        h = self.block_hist.sum(axis=0)
        return h / (h.sum(axis=-1, keepdims=True) + 1e-10)


@dataclass(frozen=True)
class Task:
    name: str
    version: int
    description: str
    system: str
    representation: str
    n_beads: int
    input_shape: tuple[int, ...]
    energy_unit: str
    temperature_kelvin: float | None
    kT: float
    observables: tuple[Observable, ...]
    metrics: MetricSettings
    proposal: DataFile
    reference: DataFile
    baselines: tuple[Baseline, ...]
    baseline_scores: DataFile | None
    root: Path
    bank: BankSpec | None = None
    resolution: Resolution | None = None
    reference_noise: ReferenceNoise | None = None  # None: an exact reference, or built before it was measured

    @property
    def provisional(self) -> bool:
        """True while the MD reference's own noise is above its target (:class:`ReferenceNoise`)."""
        return self.reference_noise is not None and self.reference_noise.provisional

    def load_proposal(self, n_samples: int | None = None) -> Proposal:
        """The proposal bank (the first ``n_samples`` of it, or a generated bank of that size)."""
        if self.bank is not None:
            from cgbg_bench.bank import generated_bank

            positions, log_q = generated_bank(self, n_samples)
        else:
            with np.load(self.proposal.verify()) as z:
                positions = z["positions"][:n_samples]
                log_q = z["log_q"][:n_samples].astype(np.float64)
        if positions.shape[1:] != self.input_shape:
            raise DataError(
                f"{self.proposal.path}: positions have per-sample shape {positions.shape[1:]}, "
                f"task {self.name} expects {self.input_shape}"
            )
        if log_q.shape != positions.shape[:1]:
            raise DataError(f"{self.proposal.path}: log_q shape {log_q.shape} != ({len(positions)},)")
        if not (np.isfinite(positions).all() and np.isfinite(log_q).all()):
            raise DataError(f"{self.proposal.path}: proposal bank holds NaN or inf values")
        return Proposal(positions=positions.astype(np.float32, copy=False), log_q=log_q)

    def load_reference(self) -> Reference:
        with np.load(self.reference.verify()) as z:
            block_hist = z["block_hist"].astype(np.float64)
            exact = bool(z["exact"])
            extras = {k: z[k] for k in z.files if k not in ("block_hist", "exact")}
        expected = (len(self.observables),)
        n_bins = max(o.n_bins for o in self.observables)
        if block_hist.ndim != 3 or block_hist.shape[1:2] != expected or block_hist.shape[2] != n_bins:
            raise DataError(
                f"{self.reference.path}: block_hist has shape {block_hist.shape}, expected "
                f"(n_blocks, {len(self.observables)}, {n_bins})"
            )
        if not np.isfinite(block_hist).all() or (block_hist < 0).any():
            raise DataError(f"{self.reference.path}: block_hist must be finite and non-negative")
        return Reference(block_hist=block_hist, exact=exact, extras=extras)

    def data_files(self) -> list[tuple[str, DataFile]]:
        """Every file the task records a sha256 for, with a label (``proposal``, ``baseline fm``, ...)."""
        files = [("proposal", self.proposal), ("reference", self.reference)]
        files += [(f"baseline {b.name}", b.file) for b in self.baselines]
        if self.baseline_scores is not None:
            files.append(("baseline_scores", self.baseline_scores))
        for label, f in list(files):
            flow, sha = f.provenance.get("flow"), f.provenance.get("flow_sha256")
            if isinstance(flow, str) and isinstance(sha, str):
                files.append((f"{label} flow", DataFile(path=(f.path.parent / flow).resolve(), sha256=sha)))
        return files

    def verify_files(self) -> list[tuple[str, DataFile]]:
        """Check every recorded file's sha256, and that every file in the task folder is recorded.

        Raises TaskFileMissing, HashMismatch, or TaskFileUnlisted (a file in the folder with no
        sha256 in task.yaml, which could be edited unnoticed). Returns what was checked.
        """
        files = self.data_files()
        for _, f in files:
            f.verify()
        listed = {f.path.resolve() for _, f in files}
        for p in sorted(self.root.iterdir()):
            if p.name != "task.yaml" and p.resolve() not in listed:
                raise TaskFileUnlisted(
                    f"{p} is in the task folder but task.yaml records no sha256 for it, so it cannot be "
                    "verified: remove it, or rebuild the task (`cgbg-bench make-task ...`) so that it is recorded")
        return files

    def baseline(self, name: str) -> Baseline:
        for b in self.baselines:
            if b.name == name:
                return b
        raise TaskSchemaError(
            f"task {self.name} has no baseline {name!r}; it has {[b.name for b in self.baselines]}"
        )


def list_tasks(root: Path | None = None) -> list[str]:
    root = root or tasks_root()
    if not root.is_dir():
        return []
    return sorted(p.name for p in root.iterdir() if (p / "task.yaml").is_file())


def load_task(name_or_path: str | os.PathLike, root: Path | None = None) -> Task:
    """Load a task by registry name (``mueller-brown``) or by path to a task folder or yaml."""
    candidate = Path(name_or_path)
    if candidate.is_file():
        yaml_path = candidate
    elif (candidate / "task.yaml").is_file() and (os.sep in str(name_or_path) or candidate.is_absolute()):
        yaml_path = candidate / "task.yaml"
    else:
        root = root or tasks_root()
        yaml_path = root / str(name_or_path) / "task.yaml"
        if not yaml_path.is_file():
            names = list_tasks(root)
            close = difflib.get_close_matches(str(name_or_path), names, n=3, cutoff=0.4)
            hint = f"; did you mean {', '.join(close)}?" if close else ""
            raise TaskNotFound(
                f"no task named {str(name_or_path)!r}{hint} (known tasks: {', '.join(names) or 'none'}; "
                "`cgbg-bench list` shows them)"
            )
    data = load_yaml_file(yaml_path, error=TaskSchemaError)
    return parse_task(data, yaml_path.parent, where=str(yaml_path))


def _data_file(d: Any, base: Path, where: str, extra: frozenset = frozenset()) -> DataFile:
    check_keys(d, where=where, required={"path", "sha256"}, optional={"provenance"} | set(extra))
    require(d["path"], str, where=f"{where}.path")
    sha = require(d["sha256"], str, where=f"{where}.sha256")
    if len(sha) != 64:
        raise TaskSchemaError(f"{where}.sha256: expected 64 hex digits, got {short(sha)}")
    prov = d.get("provenance", {}) or {}
    require(prov, dict, where=f"{where}.provenance")
    return DataFile(path=(base / d["path"]).resolve(), sha256=sha, provenance=prov)


def _int_tuple(v: Any, where: str, length: int | None = None) -> tuple[int, ...]:
    require(v, list, where=where)
    out = tuple(require(i, int, where=f"{where}[{k}]") for k, i in enumerate(v))
    if length is not None and len(out) != length:
        raise TaskSchemaError(f"{where}: expected {length} integers, got {len(out)}")
    return out


def _metric_settings(d: Any, where: str) -> MetricSettings:
    m = check_keys(d, where=where, required={"n_bootstrap", "proposal_blocks"},
                   optional={"weighting", "clip_percentile"})
    weighting = require(m.get("weighting", "clip"), str, where=f"{where}: weighting")
    if weighting not in WEIGHTINGS:
        raise TaskSchemaError(f"{where}: weighting {short(weighting)} is not one of {list(WEIGHTINGS)}")
    clip = m.get("clip_percentile")
    if weighting == "clip":
        if clip is None:
            raise TaskSchemaError(f"{where}: weighting 'clip' needs clip_percentile (in (0, 100])")
        clip = float(require(clip, (int, float), where=f"{where}: clip_percentile"))
        if not 0 < clip <= 100:
            raise TaskSchemaError(f"{where}: clip_percentile must be in (0, 100], got {clip:g}")
    elif clip is not None:
        raise TaskSchemaError(f"{where}: clip_percentile applies to weighting 'clip' only; remove it "
                              f"(weighting {weighting!r})")
    return MetricSettings(
        clip_percentile=clip,
        n_bootstrap=require(m["n_bootstrap"], int, where=f"{where}: n_bootstrap"),
        proposal_blocks=require(m["proposal_blocks"], int, where=f"{where}: proposal_blocks"),
        weighting=weighting,
    )


def _observable(d: Any, where: str, input_shape: tuple[int, ...]) -> Observable:
    d = check_keys(d, where=where, required={"name", "kind", "bins"}, optional={"index", "range", "phi", "psi"})
    name = require(d["name"], str, where=f"{where}.name")
    kind = d["kind"]
    if kind not in OBSERVABLE_KINDS:
        raise TaskSchemaError(f"{where}.kind: {kind!r} is not one of {OBSERVABLE_KINDS}")
    bins = require(d["bins"], int, where=f"{where}.bins")
    if bins < 1:
        raise TaskSchemaError(f"{where}.bins: must be positive, got {bins}")
    size = int(np.prod(input_shape))
    if kind == "coordinate":
        if "index" not in d or "range" not in d:
            raise TaskSchemaError(f"{where}: a coordinate observable needs 'index' and 'range'")
        index = _int_tuple(d["index"], f"{where}.index", length=len(input_shape))
        flat = int(np.ravel_multi_index(index, input_shape)) if all(
            0 <= i < n for i, n in zip(index, input_shape)
        ) else -1
        if flat < 0:
            raise TaskSchemaError(f"{where}.index: {list(index)} is outside input shape {input_shape}")
        lo, hi = (float(require(x, (int, float), where=f"{where}.range")) for x in d["range"])
        if not lo < hi:
            raise TaskSchemaError(f"{where}.range: need low < high, got {d['range']}")
        return Observable(name, kind, ((flat,),), (bins,), ((lo, hi),))
    if "phi" not in d or "psi" not in d or "index" in d or "range" in d:
        raise TaskSchemaError(f"{where}: a dihedral_pair needs 'phi' and 'psi' (and no index/range: "
                              "dihedral histograms are on [-pi, pi] by definition)")
    n_beads = input_shape[0]
    quads = tuple(_int_tuple(d[k], f"{where}.{k}", length=4) for k in ("phi", "psi"))
    for q in quads:
        if any(not 0 <= i < n_beads for i in q) or len(set(q)) != 4:
            raise TaskSchemaError(f"{where}: dihedral beads {list(q)} must be 4 distinct indices < {n_beads}")
    return Observable(name, kind, quads, (bins, bins), (DIHEDRAL_RANGE, DIHEDRAL_RANGE))


_TOP_REQUIRED = {
    "name", "version", "description", "system", "representation", "n_beads", "input_shape",
    "energy_unit", "temperature_kelvin", "kT", "observables", "metrics", "proposal", "reference",
}
# recipe: cgbg_bench.build.recipe (how it was built); resolution: cgbg_bench.resolution;
# reference_noise: cgbg_bench.provisional
_TOP_OPTIONAL = {"baselines", "baseline_scores", "recipe", "resolution", "reference_noise"}


def parse_task(data: Any, base: Path, where: str = "task.yaml") -> Task:
    """Validate a task.yaml mapping and build the frozen :class:`Task` (paths relative to base)."""
    d = check_keys(data, where=where, required=_TOP_REQUIRED, optional=_TOP_OPTIONAL)
    name = require(d["name"], str, where=f"{where}: name")
    input_shape = _int_tuple(d["input_shape"], f"{where}: input_shape")
    n_beads = require(d["n_beads"], int, where=f"{where}: n_beads")
    if input_shape[0] != n_beads or len(input_shape) not in (1, 2):
        raise TaskSchemaError(f"{where}: input_shape {list(input_shape)} must be [n_beads] or [n_beads, 3]")
    unit = d["energy_unit"]
    if unit not in ENERGY_UNITS:
        raise TaskSchemaError(f"{where}: energy_unit {unit!r} is not one of {ENERGY_UNITS}")
    kT = float(require(d["kT"], (int, float), where=f"{where}: kT"))
    if not kT > 0:
        raise TaskSchemaError(f"{where}: kT must be positive")
    temp = d["temperature_kelvin"]
    if temp is not None:
        temp = float(require(temp, (int, float), where=f"{where}: temperature_kelvin"))
    obs_list = require(d["observables"], list, where=f"{where}: observables")
    if not obs_list:
        raise TaskSchemaError(f"{where}: observables must not be empty")
    observables = tuple(
        _observable(o, f"{where}: observables[{i}]", input_shape) for i, o in enumerate(obs_list)
    )
    if len({o.n_bins for o in observables}) != 1:
        raise TaskSchemaError(f"{where}: all observables must have the same number of bins")
    metrics = _metric_settings(d["metrics"], f"{where}: metrics")
    baselines = []
    for i, b in enumerate(require(d.get("baselines", []) or [], list, where=f"{where}: baselines")):
        bw = f"{where}: baselines[{i}]"
        check_keys(b, where=bw, required={"name", "kind", "path", "sha256"}, optional={"description", "provenance"})
        if b["kind"] not in BASELINE_KINDS:
            raise TaskSchemaError(f"{bw}.kind: {b['kind']!r} is not one of {BASELINE_KINDS}")
        f = _data_file({k: b[k] for k in ("path", "sha256", "provenance") if k in b}, base, bw)
        baselines.append(Baseline(require(b["name"], str, where=f"{bw}.name"), b["kind"], f,
                                  str(b.get("description", ""))))
    scores = d.get("baseline_scores")
    bank = None
    gen = d["proposal"].get("generate") if isinstance(d["proposal"], dict) else None
    if gen is not None:
        gw = f"{where}: proposal.generate"
        check_keys(gen, where=gw, required={"generator", "n_samples", "seed", "fingerprint", "rtol"})
        fp = require(gen["fingerprint"], dict, where=f"{gw}.fingerprint")
        bank = BankSpec(
            generator=require(gen["generator"], str, where=f"{gw}.generator"),
            n_samples=require(gen["n_samples"], int, where=f"{gw}.n_samples"),
            seed=require(gen["seed"], int, where=f"{gw}.seed"),
            fingerprint={k: float(require(v, (int, float), where=f"{gw}.fingerprint.{k}")) for k, v in fp.items()},
            rtol=float(require(gen["rtol"], (int, float), where=f"{gw}.rtol")),
        )
    return Task(
        name=name,
        version=require(d["version"], int, where=f"{where}: version"),
        description=require(d["description"], str, where=f"{where}: description"),
        system=require(d["system"], str, where=f"{where}: system"),
        representation=require(d["representation"], str, where=f"{where}: representation"),
        n_beads=n_beads,
        input_shape=input_shape,
        energy_unit=unit,
        temperature_kelvin=temp,
        kT=kT,
        observables=observables,
        metrics=metrics,
        proposal=_data_file(d["proposal"], base, f"{where}: proposal", extra=frozenset({"generate"})),
        reference=_data_file(d["reference"], base, f"{where}: reference"),
        baselines=tuple(baselines),
        baseline_scores=_data_file(scores, base, f"{where}: baseline_scores") if scores else None,
        root=base.resolve(),
        bank=bank,
        resolution=_resolution(d.get("resolution"), f"{where}: resolution", observables),
        reference_noise=_reference_noise(d.get("reference_noise"), f"{where}: reference_noise", observables),
    )


def _reference_noise(d: Any, where: str, observables) -> ReferenceNoise | None:
    if d is None:
        return None
    d = check_keys(d, where=where, required={"observable", "js_halves", "target"})
    name = require(d["observable"], str, where=f"{where}.observable")
    if name != observables[0].name:
        raise TaskSchemaError(f"{where}.observable: {short(name)} is not the headline observable "
                              f"{observables[0].name!r}; rebuild the task")
    js = d["js_halves"]
    if js is not None:
        js = float(require(js, (int, float), where=f"{where}.js_halves"))
        if not (math.isfinite(js) and js >= 0):
            raise TaskSchemaError(f"{where}.js_halves: must be finite and >= 0 (or null: not measured), got {js}")
    target = float(require(d["target"], (int, float), where=f"{where}.target"))
    if not (math.isfinite(target) and target > 0):
        raise TaskSchemaError(f"{where}.target: must be finite and > 0, got {target}")
    return ReferenceNoise(name, js, target)


def _resolution(d: Any, where: str, observables) -> Resolution | None:
    if d is None:
        return None
    d = check_keys(d, where=where, required={"observable", "base", "js", "js_floor"})
    name = require(d["observable"], str, where=f"{where}.observable")
    if name != observables[0].name:
        raise TaskSchemaError(f"{where}.observable: {short(name)} is not the headline observable "
                              f"{observables[0].name!r}; rebuild the task")

    def pair(v, w):
        v = check_keys(v, where=w, required={"value", "error"})
        out = tuple(float(require(v[k], (int, float), where=f"{w}.{k}")) for k in ("value", "error"))
        if not all(math.isfinite(x) and x >= 0 for x in out):
            raise TaskSchemaError(f"{w}: value and error must be finite and >= 0, got {list(out)}")
        return out

    return Resolution(name, require(d["base"], str, where=f"{where}.base"), pair(d["js"], f"{where}.js"),
                      pair(d["js_floor"], f"{where}.js_floor"))
