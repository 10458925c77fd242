"""Energies submissions: score precomputed energies of the bank, from any framework.

A model that cannot become a torch program (JAX, MACE through other frameworks, a
classical CG force field in an MD engine) is scored from its energies on the task's
bank. ``export_bank`` writes the bank's positions with an exact fingerprint; the user
computes one energy per sample, in bank order, and saves them with that fingerprint;
``load_energies`` checks the file against the task's bank and ``evaluate_energies``
scores it exactly as a model file would be scored (same log-weights, same bootstrap).

Bank file (``.npz``): ``positions`` (N, *input_shape) float32 in nm, ``fingerprint``
(sha256 of the positions' little-endian float32 bytes, with N and the shape),
``task``, ``task_version``, ``positions_unit`` ("nm"), ``energy_unit`` (the unit the
energies must be in: kJ/mol, or kT for Mueller-Brown).

Energies file (``.npz``): ``energies`` (N,) float64 or float32, ``fingerprint`` (as in
the bank file), ``energy_unit`` (must equal the task's). No pickles: arrays are read
with ``allow_pickle=False``.
"""

from __future__ import annotations

import hashlib
import os
import time
import zipfile
from pathlib import Path

import numpy as np

from cgbg_bench._io import atomic_savez, sha256_file
from cgbg_bench.errors import EnergiesFileError

__all__ = ["POSITIONS_UNIT", "bank_fingerprint_sha256", "export_bank", "load_energies", "evaluate_energies",
           "is_energies_file"]

POSITIONS_UNIT = "nm"
_ENERGY_KEYS = {"energies", "fingerprint", "energy_unit"}
_OPTIONAL_KEYS = {"task", "task_version", "n_samples", "note"}


def bank_fingerprint_sha256(positions: np.ndarray) -> str:
    """sha256 over (N, shape) and the positions' little-endian float32 bytes: names one bank exactly."""
    x = np.ascontiguousarray(positions, dtype="<f4")
    h = hashlib.sha256()
    h.update(repr(tuple(x.shape)).encode())
    h.update(x.tobytes())
    return h.hexdigest()


def export_bank(task, out: str | os.PathLike, n_samples: int | None = None) -> Path:
    """Write the task's bank (or its first ``n_samples``) for energies computed elsewhere."""
    out = Path(out)
    if out.suffix != ".npz":
        raise EnergiesFileError(f"{out}: the bank is written as .npz; give a path ending in .npz")
    positions = task.load_proposal(n_samples).positions
    if n_samples is not None:
        positions = positions[:n_samples]
    atomic_savez(out, compressed=False, positions=np.ascontiguousarray(positions, np.float32),
                 fingerprint=np.array(bank_fingerprint_sha256(positions)), task=np.array(task.name),
                 task_version=np.int64(task.version), positions_unit=np.array(POSITIONS_UNIT),
                 energy_unit=np.array(task.energy_unit))
    return out


def is_energies_file(path: str | os.PathLike) -> bool:
    """True for an .npz archive that holds an ``energies`` array (not a model archive)."""
    path = Path(path)
    if not path.is_file():
        return False
    try:
        with zipfile.ZipFile(path) as z:
            return "energies.npy" in z.namelist()
    except zipfile.BadZipFile:
        return False


def load_energies(path: str | os.PathLike, task, n_samples: int | None = None,
                  positions: np.ndarray | None = None) -> np.ndarray:
    """The energies (N,) float64 of ``path``, checked against the task's bank; typed errors name the fix."""
    path = Path(path)
    try:
        z = np.load(path, allow_pickle=False)
    except Exception as exc:
        raise EnergiesFileError(f"{path}: not a readable .npz file ({type(exc).__name__}: {exc})") from None
    with z:
        keys = set(z.files)
        missing = _ENERGY_KEYS - keys
        unknown = keys - _ENERGY_KEYS - _OPTIONAL_KEYS
        if missing:
            raise EnergiesFileError(f"{path}: missing {sorted(missing)}; an energies file holds 'energies' (N,), "
                                    "the bank's 'fingerprint' and 'energy_unit' (cgbg-bench bank export TASK)")
        if unknown:
            raise EnergiesFileError(f"{path}: unknown keys {sorted(unknown)}; allowed: "
                                    f"{sorted(_ENERGY_KEYS | _OPTIONAL_KEYS)}")
        try:
            energies = z["energies"]
            fingerprint = str(z["fingerprint"])
            unit = str(z["energy_unit"])
        except ValueError as exc:  # an object array would need unpickling
            raise EnergiesFileError(f"{path}: arrays must be plain numbers and strings ({exc})") from None
    if unit != task.energy_unit:
        raise EnergiesFileError(f"{path}: energies are in {unit!r}, task {task.name} scores energies in "
                                f"{task.energy_unit!r}; convert them (1 kT = {task.kT} kJ/mol at this task's "
                                "temperature)")
    if energies.dtype not in (np.float32, np.float64):
        raise EnergiesFileError(f"{path}: energies have dtype {energies.dtype}; use float64 (or float32)")
    if positions is None:
        positions = task.load_proposal(n_samples).positions
        if n_samples is not None:
            positions = positions[:n_samples]
    if energies.shape != (len(positions),):
        raise EnergiesFileError(f"{path}: energies have shape {energies.shape}, the bank has {len(positions)} "
                                f"samples: one energy per bank sample, in bank order, shape ({len(positions)},)")
    expected = bank_fingerprint_sha256(positions)
    if fingerprint != expected:
        raise EnergiesFileError(f"{path}: the fingerprint {fingerprint[:12]}... is not the one of task "
                                f"{task.name} v{task.version}'s bank of {len(positions)} samples "
                                f"({expected[:12]}...); compute the energies on `cgbg-bench bank export "
                                f"{task.name}` with as many samples (n_samples {len(positions)})")
    bad = ~np.isfinite(energies)
    if bad.any():
        raise EnergiesFileError(f"{path}: {int(bad.sum())} energies are not finite (first at index "
                                f"{int(np.flatnonzero(bad)[0])}); every energy must be finite")
    return energies.astype(np.float64)


def evaluate_energies(path: str | os.PathLike, task, *, n_bootstrap: int | None = None, seed: int = 0,
                      n_samples: int | None = None, proposal=None, reference=None):
    """Score an energies file on ``task`` exactly as a model of those energies would be scored.

    Returns (Result, log_w); the Result's info says ``scored_from: energies``.
    """
    from cgbg_bench import metrics as M
    from cgbg_bench.evaluate import Result, score_bank

    t0 = time.perf_counter()
    reference = reference or task.load_reference()
    proposal = proposal or task.load_proposal(n_samples)
    positions, log_q = proposal.positions, proposal.log_q
    if n_samples is not None:
        positions, log_q = positions[:n_samples], log_q[:n_samples]
    energies = load_energies(path, task, positions=positions)
    log_w = M.log_weights(energies, log_q, task.kT)
    scores, k_hat, reliability = score_bank(task, None, positions, log_w, log_q, reference,
                                            n_bootstrap=n_bootstrap, seed=seed)
    result = Result(task=task.name, task_version=task.version, scores=scores,
                    runtime_s=time.perf_counter() - t0, device="none", n_samples=len(positions),
                    submission=str(path), submission_sha256=sha256_file(path),
                    info={"seed": seed, "scored_from": "energies", "pareto_k": k_hat, "reliability": reliability})
    return result, log_w
