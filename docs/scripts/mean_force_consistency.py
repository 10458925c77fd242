"""Do two kinds of MD run carry the same mean force? Compare generalized forces at fixed (phi, psi).

    python docs/scripts/mean_force_consistency.py                      # ala2 core-beta, as in the docs
    python docs/scripts/mean_force_consistency.py --a data/ala2/explicit-unbiased \\
        --b data/ala2/explicit-static data/ala2/explicit-static-2 --bins 36 --min-frames 100

The mapped core-beta forces (``cgbg_bench.md.production.load_cg``: each bead's force group) are
projected on the displacement that changes one dihedral and nothing else among the beads: C(ACE)
rotated about the N-CA axis for phi, N(NME) about the CA-C axis for psi. Translating a bead's
force group along that displacement has unit Jacobian, so the mean of the projection at fixed
(phi, psi) is minus the derivative of the free energy along that dihedral there, the same for
biased and unbiased runs whenever the bias depends on (phi, psi) only. Per (phi, psi) bin with
enough frames of both run sets, z = (mean_b - mean_a) / sqrt(se_a^2 + se_b^2); consistent data give
z of mean ~0 and RMS ~1 (frames are 1 ps apart: nearly independent for these forces, so the
standard errors are slightly optimistic; within a bin the bias still reweights the frames, which
can shift a bin's mean a little: `--bins 72 --min-frames 20` checks that). Averaged over psi instead, the two differ wherever the
bias reshapes psi at fixed phi: that is not an inconsistency, which is why both angles are fixed.
Numbers in docs/force-matching.md.
"""

from __future__ import annotations

import argparse

import numpy as np

from cgbg_bench.md.production import load_cg

# (dihedral's bead quadruple, bead moved, rotation axis from, to) in ala2 core-beta bead order
# C(ACE), N, CA, CB, C, N(NME) (docs/spec.md section 3)
_GENERALIZED = {"phi": ((0, 1, 2, 4), 0, 1, 2), "psi": ((1, 2, 4, 5), 5, 2, 4)}


def dihedral(x: np.ndarray, quad) -> np.ndarray:
    a, b, c, d = (x[:, i] for i in quad)
    b1 = (c - b) / np.linalg.norm(c - b, axis=1)[:, None]
    v = (a - b) - ((a - b) * b1).sum(1)[:, None] * b1
    w = (d - c) - ((d - c) * b1).sum(1)[:, None] * b1
    return np.arctan2((np.cross(b1, v) * w).sum(1), (v * w).sum(1))


def generalized_forces(dirs, max_chunks: dict[str, int]) -> tuple[np.ndarray, np.ndarray, dict[str, np.ndarray]]:
    """phi, psi (radians) and the generalized force along each (kJ/mol/rad) of every frame."""
    pos, frc = [], []
    for d in dirs:
        data = load_cg(d, "core-beta", max_chunks.get(d))
        pos.append(data["positions_nm"].astype(np.float64))
        frc.append(data["forces_kj_per_mol_nm"].astype(np.float64))
    x, f = np.concatenate(pos), np.concatenate(frc)
    angles = {name: dihedral(x, quad) for name, (quad, *_rest) in _GENERALIZED.items()}
    forces = {}
    for name, (quad, moved, ax0, ax1) in _GENERALIZED.items():
        axis = x[:, ax1] - x[:, ax0]
        axis /= np.linalg.norm(axis, axis=1)[:, None]
        v = np.cross(axis, x[:, moved] - x[:, ax0])
        shifted = x.copy()
        shifted[:, moved] += 1e-4 * v
        step = np.angle(np.exp(1j * (dihedral(shifted, quad) - angles[name])))  # wrapped: angles near +-pi
        rate = step / 1e-4  # d(angle) per unit step along v
        forces[name] = (f[:, moved] * (v / rate[:, None])).sum(1)
    return angles["phi"], angles["psi"], forces


def binned(phi, psi, g, n_bins: int):
    i = np.clip(((phi + np.pi) / (2 * np.pi) * n_bins).astype(int), 0, n_bins - 1)
    j = np.clip(((psi + np.pi) / (2 * np.pi) * n_bins).astype(int), 0, n_bins - 1)
    k = i * n_bins + j
    n = np.bincount(k, minlength=n_bins**2)
    s1, s2 = np.bincount(k, g, n_bins**2), np.bincount(k, g * g, n_bins**2)
    with np.errstate(invalid="ignore", divide="ignore"):
        mean = s1 / n
        var_of_mean = (s2 / n - mean**2) / n
    return n, mean, var_of_mean


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--a", nargs="+", default=["data/ala2/explicit-unbiased"])
    ap.add_argument("--b", nargs="+", default=["data/ala2/explicit-static", "data/ala2/explicit-static-2"])
    ap.add_argument("--max-chunks", action="append", default=[], metavar="DIR=N")
    ap.add_argument("--bins", type=int, default=36, help="bins per angle (default 36: 10 degrees)")
    ap.add_argument("--min-frames", type=int, default=100, help="frames of each set a bin needs")
    args = ap.parse_args()
    mc = {d: int(n) for d, n in (a.rsplit("=", 1) for a in args.max_chunks)}
    a, b = generalized_forces(args.a, mc), generalized_forces(args.b, mc)
    print(f"A: {' '.join(args.a)} ({len(a[0])} frames); B: {' '.join(args.b)} ({len(b[0])} frames)")
    for name in _GENERALIZED:
        na, ma, va = binned(a[0], a[1], a[2][name], args.bins)
        nb, mb, vb = binned(b[0], b[1], b[2][name], args.bins)
        ok = (na >= args.min_frames) & (nb >= args.min_frames)
        z = (mb - ma)[ok] / np.sqrt(va + vb)[ok]
        print(f"generalized force along {name}: {ok.sum()} bins with >= {args.min_frames} frames of each; "
              f"z mean {z.mean():.2f}, z RMS {np.sqrt((z**2).mean()):.2f}; "
              f"B - A weighted by A's frames {np.average((mb - ma)[ok], weights=na[ok]):.2f} kJ/mol/rad")


if __name__ == "__main__":
    main()
