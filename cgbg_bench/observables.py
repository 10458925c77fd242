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
    # np.cross is several times slower than this for (N, 3) arrays; each component is written in place
    out = np.empty(np.broadcast_shapes(u.shape, v.shape), np.result_type(u, v))
    np.subtract(u[:, 1] * v[:, 2], u[:, 2] * v[:, 1], out=out[:, 0])
    np.subtract(u[:, 2] * v[:, 0], u[:, 0] * v[:, 2], out=out[:, 1])
    np.subtract(u[:, 0] * v[:, 1], u[:, 1] * v[:, 0], out=out[:, 2])
    return out


def dihedral(positions: np.ndarray, quad: Sequence[int]) -> np.ndarray:
    """Dihedral angle of beads ``quad`` = (i, j, k, l) for every frame.

    positions: (N, n_beads, 3). Returns (N,) float64 radians in (-pi, pi]:
    atan2(|b1| b0 . (b1 x b2), (b0 x b1) . (b1 x b2)) with b0 = r_j - r_i, b1 = r_k - r_j,
    b2 = r_l - r_k (the differences computed in float64, from the four beads only).
    """
    pos = np.asarray(positions)
    if pos.ndim != 3 or pos.shape[-1] != 3:
        raise DataError(f"positions must have shape (N, n_beads, 3), got {pos.shape}")
    i, j, k, l = (int(q) for q in quad)
    out = np.empty(len(pos), np.float64)
    for start in range(0, len(pos), _CHUNK):  # chunks: the temporaries stay small and in cache
        chunk = pos[start:start + _CHUNK]
        # float64(r_j) - float64(r_i) straight from the bank's float32 columns (the cast is exact)
        b0 = np.subtract(chunk[:, j], chunk[:, i], dtype=np.float64)
        b1 = np.subtract(chunk[:, k], chunk[:, j], dtype=np.float64)
        b2 = np.subtract(chunk[:, l], chunk[:, k], dtype=np.float64)
        n2 = _cross(b1, b2)
        x = np.einsum("ij,ij->i", _cross(b0, b1), n2)
        y = np.sqrt(np.einsum("ij,ij->i", b1, b1)) * np.einsum("ij,ij->i", b0, n2)
        np.arctan2(y, x, out=out[start:start + _CHUNK])
    # atan2 returns [-pi, pi]; map an exact -pi onto +pi so the range is (-pi, pi].
    return np.where(out <= -np.pi, np.pi, out)


#: Frames per chunk of :func:`dihedral` (each frame is computed on its own: the result does not depend on it).
_CHUNK = 1 << 15


def dihedrals(positions: np.ndarray, quads: Sequence[Sequence[int]]) -> np.ndarray:
    """Several dihedrals at once: returns (N, len(quads))."""
    return np.stack([dihedral(positions, q) for q in quads], axis=-1)
