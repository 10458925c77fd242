"""Observables computed from CG positions: dihedral angles and plain coordinates.

Pure functions on arrays in internal units (nm in, radians out). Dihedrals follow
the IUPAC sign convention used by mdtraj.compute_dihedrals, in (-pi, pi] via atan2.
"""

from __future__ import annotations

from typing import Sequence

import numpy as np

from cgbg_bench.errors import DataError

__all__ = ["dihedral", "dihedrals"]


def _cross(u: np.ndarray, v: np.ndarray) -> np.ndarray:
    # np.cross is several times slower than this for (N, 3) arrays
    return np.stack([u[:, 1] * v[:, 2] - u[:, 2] * v[:, 1],
                     u[:, 2] * v[:, 0] - u[:, 0] * v[:, 2],
                     u[:, 0] * v[:, 1] - u[:, 1] * v[:, 0]], axis=-1)


def dihedral(positions: np.ndarray, quad: Sequence[int]) -> np.ndarray:
    """Dihedral angle of beads ``quad`` = (i, j, k, l) for every frame.

    positions: (N, n_beads, 3). Returns (N,) float64 radians in (-pi, pi]:
    atan2(|b1| b0 . (b1 x b2), (b0 x b1) . (b1 x b2)) with b0 = r_j - r_i, b1 = r_k - r_j,
    b2 = r_l - r_k (only the four beads are converted to float64).
    """
    pos = np.asarray(positions)
    if pos.ndim != 3 or pos.shape[-1] != 3:
        raise DataError(f"positions must have shape (N, n_beads, 3), got {pos.shape}")
    p = pos[:, [int(q) for q in quad]].astype(np.float64)
    b0 = p[:, 1] - p[:, 0]
    b1 = p[:, 2] - p[:, 1]
    b2 = p[:, 3] - p[:, 2]
    n2 = _cross(b1, b2)
    x = np.einsum("ij,ij->i", _cross(b0, b1), n2)
    y = np.sqrt(np.einsum("ij,ij->i", b1, b1)) * np.einsum("ij,ij->i", b0, n2)
    angle = np.arctan2(y, x)
    # atan2 returns [-pi, pi]; map an exact -pi onto +pi so the range is (-pi, pi].
    return np.where(angle <= -np.pi, np.pi, angle)


def dihedrals(positions: np.ndarray, quads: Sequence[Sequence[int]]) -> np.ndarray:
    """Several dihedrals at once: returns (N, len(quads))."""
    return np.stack([dihedral(positions, q) for q in quads], axis=-1)
