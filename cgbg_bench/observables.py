"""Observables computed from CG positions: dihedral angles and plain coordinates.

Pure functions on arrays in internal units (nm in, radians out). Dihedrals follow
the IUPAC sign convention used by mdtraj.compute_dihedrals, in (-pi, pi] via atan2.
"""

from __future__ import annotations

from typing import Sequence

import numpy as np

__all__ = ["dihedral", "dihedrals"]


def dihedral(positions: np.ndarray, quad: Sequence[int]) -> np.ndarray:
    """Dihedral angle of beads ``quad`` = (i, j, k, l) for every frame.

    positions: (N, n_beads, 3). Returns (N,) float64 radians in (-pi, pi].
    """
    pos = np.asarray(positions, dtype=np.float64)
    if pos.ndim != 3 or pos.shape[-1] != 3:
        raise ValueError(f"positions must have shape (N, n_beads, 3), got {pos.shape}")
    i, j, k, l = (int(q) for q in quad)
    b0 = pos[:, j] - pos[:, i]
    b1 = pos[:, k] - pos[:, j]
    b2 = pos[:, l] - pos[:, k]
    n1 = np.cross(b0, b1)
    n2 = np.cross(b1, b2)
    b1_unit = b1 / np.linalg.norm(b1, axis=-1, keepdims=True)
    m1 = np.cross(n1, b1_unit)
    x = np.einsum("ij,ij->i", n1, n2)
    y = np.einsum("ij,ij->i", m1, n2)
    # atan2 returns [-pi, pi]; map an exact -pi onto +pi so the range is (-pi, pi].
    angle = -np.arctan2(y, x)
    return np.where(angle <= -np.pi, np.pi, angle)


def dihedrals(positions: np.ndarray, quads: Sequence[Sequence[int]]) -> np.ndarray:
    """Several dihedrals at once: returns (N, len(quads))."""
    return np.stack([dihedral(positions, q) for q in quads], axis=-1)
