"""Prior energy of a CG peptide PMF, fitted from data: keeps a learned PMF physical off the data.

Terms, all on the non-redundant internal coordinates of the chain's Z-matrix
(:func:`cgbg_bench.cg.zmatrix.zmatrix_for`), so each one is fitted on its own:

- harmonic bonds, k_b / 2 (r - r0)^2, on every Z-matrix bond;
- harmonic angles, k_a / 2 (theta - theta0)^2, on every Z-matrix angle;
- periodic dihedrals, k_d (1 - cos(phi - phi0)), on the Z-matrix dihedrals that are
  sharply peaked in the data (impropers that fix chirality and planarity, peptide-bond
  omegas): circular standard deviation below ``max_dihedral_std_rad``. The backbone
  phi/psi of the mapping are never in the prior: they are what the benchmark measures;
- a short-range repulsion eps * (sigma_ij / r_ij)^p between beads three or more bonds
  apart, sigma_ij = ``repulsion_sigma_fraction`` times the smallest r_ij in the data.

Force constants come from Boltzmann inversion in the Gaussian approximation:
k = kT / var, the mean as the reference value (circular mean and the mean squared
wrapped deviation for dihedrals; for a sharp peak k_d (1 - cos d) ~ k_d d^2 / 2, the
same k). Energies are in kJ/mol; kT at ``temperature_kelvin`` (300 K: 2.4943 kJ/mol).
"""

from __future__ import annotations

import math
from collections import deque

import numpy as np
import torch
from torch import nn

from cgbg_bench.cg.mappings import CGMapping
from cgbg_bench.cg.zmatrix import ZMatrix, zmatrix_for
from cgbg_bench.errors import DataError
from cgbg_bench.units import kT_kj_per_mol

__all__ = ["PeptidePrior", "fit_prior", "bond_graph_separation"]


def _zmatrix_bonds(zmat: ZMatrix) -> list[tuple[int, int]]:
    return [(bead, j) for bead, (j, _, _) in zip(zmat.order[1:], zmat.refs)]


def _zmatrix_dihedral_quads(zmat: ZMatrix) -> list[tuple[int, int, int, int]]:
    return [(bead, j, k, l) for bead, (j, k, l) in zip(zmat.order[3:], zmat.refs[2:])]


def bond_graph_separation(zmat: ZMatrix) -> np.ndarray:
    """(n, n) number of bonds on the shortest path between two beads (Z-matrix bonds)."""
    n = zmat.n_beads
    adj: list[list[int]] = [[] for _ in range(n)]
    for a, b in _zmatrix_bonds(zmat):
        adj[a].append(b)
        adj[b].append(a)
    sep = np.full((n, n), -1, dtype=np.int64)
    for s in range(n):
        sep[s, s] = 0
        queue = deque([s])
        while queue:
            u = queue.popleft()
            for v in adj[u]:
                if sep[s, v] < 0:
                    sep[s, v] = sep[s, u] + 1
                    queue.append(v)
    return sep


class PeptidePrior(nn.Module):
    """Prior energy U_prior(R): (B, n_beads, 3) nm -> (B,) kJ/mol. Parameters are buffers.

    Build it with :func:`fit_prior`; the constructor takes the fitted values directly
    (1-D sequences, one entry per bond / angle / selected dihedral / repulsive pair).
    """

    def __init__(
        self,
        mapping: CGMapping,
        *,
        bond_r0, bond_k,
        angle_theta0, angle_k,
        dihedral_index, dihedral_phi0, dihedral_k,
        repulsion_pairs, repulsion_sigma,
        repulsion_eps_kj_per_mol: float,
        repulsion_power: int = 6,
    ):
        super().__init__()
        self.mapping = mapping
        self.zmatrix = zmatrix_for(mapping)
        z = self.zmatrix
        f32 = lambda v: torch.as_tensor(np.asarray(v, dtype=np.float64), dtype=torch.float32)  # noqa: E731
        pairs = np.asarray(repulsion_pairs, dtype=np.int64).reshape(-1, 2)
        shapes = {"bond": (len(bond_r0), len(bond_k), z.n_bonds), "angle": (len(angle_theta0), len(angle_k), z.n_angles)}
        for name, (a, b, n) in shapes.items():
            if not a == b == n:
                raise DataError(f"{mapping.name}: need {n} {name} values, got {a} and {b}")
        if not len(dihedral_index) == len(dihedral_phi0) == len(dihedral_k):
            raise DataError("dihedral_index, dihedral_phi0, dihedral_k must have equal lengths")
        if len(repulsion_sigma) != pairs.shape[0]:
            raise DataError("one repulsion_sigma per repulsion pair")
        self.register_buffer("bond_r0", f32(bond_r0))
        self.register_buffer("bond_k", f32(bond_k))
        self.register_buffer("angle_theta0", f32(angle_theta0))
        self.register_buffer("angle_k", f32(angle_k))
        self.register_buffer("dihedral_index", torch.as_tensor(np.asarray(dihedral_index, np.int64)))
        self.register_buffer("dihedral_phi0", f32(dihedral_phi0))
        self.register_buffer("dihedral_k", f32(dihedral_k))
        self.register_buffer("pair_i", torch.as_tensor(pairs[:, 0].copy()))
        self.register_buffer("pair_j", torch.as_tensor(pairs[:, 1].copy()))
        self.register_buffer("repulsion_sigma", f32(repulsion_sigma))
        self.repulsion_eps_kj_per_mol = float(repulsion_eps_kj_per_mol)
        self.repulsion_power = int(repulsion_power)

    def energy_terms(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        """Each term's energy, (B,) kJ/mol: bonds, angles, dihedrals, repulsion."""
        bonds, angles, dihedrals = self.zmatrix.to_internal(x)
        out = {
            "bonds": (0.5 * self.bond_k * (bonds - self.bond_r0) ** 2).sum(-1),
            "angles": (0.5 * self.angle_k * (angles - self.angle_theta0) ** 2).sum(-1),
        }
        d = dihedrals[:, self.dihedral_index]
        out["dihedrals"] = (self.dihedral_k * (1.0 - torch.cos(d - self.dihedral_phi0))).sum(-1)
        r = torch.linalg.vector_norm(x[:, self.pair_i] - x[:, self.pair_j], dim=-1)
        out["repulsion"] = self.repulsion_eps_kj_per_mol * ((self.repulsion_sigma / r) ** self.repulsion_power).sum(-1)
        return out

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        t = self.energy_terms(x)
        return t["bonds"] + t["angles"] + t["dihedrals"] + t["repulsion"]

    def to_dict(self) -> dict:
        """The fitted values as plain lists (for a YAML sidecar), with the coordinates they act on."""
        z = self.zmatrix
        quads = _zmatrix_dihedral_quads(z)
        r = lambda t: [round(float(v), 6) for v in t]  # noqa: E731
        return {
            "bonds": {"beads": [list(b) for b in _zmatrix_bonds(z)], "r0_nm": r(self.bond_r0),
                      "k_kj_per_mol_nm2": r(self.bond_k)},
            "angles": {"beads": [[b, j, k] for b, (j, k, _) in zip(z.order[2:], z.refs[1:])],
                       "theta0_rad": r(self.angle_theta0), "k_kj_per_mol_rad2": r(self.angle_k)},
            "dihedrals": {"beads": [list(quads[i]) for i in self.dihedral_index.tolist()],
                          "phi0_rad": r(self.dihedral_phi0), "k_kj_per_mol": r(self.dihedral_k),
                          "form": "k (1 - cos(phi - phi0))"},
            "repulsion": {"pairs": [[int(i), int(j)] for i, j in zip(self.pair_i, self.pair_j)],
                          "sigma_nm": r(self.repulsion_sigma), "eps_kj_per_mol": self.repulsion_eps_kj_per_mol,
                          "power": self.repulsion_power, "form": "eps (sigma / r)^power"},
        }


def fit_prior(
    positions,
    mapping: CGMapping,
    *,
    temperature_kelvin: float = 300.0,
    max_dihedral_std_rad: float = 0.5,
    min_separation: int = 3,
    repulsion_sigma_fraction: float = 0.9,
    repulsion_eps_kj_per_mol: float | None = None,
    repulsion_power: int = 6,
) -> PeptidePrior:
    """Fit a :class:`PeptidePrior` to CG ``positions`` (N, n_beads, 3) nm of ``mapping``.

    k = kT / var of each Z-matrix bond and angle (and of each sharply peaked dihedral),
    computed in float64. Repulsion between beads ``min_separation`` or more bonds apart,
    eps = kT unless given. See the module docstring for the terms.
    """
    x = torch.as_tensor(np.asarray(positions), dtype=torch.float64)
    if x.ndim != 3 or x.shape[1:] != (mapping.n_beads, 3):
        raise DataError(f"positions must have shape (N, {mapping.n_beads}, 3) for {mapping.name}, got {tuple(x.shape)}")
    if x.shape[0] < 10:
        raise DataError(f"need at least 10 frames to fit a prior, got {x.shape[0]}")
    if not torch.isfinite(x).all():
        raise DataError("positions have non-finite values")
    if not 0.0 < repulsion_sigma_fraction <= 1.0:
        raise DataError(f"repulsion_sigma_fraction must be in (0, 1], got {repulsion_sigma_fraction}")
    kT = kT_kj_per_mol(temperature_kelvin)
    zmat = zmatrix_for(mapping)
    with torch.no_grad():
        bonds, angles, dihedrals = zmat.to_internal(x)

    def harmonic(v: torch.Tensor, what: str) -> tuple[np.ndarray, np.ndarray]:
        mean, var = v.mean(0), v.var(0)
        if (var <= 0).any():
            raise DataError(f"a {what} does not fluctuate in the data; cannot fit its force constant")
        return mean.numpy(), (kT / var).numpy()

    bond_r0, bond_k = harmonic(bonds, "bond")
    angle_theta0, angle_k = harmonic(angles, "angle")

    # Sharply peaked dihedrals (not phi/psi): circular mean, k = kT / mean squared wrapped deviation.
    backbone = {q for q in (*mapping.phi, *mapping.psi)} | {q[::-1] for q in (*mapping.phi, *mapping.psi)}
    quads = _zmatrix_dihedral_quads(zmat)
    d_index, d_phi0, d_k = [], [], []
    for i, quad in enumerate(quads):
        if quad in backbone:
            continue
        d = dihedrals[:, i]
        phi0 = torch.atan2(torch.sin(d).mean(), torch.cos(d).mean())
        dev = torch.remainder(d - phi0 + math.pi, 2 * math.pi) - math.pi
        var = float((dev**2).mean())
        if var > 0 and math.sqrt(var) < max_dihedral_std_rad:
            d_index.append(i)
            d_phi0.append(float(phi0))
            d_k.append(kT / var)

    sep = bond_graph_separation(zmat)
    pairs = [(i, j) for i in range(zmat.n_beads) for j in range(i + 1, zmat.n_beads) if sep[i, j] >= min_separation]
    sigma = []
    for i, j in pairs:
        r_min = float(torch.linalg.vector_norm(x[:, i] - x[:, j], dim=-1).min())
        sigma.append(repulsion_sigma_fraction * r_min)
    return PeptidePrior(
        mapping,
        bond_r0=bond_r0, bond_k=bond_k, angle_theta0=angle_theta0, angle_k=angle_k,
        dihedral_index=d_index, dihedral_phi0=d_phi0, dihedral_k=d_k,
        repulsion_pairs=pairs, repulsion_sigma=sigma,
        repulsion_eps_kj_per_mol=kT if repulsion_eps_kj_per_mol is None else repulsion_eps_kj_per_mol,
        repulsion_power=repulsion_power,
    )
