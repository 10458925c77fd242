"""Resumable, chunked MD runs: setup, equilibration, production, status.

A run directory holds

- ``run.json``: the sidecar. ``settings`` (everything that changes the
  trajectory: compared on every resume, a difference raises
  RunSettingsMismatch), ``derived`` (atom counts, box, atom indices), and
  ``sessions`` (one entry per invocation that sets the run up or adds chunks: versions,
  platform, threads, seed used).
- ``system.xml.gz`` (the unbiased OpenMM System), ``start.pdb.gz`` (all atoms
  after equilibration), ``solute.pdb`` (heavy atoms only: the topology of the
  stored arrays; CG mappings select from it).
- ``chunk_NNNNNN.npz``: one fixed-size chunk, see ``CHUNK_KEYS``.
- ``checkpoint.npz``: OpenMM State (XML, portable across platforms), step,
  number of finished chunks, metadynamics grid.
- ``bias.npz`` (wtmetad: the latest grid) or ``static_bias.npz`` (static: the
  frozen grid).
- ``chunks.json``: the size and sha256 of every finished chunk, rewritten after
  each checkpoint (runs made before it existed lack it, or lack their first chunks:
  those chunks are checked by loading them whole, and recorded on the next resume).

Every file is written to a temporary name and renamed. A chunk is written before
the checkpoint that follows it, so a kill loses at most the chunk in progress.
On every resume (and in ``md status`` and :func:`load_chunks`) the chunks the
checkpoint covers are checked against chunks.json; a damaged or missing one stops
the run with an MDError that says how to restore it. Nothing is deleted: a chunk
beyond the checkpoint (a kill between the two renames, or an older checkpoint
restored) is moved aside to ``chunk_NNNNNN.npz.stale`` before it is run again, a
damaged one to ``chunk_NNNNNN.npz.damaged``. A damaged or missing checkpoint stops
``md run``: it holds the full state (water, velocities) that chunks, which store
the solute only, cannot rebuild.
"""

from __future__ import annotations

import contextlib
import dataclasses
import datetime as _dt
import gzip
import io
import json
import logging
import math
import os
import platform as _platform
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from cgbg_bench._io import atomic_path, atomic_savez, atomic_write_text, sha256_file
from cgbg_bench.cg.mappings import get_mapping, n_alanines, scored_residue
from cgbg_bench.errors import MDError, RunLocked, RunSettingsMismatch
from cgbg_bench.md import metadynamics as _metad
from cgbg_bench.md import systems as _systems
from cgbg_bench.md.build import build_peptide
from cgbg_bench.observables import dihedral

__all__ = [
    "BIASES",
    "RunSettings",
    "run",
    "run_status",
    "read_sidecar",
    "load_chunks",
    "load_cg",
    "chunk_paths",
    "CHUNK_KEYS",
]

log = logging.getLogger(__name__)

BIASES = ("none", "wtmetad", "static")
#: Iteration cap of the setup minimization (0: until converged). Not a run setting:
#: equilibration follows, and tests lower it to keep explicit-solvent setup short.
SETUP_MINIMIZE_MAX_ITERATIONS = 0
FORMAT = "cgbg-bench md run v1"
CHUNK_KEYS = {
    "time_ps": "(D,) float64, time of each dihedral sample",
    "phi": "(D, n_res) float32 rad, backbone phi of every alanine",
    "psi": "(D, n_res) float32 rad, backbone psi of every alanine",
    "bias_energy_kj_per_mol": "(D,) float32, bias energy V(phi, psi) (0 without bias)",
    "frame_time_ps": "(F,) float64, time of each position/force frame",
    "positions_nm": "(F, n_heavy, 3) float32, solute heavy atoms (solute.pdb order)",
    "forces_kj_per_mol_nm": "(F, n_heavy, 3) float32, UNBIASED force on each heavy atom's group: the "
                            "heavy atom plus its bonded (constrained) hydrogens",
    "potential_energy_kj_per_mol": "(F,) float64, unbiased potential energy",
    "min_image_distance_nm": "(F,) float32, smallest distance between a peptide atom "
                             "(H included) and a periodic image of the peptide; NaN without PBC",
    "chunk_index": "() int, 0-based",
    "wall_seconds": "() float, wall time spent on this chunk",
    "cpu_seconds": "() float, CPU time of the process on this chunk (all threads)",
}


@dataclass(frozen=True)
class RunSettings:
    """Everything that determines the trajectory; compared on every resume."""

    system: str
    solvent: str
    bias: str = "none"
    seed: int = 1
    chunk_ps: float = 100.0
    timestep_fs: float = 4.0
    temperature_kelvin: float = 300.0
    friction_per_ps: float = 1.0
    frame_interval_ps: float = 1.0
    dihedral_interval_ps: float = 0.1
    equilibration_ps: float | None = None  # None: 100 ps NPT (explicit) or 20 ps NVT
    bias_residue: int | None = None  # alanine number 1..n; None: the scored one (mappings.SCORED_RESIDUE)
    metad: _metad.MetadParams = field(default_factory=_metad.MetadParams)
    static_bias_sha256: str | None = None
    start_phi_psi_deg: tuple[float, float] = (-80.0, 150.0)
    #: explicit solvent: cell shape and the smallest solute-image distance it keeps (nm)
    box_shape: str = "cube"
    image_distance_nm: float = _systems.SOLUTE_IMAGE_DISTANCE_NM
    #: repartitioned hydrogen mass (amu); None: the force field's masses (then a 2 fs step)
    hydrogen_mass_amu: float | None = _systems.HYDROGEN_MASS_AMU

    def resolved(self) -> "RunSettings":
        """Fill defaults that depend on the system and check consistency."""
        n = n_alanines(self.system)
        _systems.forcefield_files(self.solvent)
        if self.bias not in BIASES:
            raise MDError(f"unknown bias {self.bias!r}; choose one of {list(BIASES)}")
        equil = self.equilibration_ps
        if equil is None:
            equil = 100.0 if self.solvent == "explicit" else 20.0
        residue = self.bias_residue if self.bias_residue is not None else scored_residue(self.system)
        if self.box_shape not in _systems.BOX_SHAPES:
            raise MDError(f"unknown box shape {self.box_shape!r}; choose one of "
                          f"{list(_systems.BOX_SHAPES)}")
        if self.image_distance_nm <= _systems.PME_CUTOFF_NM:
            raise MDError(f"image distance {self.image_distance_nm} nm must exceed the "
                          f"{_systems.PME_CUTOFF_NM} nm cutoff")
        if not 1 <= residue <= n:
            raise MDError(f"bias_residue {residue} out of range 1..{n} for {self.system}")
        metad = self.metad if self.bias == "wtmetad" else None
        if metad is not None:
            metad.check()
        out = dataclasses.replace(self, equilibration_ps=float(equil), bias_residue=residue,
                                  metad=metad, start_phi_psi_deg=tuple(self.start_phi_psi_deg))
        out.steps()  # validates the intervals
        return out

    def steps(self) -> dict:
        """Step counts of the intervals; each must be a whole number of steps."""
        dt = self.timestep_fs / 1000.0
        out = {}
        for key, ps in [("dihedral", self.dihedral_interval_ps), ("frame", self.frame_interval_ps),
                        ("chunk", self.chunk_ps)]:
            n = ps / dt
            if n < 1 or abs(n - round(n)) > 1e-6:
                raise MDError(f"{key} interval {ps} ps is not a whole number of {dt} ps steps")
            out[key] = int(round(n))
        if out["frame"] % out["dihedral"] or out["chunk"] % out["frame"]:
            raise MDError("the frame interval must be a multiple of the dihedral interval, "
                          "and the chunk a multiple of the frame interval")
        if self.metad is not None:
            pace = self.metad.pace_ps / dt
            if abs(pace - round(pace)) > 1e-6 or round(pace) % out["dihedral"]:
                raise MDError("the metadynamics pace must be a multiple of the dihedral interval")
            out["pace"] = int(round(pace))
        return out

    def to_dict(self) -> dict:
        d = dataclasses.asdict(self)
        box_shape, image_distance = d.pop("box_shape"), d.pop("image_distance_nm")
        d["start_phi_psi_deg"] = list(d["start_phi_psi_deg"])
        d["forcefield_files"] = list(_systems.forcefield_files(self.solvent))
        d["constraints"] = "HBonds"
        # With bonds to hydrogen constrained, the mapped force that estimates the mean force
        # on a heavy-atom bead is the total force on the heavy atom and its hydrogens (the
        # group moves together; constraint forces cancel inside it). The heavy atom's force
        # alone misses the hydrogens' share (force aggregation; Kramer et al., JPCL 2023).
        d["force_aggregation"] = "heavy atom + bonded hydrogens"
        d["integrator"] = "LangevinMiddleIntegrator"
        if self.solvent == "explicit":
            d["nonbonded"] = {"method": "PME", "cutoff_nm": _systems.PME_CUTOFF_NM}
            d["box"] = {"min_image_distance_nm": image_distance,
                        "margin_nm": _systems.BOX_MARGIN_NM, "water": "tip3p",
                        "equilibration": "minimize, then NPT 1 bar MC barostat, then NVT"}
            if box_shape != "cube":  # runs made before the shape was a setting are cubes
                d["box"]["shape"] = box_shape
        elif box_shape != "cube" or image_distance != _systems.SOLUTE_IMAGE_DISTANCE_NM:
            raise MDError("a box shape and image distance apply to explicit solvent only")
        else:
            d["nonbonded"] = {"method": "NoCutoff"}
        return d


def chunk_paths(out_dir: str | os.PathLike) -> list[Path]:
    return sorted(Path(out_dir).glob("chunk_[0-9][0-9][0-9][0-9][0-9][0-9].npz"))


def _chunk_path(out_dir: Path, index: int) -> Path:
    return out_dir / f"chunk_{index:06d}.npz"


def _chunk_index(path: Path) -> int:
    return int(path.name[len("chunk_"):-len(".npz")])


MANIFEST = "chunks.json"
MANIFEST_FORMAT = "cgbg-bench md chunks v1"
#: keys that every chunk has (chunks written before it existed lack min_image_distance_nm)
_REQUIRED_CHUNK_KEYS = frozenset(CHUNK_KEYS) - {"min_image_distance_nm"}
_CHECKPOINT_KEYS = ("state_xml", "step", "chunks_done")


def _chunk_record(path: Path) -> dict:
    return {"chunk": path.name, "bytes": path.stat().st_size, "sha256": sha256_file(path)}


def _read_manifest(out_dir: Path) -> tuple[dict[str, dict], str | None]:
    """chunk name -> record of ``chunks.json`` ({} when absent), and what is wrong with it, if anything."""
    path = out_dir / MANIFEST
    if not path.exists():
        return {}, None
    try:
        data = json.loads(path.read_text())
        if not isinstance(data, dict) or data.get("format") != MANIFEST_FORMAT:
            raise ValueError(f"not a {MANIFEST_FORMAT!r} file")
        out = {}
        for rec in data["chunks"]:
            if not (isinstance(rec.get("chunk"), str) and isinstance(rec.get("bytes"), int)
                    and isinstance(rec.get("sha256"), str)):
                raise ValueError(f"bad record {rec!r}")
            out[rec["chunk"]] = rec
        return out, None
    except (OSError, ValueError, KeyError, TypeError, AttributeError) as exc:
        return {}, f"{MANIFEST} is unreadable ({type(exc).__name__}: {exc})"


def _write_manifest(out_dir: Path, records: list[dict]) -> None:
    lines = ",\n".join(" " + json.dumps(r) for r in records)
    atomic_write_text(out_dir / MANIFEST, f'{{"format": "{MANIFEST_FORMAT}", "chunks": [\n{lines}\n]}}\n')


def _check_chunk(path: Path, index: int, record: dict | None) -> str | None:
    """None when the chunk is good, else what is wrong with it.

    With a record (chunks.json): its size and sha256 must match. Without (chunks written
    before chunks.json existed): it must load whole (zip CRCs) and have its keys.
    """
    if not path.is_file():
        return "missing"
    if record is not None:
        size = path.stat().st_size
        if size != record["bytes"]:
            return f"damaged ({size} bytes, {record['bytes']} recorded when it was written)"
        if sha256_file(path) != record["sha256"]:
            return "damaged (its sha256 differs from the one recorded when it was written)"
        return None
    try:
        with np.load(path) as z:
            arrays = {k: z[k] for k in z.files}
    except Exception as exc:  # noqa: BLE001 - BadZipFile, EOFError, zlib.error, ValueError...: all damage
        return f"damaged (unreadable: {type(exc).__name__}: {exc})"
    missing = _REQUIRED_CHUNK_KEYS - set(arrays)
    if missing:
        return f"damaged (it has no {sorted(missing)})"
    if arrays["chunk_index"].ndim or int(arrays["chunk_index"]) != index:
        return f"damaged (it holds chunk_index {arrays['chunk_index']!r})"
    return None


def _checkpoint_state(out_dir: Path) -> tuple[dict | None, str | None]:
    """(checkpoint, None), or (None, "missing" / "damaged (why)")."""
    path = out_dir / "checkpoint.npz"
    if not path.exists():
        return None, "missing"
    try:
        with np.load(path) as z:
            ckpt = {k: (z[k].item() if z[k].ndim == 0 else z[k]) for k in z.files}
    except Exception as exc:  # noqa: BLE001 - any failure to read it is damage
        return None, f"damaged (unreadable: {type(exc).__name__}: {exc})"
    missing = [k for k in _CHECKPOINT_KEYS if k not in ckpt]
    if missing:
        return None, f"damaged (it has no {missing})"
    if not str(ckpt["state_xml"]).rstrip().endswith("</State>"):
        return None, "damaged (its OpenMM state is cut short)"
    if int(ckpt["chunks_done"]) < 0 or int(ckpt["step"]) < 0:
        return None, f"damaged (chunks_done {ckpt['chunks_done']}, step {ckpt['step']})"
    return ckpt, None


def _good_chunks(out_dir: Path, manifest: dict[str, dict]) -> int:
    """How many chunks, from chunk 0 on, are on disk and good (no checkpoint to say how many are finished)."""
    n = 0
    while _check_chunk(_chunk_path(out_dir, n), n, manifest.get(_chunk_path(out_dir, n).name)) is None:
        n += 1
    return n


def _checkpoint_advice(out_dir: Path, problem: str, good: int, n_files: int) -> str:
    return (
        f"{out_dir}: checkpoint.npz is {problem}. {n_files} chunk file(s) are on disk, the first {good} "
        "of them good; they stay readable (md report, make-task), but the run cannot be continued "
        "without its checkpoint, and the checkpoint cannot be rebuilt from chunks: it holds the whole "
        "state (water and velocities included), the chunks only the solute. To continue, restore it, e.g. "
        f"`git checkout -- {out_dir / 'checkpoint.npz'}` if it is committed (an older checkpoint will do: "
        "the chunks after it are moved aside as .stale and run again), or start a new run in another "
        "out_dir."
    )


def _move_aside(path: Path, tag: str) -> Path:
    """Rename ``path`` to ``path.tag`` (``.tag.1``, ... if taken); never deletes anything."""
    dest = path.with_name(f"{path.name}.{tag}")
    i = 0
    while dest.exists():
        i += 1
        dest = path.with_name(f"{path.name}.{tag}.{i}")
    os.rename(path, dest)
    return dest


def _verify_for_resume(out_dir: Path, done: int) -> list[dict]:
    """Check the ``done`` chunks the checkpoint covers and move aside chunks beyond it.

    Returns their records (chunks.json, rewritten if it lacked some). A damaged or missing
    chunk below ``done`` raises MDError: the checkpoint is past it, so it cannot be run again.
    """
    manifest, problem = _read_manifest(out_dir)
    if problem:
        dest = _move_aside(out_dir / MANIFEST, "damaged")
        log.warning("%s: %s (moved aside to %s); checking the chunks by loading them, and writing it anew",
                    out_dir, problem, dest.name)
    records, bad = [], []
    for k in range(done):
        path = _chunk_path(out_dir, k)
        rec = manifest.get(path.name)
        why = _check_chunk(path, k, rec)
        if why is None:
            records.append(rec if rec is not None else _chunk_record(path))
        else:
            bad.append((path, why))
    if bad:
        lines = []
        for path, why in bad:
            moved = f"; moved aside to {_move_aside(path, 'damaged').name}" if path.exists() else ""
            lines.append(f"{path.name} is {why}{moved}")
        first = bad[0][0]
        raise MDError(
            f"{out_dir}: the checkpoint covers {done} chunks, but " + "; ".join(lines) + ". The checkpoint "
            "is past it, so it cannot be run again. Restore it, e.g. "
            f"`git checkout -- {first}` if it is committed, then run again. Otherwise the run cannot be "
            "extended without a gap: start a new run in another out_dir; the chunks before it "
            f"stay readable with max_chunks {out_dir}={_chunk_index(first)}."
        )
    for path in chunk_paths(out_dir):
        k = _chunk_index(path)
        if k < done:
            continue
        why = _check_chunk(path, k, manifest.get(path.name))
        dest = _move_aside(path, "stale" if why is None else "damaged")
        if why is None:
            log.warning("%s: %s is beyond the checkpoint (%d chunks; a run killed after writing it, or an "
                        "older checkpoint): moved aside to %s, running it again", out_dir, path.name, done,
                        dest.name)
        else:
            log.warning("%s: %s, beyond the checkpoint (%d chunks), is %s: moved aside to %s, running it "
                        "again", out_dir, path.name, done, why, dest.name)
    if problem or [manifest.get(r["chunk"]) for r in records] != records or len(manifest) != len(records):
        _write_manifest(out_dir, records)
    return records


def load_chunks(out_dir: str | os.PathLike, keys: tuple[str, ...] | None = None,
                max_chunks: int | None = None) -> dict:
    """Concatenate the array keys of the finished chunks (those the checkpoint covers).

    ``max_chunks``: only the first n (chunks are append-only, so a build that records n
    can be repeated exactly while the run goes on).

    Without ``keys``: the keys that every chunk has (chunks written by older code may
    lack newer keys such as ``min_image_distance_nm``). A key in ``keys`` that some
    chunk lacks raises MDError.
    """
    out_dir = Path(out_dir)
    manifest, problem = _read_manifest(out_dir)
    if problem:
        log.warning("%s: %s; checking the chunks by loading them", out_dir, problem)
    ckpt, ck_problem = _checkpoint_state(out_dir)
    if ckpt is not None:
        done = int(ckpt["chunks_done"])
    else:
        done = _good_chunks(out_dir, manifest)  # every chunk on disk, up to the first bad one
        if ck_problem != "missing":
            log.warning("%s: checkpoint.npz is %s; reading the %d good chunks from chunk 0 on",
                        out_dir, ck_problem, done)
    if max_chunks is not None:
        if max_chunks > done:
            raise MDError(f"{out_dir}: {max_chunks} chunks requested, only {done} finished")
        done = max_chunks
    if not done:
        raise MDError(f"{out_dir}: no finished chunks")
    paths = [_chunk_path(out_dir, k) for k in range(done)]
    parts: dict[str, list] = {}
    common: set[str] | None = None
    for i, p in enumerate(paths):
        why = _check_chunk(p, i, manifest.get(p.name))
        if why is not None:
            raise MDError(f"{p} is {why}; restore it (e.g. `git checkout -- {p}`), or read only the "
                          f"chunks before it (max_chunks {out_dir}={i})")
        with np.load(p) as z:
            arrays = {k: z[k] for k in z.files if z[k].ndim}
        missing = set(keys or ()) - set(arrays)
        if missing:
            raise MDError(f"{p.name} has no {sorted(missing)}")
        common = set(arrays) if common is None else common & set(arrays)
        for k, v in arrays.items():
            if keys is None or k in keys:
                parts.setdefault(k, []).append(v)
    return {k: np.concatenate(v) for k, v in parts.items() if k in common}


def load_cg(out_dir: str | os.PathLike, representation: str, max_chunks: int | None = None) -> dict:
    """The finished chunks of a run mapped to a CG representation.

    Returns ``positions_nm`` (F, n_beads, 3) float32 and ``forces_kj_per_mol_nm`` (F,
    n_beads, 3) float32: the mapped unbiased force of each bead, the sum of the stored
    forces (each heavy atom with its constrained hydrogens) over the bead's force group,
    i.e. the bead atom plus the heavy atoms the representation drops that are nearest to
    it along the bonds (:meth:`CGMapping.force_groups`; for heavy-atom mappings the bead
    atom alone); their ``frame_time_ps``, and the per-0.1 ps ``time_ps``, ``phi``, ``psi``
    (every alanine) and ``bias_energy_kj_per_mol``; plus ``mapping``, the CGMapping used
    (its ``residues`` are alanine numbers 1..n: column r - 1 of ``phi``/``psi``).
    """
    import mdtraj as md

    out_dir = Path(out_dir)
    system = json.loads((out_dir / "run.json").read_text())["settings"]["system"]
    mapping = get_mapping(system, representation)
    topology = md.load(str(out_dir / "solute.pdb")).topology
    beads = mapping.atom_indices(topology)
    data = load_chunks(out_dir, max_chunks=max_chunks)
    data["positions_nm"] = np.ascontiguousarray(data["positions_nm"][:, beads])
    forces = data["forces_kj_per_mol_nm"]
    data["forces_kj_per_mol_nm"] = np.ascontiguousarray(
        np.stack([forces[:, g].sum(1, dtype=np.float64) for g in mapping.force_groups(topology)], 1)
        .astype(np.float32))
    data["mapping"] = mapping
    return data


def _versions() -> dict:
    import mdtraj
    import openmm

    import cgbg_bench

    return {"openmm": openmm.__version__, "mdtraj": mdtraj.__version__, "numpy": np.__version__,
            "cgbg_bench": cgbg_bench.__version__, "python": _platform.python_version()}


def _now() -> str:
    return _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds")


@contextlib.contextmanager
def _lock(out_dir: Path):
    import fcntl

    out_dir.mkdir(parents=True, exist_ok=True)
    fh = open(out_dir / ".lock", "a+")  # not "w": a refused writer must not erase the pid
    try:
        try:
            fcntl.flock(fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            raise RunLocked(f"{out_dir} is being written by another process; wait for it or "
                            "stop it before resuming") from None
        fh.seek(0)
        fh.truncate()
        fh.write(str(os.getpid()))
        fh.flush()
        yield
    finally:
        fh.close()


def _compare(saved: dict, wanted: dict, out_dir: Path) -> None:
    # Without a bias the biased residue enters nothing (an unbiased ala6 run made when the default
    # was the middle residue, 3, resumes under today's default, the scored residue 4).
    unbiased = saved.get("bias") == wanted.get("bias") == "none"
    diffs = [f"{k}: run has {saved.get(k)!r}, command asks {wanted.get(k)!r}"
             for k in sorted(set(saved) | set(wanted))
             if saved.get(k) != wanted.get(k) and not (unbiased and k == "bias_residue")]
    if diffs:
        raise RunSettingsMismatch(
            f"{out_dir} was made with different settings; refusing to append.\n  "
            + "\n  ".join(diffs)
            + "\nRe-run with the run's settings (see its run.json) or use a new out_dir."
        )


def _seed(seed: int, *salt: int) -> int:
    return int(np.random.SeedSequence([int(seed), *salt]).generate_state(1)[0] % (2**31 - 1)) + 1


def _serialize_gz(path: Path, text: str) -> None:
    with atomic_path(path) as tmp:
        with gzip.open(tmp, "wt") as fh:
            fh.write(text)


def _read_checkpoint(out_dir: Path) -> dict:
    ckpt, problem = _checkpoint_state(out_dir)
    if ckpt is None:
        raise MDError(f"{out_dir}: checkpoint.npz is {problem}")
    return ckpt


def _load_static_grid(bias_from: Path) -> dict:
    path = bias_from / "bias.npz" if bias_from.is_dir() else bias_from
    if not path.exists():
        raise MDError(f"bias_from {bias_from}: no bias.npz there (a run with bias 'wtmetad' writes it)")
    try:
        with np.load(path) as z:
            return {"grid": np.asarray(z["grid_kj_per_mol"], dtype=np.float64),
                    "residue": int(z["residue"]), "sha256": sha256_file(path), "path": str(path)}
    except Exception as exc:  # noqa: BLE001 - any failure to read it is damage
        raise MDError(f"{path} is damaged ({type(exc).__name__}: {exc}); restore it, e.g. "
                      f"`git checkout -- {path}`") from None


class _Engine:
    """The live simulation of one invocation."""

    def __init__(self, settings: RunSettings, out_dir: Path, derived: dict, platform, props,
                 static_grid=None):
        import openmm
        import openmm.app as app

        self.s = settings
        self.out = out_dir
        self.steps = settings.steps()
        try:
            with gzip.open(out_dir / "system.xml.gz", "rt") as fh:
                system = openmm.XmlSerializer.deserialize(fh.read())
            with gzip.open(out_dir / "start.pdb.gz", "rt") as fh:
                topology = app.PDBFile(fh).topology
        except Exception as exc:  # noqa: BLE001 - gzip, XML or PDB errors: all damage
            raise MDError(f"{out_dir}: system.xml.gz or start.pdb.gz is damaged ({type(exc).__name__}: "
                          f"{exc}); restore them, e.g. `git checkout -- {out_dir}/system.xml.gz "
                          f"{out_dir}/start.pdb.gz`") from None
        self.heavy = np.asarray(derived["heavy_atom_indices"])
        self.phi_q = [tuple(q) for q in derived["phi_quads_heavy"]]
        self.psi_q = [tuple(q) for q in derived["psi_quads_heavy"]]
        k = settings.bias_residue - 1
        phi_atoms = tuple(int(self.heavy[i]) for i in self.phi_q[k])
        psi_atoms = tuple(int(self.heavy[i]) for i in self.psi_q[k])
        self.metad = None
        if settings.bias == "wtmetad":
            self.metad = _metad.add_wtmetad(system, phi_atoms, psi_atoms, settings.metad,
                                            settings.temperature_kelvin)
        elif settings.bias == "static":
            _metad.add_static_bias(system, phi_atoms, psi_atoms, static_grid)
        self.n_peptide = int(derived["n_peptide_atoms"])
        # (n_heavy, n_peptide) 0/1 matrix: row k sums the forces of heavy atom k's group
        owner = np.asarray(derived["force_owner"])
        self.aggregate = (owner[None, :] == np.arange(len(self.heavy))[:, None]).astype(np.float64)
        # explicit solvent only (NVT: fixed box); runs made before the vectors were stored are cubes
        box = derived.get("box_vectors_nm", derived.get("box_edge_nm"))
        self.image_shifts = None if box is None else _systems.image_shifts(box)
        self.system, self.topology = system, topology
        self.platform, self.props = platform, props
        self.platform_name = platform.getName()
        self.sim = None
        self._state_xml = None

    def restore(self, ckpt: dict) -> None:
        if self.metad is not None:
            # Before any Context exists: the System's bias table now holds the saved grid.
            self.metad.set_grid(ckpt["metad_grid"])
        self._state_xml = str(ckpt["state_xml"])
        self._step = int(ckpt["step"])

    def _start_chunk(self, chunk: int) -> None:
        """A fresh Context for each chunk, its Langevin seed derived from (seed, chunk),
        started from the serialized state of the previous chunk's end (the checkpoint's):
        an uninterrupted run and a resumed one take the same path (reinitialize() would
        not pick up a new seed)."""
        import openmm
        import openmm.app as app

        s = self.s
        integrator = openmm.LangevinMiddleIntegrator(
            s.temperature_kelvin, s.friction_per_ps, s.timestep_fs / 1000.0)
        integrator.setRandomNumberSeed(_seed(s.seed, 2, chunk))
        self.sim = app.Simulation(self.topology, self.system, integrator, self.platform, self.props)
        self.sim.context.setState(openmm.XmlSerializer.deserialize(self._state_xml))
        self.sim.currentStep = self._step

    def run_chunk(self, chunk: int) -> dict:
        import openmm.unit as u

        s, st = self.s, self.steps
        self._start_chunk(chunk)
        t0, c0 = time.perf_counter(), time.process_time()
        dt_ps = s.timestep_fs / 1000.0
        n_dih = st["chunk"] // st["dihedral"]
        per_frame = st["frame"] // st["dihedral"]
        n_heavy = len(self.heavy)
        times = np.empty(n_dih)
        phi = np.empty((n_dih, len(self.phi_q)), np.float32)
        psi = np.empty((n_dih, len(self.psi_q)), np.float32)
        vbias = np.zeros(n_dih, np.float32)
        n_frames = n_dih // per_frame
        ftimes = np.empty(n_frames)
        pos_out = np.empty((n_frames, n_heavy, 3), np.float32)
        frc_out = np.empty((n_frames, n_heavy, 3), np.float32)
        epot = np.empty(n_frames)
        image_dist = np.full(n_frames, np.nan, np.float32)
        ctx = self.sim.context
        biased = s.bias != "none"
        groups_bias = {_metad.BIAS_FORCE_GROUP}
        groups_unbiased = set(_metad.UNBIASED_GROUPS)
        for i in range(n_dih):
            self.sim.step(st["dihedral"])
            step = self.sim.currentStep
            state = ctx.getState(getPositions=True, getEnergy=biased, groups=groups_bias)
            all_xyz = state.getPositions(asNumpy=True).value_in_unit(u.nanometer)
            xyz = all_xyz[self.heavy][None]
            times[i] = step * dt_ps
            phi[i] = [dihedral(xyz, q)[0] for q in self.phi_q]
            psi[i] = [dihedral(xyz, q)[0] for q in self.psi_q]
            if biased:
                e_bias = state.getPotentialEnergy().value_in_unit(u.kilojoule_per_mole)
                vbias[i] = e_bias
            if self.metad is not None and step % st["pace"] == 0:
                # A hill every pace, its height from the bias energy just read.
                self.metad.deposit(ctx, e_bias)
            if (i + 1) % per_frame == 0:
                j = (i + 1) // per_frame - 1
                fstate = ctx.getState(getForces=True, getEnergy=True, groups=groups_unbiased)
                frc = fstate.getForces(asNumpy=True).value_in_unit(u.kilojoule_per_mole / u.nanometer)
                ftimes[j] = times[i]
                pos_out[j] = xyz[0]
                if self.image_shifts is not None:
                    image_dist[j] = _min_image_distance(all_xyz[: self.n_peptide], self.image_shifts)
                frc_out[j] = self.aggregate @ frc[: self.n_peptide]
                epot[j] = fstate.getPotentialEnergy().value_in_unit(u.kilojoule_per_mole)
        if not (np.all(np.isfinite(pos_out)) and np.all(np.isfinite(frc_out))):
            raise MDError(f"chunk {chunk}: non-finite positions or forces (the run blew up)")
        return {
            "time_ps": times, "phi": phi, "psi": psi, "bias_energy_kj_per_mol": vbias,
            "frame_time_ps": ftimes, "positions_nm": pos_out, "forces_kj_per_mol_nm": frc_out,
            "potential_energy_kj_per_mol": epot, "min_image_distance_nm": image_dist,
            "chunk_index": np.int64(chunk),
            "wall_seconds": np.float64(time.perf_counter() - t0),
            "cpu_seconds": np.float64(time.process_time() - c0),
        }

    def checkpoint(self, chunks_done: int) -> None:
        import openmm

        state = self.sim.context.getState(getPositions=True, getVelocities=True,
                                          getParameters=True, enforcePeriodicBox=False)
        self._state_xml = openmm.XmlSerializer.serialize(state)
        self._step = int(self.sim.currentStep)
        arrays = {"state_xml": np.array(self._state_xml),
                  "step": np.int64(self._step), "chunks_done": np.int64(chunks_done)}
        if self.metad is not None:
            grid = self.metad.grid
            arrays["metad_grid"] = grid
            atomic_savez(self.out / "bias.npz", grid_kj_per_mol=grid,
                         axis_rad=_metad.grid_axis(grid.shape[0]),
                         residue=np.int64(self.s.bias_residue),
                         time_ps=np.float64(self.sim.currentStep * self.s.timestep_fs / 1000.0),
                         free_energy_kj_per_mol=self.metad.free_energy())
        atomic_savez(self.out / "checkpoint.npz", **arrays)


def _setup(settings: RunSettings, out_dir: Path, platform, props, static: dict | None) -> dict:
    """Build, solvate, minimize and equilibrate; write system, start structure, checkpoint."""
    import mdtraj as md
    import openmm
    import openmm.app as app
    import openmm.unit as u

    s = settings
    phi0, psi0 = s.start_phi_psi_deg
    peptide = build_peptide(s.system, phi0, psi0)
    n_pep = peptide.n_atoms
    derived: dict = {}
    if s.solvent == "explicit":
        topology, positions, vectors, dist = _systems.solvate(
            peptide, distance_nm=s.image_distance_nm, box_shape=s.box_shape)
        derived.update(initial_box_vectors_nm=vectors.tolist(),
                       initial_min_image_distance_nm=dist)
        if s.box_shape == "cube":
            derived.update(initial_box_edge_nm=float(vectors[0, 0]))
    else:
        topology, positions = peptide.topology, peptide.positions_nm
    explicit = s.solvent == "explicit"
    eq_system = _systems.create_system(topology, s.solvent, barostat=explicit,
                                       temperature_kelvin=s.temperature_kelvin,
                                       hydrogen_mass_amu=s.hydrogen_mass_amu)
    integrator = openmm.LangevinMiddleIntegrator(s.temperature_kelvin, s.friction_per_ps,
                                                 s.timestep_fs / 1000.0)
    integrator.setRandomNumberSeed(_seed(s.seed, 1))
    sim = app.Simulation(topology, eq_system, integrator, platform, props)
    sim.context.setPositions(positions * u.nanometer)
    sim.minimizeEnergy(maxIterations=SETUP_MINIMIZE_MAX_ITERATIONS)
    sim.context.setVelocitiesToTemperature(s.temperature_kelvin * u.kelvin, _seed(s.seed, 0))
    n_eq = int(round(s.equilibration_ps / (s.timestep_fs / 1000.0)))
    t0 = time.perf_counter()
    sim.step(n_eq)
    eq_wall = time.perf_counter() - t0
    state = sim.context.getState(getPositions=True, getVelocities=True, getEnergy=True,
                                 enforcePeriodicBox=False)
    energy = state.getPotentialEnergy().value_in_unit(u.kilojoule_per_mole)
    if not math.isfinite(energy):
        raise MDError(f"equilibration of {s.system}/{s.solvent} ended with energy {energy}")
    pos = state.getPositions(asNumpy=True).value_in_unit(u.nanometer)
    system = _systems.create_system(topology, s.solvent, temperature_kelvin=s.temperature_kelvin,
                                    hydrogen_mass_amu=s.hydrogen_mass_amu)
    if explicit:
        box = state.getPeriodicBoxVectors()
        system.setDefaultPeriodicBoxVectors(*box)
        topology.setPeriodicBoxVectors(box)
        vectors = np.asarray(state.getPeriodicBoxVectors(asNumpy=True).value_in_unit(u.nanometer))
        derived.update(box_vectors_nm=vectors.tolist(),
                       min_image_distance_nm=_systems.min_image_distance(pos[:n_pep], vectors))
        if s.box_shape == "cube":
            derived.update(box_edge_nm=float(vectors[0, 0]))
    # Heavy atoms of the peptide, in topology order, and dihedral quads among them.
    mdtop = md.Topology.from_openmm(topology)
    heavy = [a.index for a in mdtop.atoms if a.index < n_pep and a.element.symbol != "H"]
    mapping = get_mapping(s.system, "heavy-atom")
    where = {int(a): i for i, a in enumerate(heavy)}
    bead = [where[int(a)] for a in mapping.atom_indices(mdtop)]
    derived.update(
        n_atoms=topology.getNumAtoms(), n_peptide_atoms=n_pep,
        n_waters=sum(r.name == "HOH" for r in topology.residues()),
        heavy_atom_indices=heavy,
        force_owner=_force_owner(mdtop, heavy, n_pep),
        heavy_atom_names=[f"{mdtop.atom(a).residue.name}{mdtop.atom(a).residue.index}-"
                          f"{mdtop.atom(a).name}" for a in heavy],
        phi_quads_heavy=[[bead[b] for b in q] for q in mapping.phi],
        psi_quads_heavy=[[bead[b] for b in q] for q in mapping.psi],
        residues=list(mapping.residues),
        equilibration_energy_kj_per_mol=energy, equilibration_wall_seconds=eq_wall,
        steps=s.steps(),
    )
    _serialize_gz(out_dir / "system.xml.gz", openmm.XmlSerializer.serialize(system))
    buf = io.StringIO()
    app.PDBFile.writeFile(topology, pos * u.nanometer, buf, keepIds=True)
    _serialize_gz(out_dir / "start.pdb.gz", buf.getvalue())
    solute = md.Trajectory(pos[heavy][None], mdtop.subset(heavy))
    with atomic_path(out_dir / "solute.pdb") as tmp:
        solute.save_pdb(str(tmp))
    if static is not None:
        atomic_savez(out_dir / "static_bias.npz", grid_kj_per_mol=static["grid"],
                     axis_rad=_metad.grid_axis(static["grid"].shape[0]),
                     residue=np.int64(static["residue"]), source=np.array(static["path"]))
    # Checkpoint 0: the equilibrated state, no chunks yet.
    ckpt_state = openmm.XmlSerializer.serialize(state)
    arrays = {"state_xml": np.array(ckpt_state), "step": np.int64(0), "chunks_done": np.int64(0)}
    if s.bias == "wtmetad":
        n = s.metad.grid_points
        arrays["metad_grid"] = np.zeros((n, n))
    atomic_savez(out_dir / "checkpoint.npz", **arrays)
    return derived


def _force_owner(mdtop, heavy: list[int], n_peptide: int) -> list[int]:
    """For each peptide atom, the heavy-atom slot whose force group it belongs to."""
    slot = {a: k for k, a in enumerate(heavy)}
    owner = [-1] * n_peptide
    for a in heavy:
        owner[a] = slot[a]
    for b in mdtop.bonds:
        i, j = b[0].index, b[1].index
        for h, x in ((i, j), (j, i)):
            if h < n_peptide and mdtop.atom(h).element.symbol == "H" and x in slot:
                owner[h] = slot[x]
    if -1 in owner:
        raise MDError(f"peptide atom {owner.index(-1)} is neither heavy nor bonded to a heavy atom")
    return owner


def run(settings: RunSettings, out_dir: str | os.PathLike, ns: float, threads: int = 1,
        platform: str = "auto", bias_from: str | os.PathLike | None = None,
        command: str | None = None) -> int:
    """Run (or continue) until ``ns`` nanoseconds of production are stored; returns chunks done."""
    out_dir = Path(out_dir)
    static = None
    if settings.bias == "static":
        if bias_from is None:
            if not (out_dir / "static_bias.npz").exists():
                raise MDError("bias 'static' needs bias_from (a wtmetad run directory, or its bias.npz)")
            static = _load_static_grid(out_dir / "static_bias.npz")
        else:
            static = _load_static_grid(Path(bias_from))
        if settings.bias_residue is None:  # default: the residue the grid was made on
            settings = dataclasses.replace(settings, bias_residue=static["residue"])
        if settings.bias_residue != static["residue"]:
            raise MDError(f"the static bias grid is on residue {static['residue']}, "
                          f"bias_residue asks {settings.bias_residue}")
        settings = dataclasses.replace(settings, static_bias_sha256=_grid_sha(static["grid"]))
    elif bias_from is not None:
        raise MDError("bias_from only goes with bias 'static'")
    settings = settings.resolved()
    wanted = settings.to_dict()
    n_target = int(math.ceil(ns * 1000.0 / settings.chunk_ps - 1e-9))
    plat, props = _systems.make_platform(platform, threads)
    sidecar_path = out_dir / "run.json"
    with _lock(out_dir):
        if sidecar_path.exists():
            sidecar = read_sidecar(out_dir)
            _compare(sidecar["settings"], wanted, out_dir)
            ckpt, problem = _checkpoint_state(out_dir)
            if ckpt is None:
                manifest, _ = _read_manifest(out_dir)
                raise MDError(_checkpoint_advice(out_dir, problem, _good_chunks(out_dir, manifest),
                                                 len(chunk_paths(out_dir))))
            if settings.bias == "wtmetad" and "metad_grid" not in ckpt:
                raise MDError(_checkpoint_advice(out_dir, "damaged (it has no metad_grid)",
                                                 int(ckpt["chunks_done"]), len(chunk_paths(out_dir))))
        elif chunk_paths(out_dir):
            raise MDError(f"{out_dir} holds chunks but no run.json; refusing to set up a "
                          "new run over them. Restore run.json (e.g. `git checkout -- "
                          f"{sidecar_path}`) or use a new out_dir.")
        else:
            log.info("setting up %s/%s bias=%s in %s", settings.system, settings.solvent,
                     settings.bias, out_dir)
            derived = _setup(settings, out_dir, plat, props, static)
            sidecar = {"format": FORMAT, "created": _now(), "settings": wanted,
                       "derived": derived, "chunk_keys": CHUNK_KEYS, "sessions": []}
            ckpt = _read_checkpoint(out_dir)
        done = int(ckpt["chunks_done"])
        records = _verify_for_resume(out_dir, done)
        if done >= n_target and sidecar_path.exists():  # a session is recorded when it adds chunks
            log.info("%s already has %d chunks (%.3f ns); nothing to do", out_dir, done,
                     done * settings.chunk_ps / 1000)
            return done
        sidecar["sessions"].append({
            "started": _now(), "command": command, "ns_target": ns, "threads": threads,
            "platform": plat.getName(), "host": _platform.node(), "machine": _platform.machine(),
            "versions": _versions(), "first_chunk": done,
        })
        atomic_write_text(sidecar_path, json.dumps(sidecar, indent=1) + "\n")
        engine = _Engine(settings, out_dir, sidecar["derived"], plat, props,
                         static["grid"] if static else None)
        engine.restore(ckpt)
        log.info("%s: chunk %d of %d on %s (%s threads)", out_dir, done, n_target,
                 plat.getName(), threads)
        while done < n_target:
            data = engine.run_chunk(done)
            path = _chunk_path(out_dir, done)
            atomic_savez(path, **data)
            done += 1
            engine.checkpoint(done)
            records.append(_chunk_record(path))
            _write_manifest(out_dir, records)
            ns_day = settings.chunk_ps / 1000.0 / float(data["wall_seconds"]) * 86400.0
            log.info("chunk %d done: %.3f ns total, %.1f ns/day", done - 1,
                     done * settings.chunk_ps / 1000.0, ns_day)
        return done


def _min_image_distance(pos: np.ndarray, shifts: np.ndarray) -> float:
    """Smallest peptide-image distance over the lattice translations ``shifts`` (K, 3)."""
    d = pos[None, :, None, :] - pos[None, None, :, :] + shifts[:, None, None, :]
    return float(np.sqrt((d * d).sum(-1).min()))


def _grid_sha(grid: np.ndarray) -> str:
    import hashlib

    return hashlib.sha256(np.ascontiguousarray(grid, dtype=np.float64).tobytes()).hexdigest()


def _running_pid(out_dir: Path) -> int | None:
    """Pid of the ``md run`` holding the directory's lock, else None.

    Probes the flock for an instant (a writer starting in that instant is refused with
    RunLocked and can simply be re-run).
    """
    import fcntl

    path = out_dir / ".lock"
    if not path.exists():
        return None
    with open(path) as fh:
        try:
            fcntl.flock(fh, fcntl.LOCK_SH | fcntl.LOCK_NB)
        except OSError:
            text = fh.read().strip()
            return int(text) if text.isdigit() else -1
        fcntl.flock(fh, fcntl.LOCK_UN)
    return None


def read_sidecar(out_dir: str | os.PathLike) -> dict:
    """A run directory's ``run.json`` (it has ``settings``); MDError when it is missing or damaged."""
    sidecar_path = Path(out_dir) / "run.json"
    if not sidecar_path.exists():
        raise MDError(f"{out_dir} is not an md run directory (no run.json)")
    try:
        sidecar = json.loads(sidecar_path.read_text())
        if not isinstance(sidecar["settings"], dict):
            raise TypeError("its settings are not a mapping")
    except (ValueError, KeyError, TypeError) as exc:
        raise MDError(f"{sidecar_path} is damaged ({type(exc).__name__}: {exc}); restore it, e.g. "
                      f"`git checkout -- {sidecar_path}`") from None
    return sidecar


def run_status(out_dir: str | os.PathLike) -> dict:
    """Summary of a run directory: ns done, ns/day (latest chunk and mean), latest chunk, damage.

    Reads only. ``checkpoint``: "ok", "missing" or "damaged (why)"; ``chunks_done``: the
    chunks the checkpoint covers (without a readable checkpoint: the good chunks on disk from
    chunk 0 on); ``chunk_files``: chunk files on disk; ``problems``: damage found, each with
    what to do (empty when the run is sound); ``notes``: harmless findings (a killed run's
    chunk beyond the checkpoint).
    """
    out_dir = Path(out_dir)
    sidecar = read_sidecar(out_dir)
    s = sidecar["settings"]
    problems: list[str] = []
    notes: list[str] = []
    manifest, m_problem = _read_manifest(out_dir)
    if m_problem:
        notes.append(f"{m_problem}: the chunks were checked by loading them; md run writes it anew")
    ckpt, ck_problem = _checkpoint_state(out_dir)
    files = chunk_paths(out_dir)
    walls = []
    good = 0
    limit = int(ckpt["chunks_done"]) if ckpt is not None else (_chunk_index(files[-1]) + 1 if files else 0)
    for k in range(limit):
        p = _chunk_path(out_dir, k)
        why = _check_chunk(p, k, manifest.get(p.name))
        if why is None:
            with np.load(p) as z:
                walls.append(float(z["wall_seconds"]))
            if good == k:
                good += 1
        else:
            problems.append(f"{p.name} is {why}" + (
                f": restore it (e.g. `git checkout -- {p}`); the chunks before it stay readable with "
                f"max_chunks {out_dir}={k}" if not problems else ""))
    if ckpt is not None:
        done = int(ckpt["chunks_done"])
        for p in files:
            if _chunk_index(p) >= done:
                notes.append(f"{p.name} is beyond the checkpoint ({done} chunks; a run killed after "
                             "writing it): the next md run moves it aside as .stale and runs it again")
    else:
        done = good
        problems.insert(0, _checkpoint_advice(out_dir, ck_problem, good, len(files)))
    paths = [_chunk_path(out_dir, k) for k in range(min(done, good))]
    chunk_ns = s["chunk_ps"] / 1000.0
    out = {
        "dir": str(out_dir), "system": s["system"], "solvent": s["solvent"], "bias": s["bias"],
        "chunks_done": done, "ns_done": done * chunk_ns,
        "ns_target": sidecar["sessions"][-1]["ns_target"] if sidecar["sessions"] else None,
        "ns_per_day_latest": chunk_ns / walls[-1] * 86400.0 if walls else None,
        "ns_per_day_mean": chunk_ns * len(walls) / sum(walls) * 86400.0 if walls else None,
        "latest_chunk": paths[-1].name if paths else None,
        "latest_chunk_written": (
            _dt.datetime.fromtimestamp(paths[-1].stat().st_mtime, _dt.timezone.utc)
            .isoformat(timespec="seconds") if paths else None),
        "running_pid": _running_pid(out_dir),
        "platform": sidecar["sessions"][-1]["platform"] if sidecar["sessions"] else None,
        "threads": sidecar["sessions"][-1]["threads"] if sidecar["sessions"] else None,
        "checkpoint": "ok" if ckpt is not None else ck_problem,
        "chunk_files": len(files),
        "problems": problems,
        "notes": notes,
    }
    return out
