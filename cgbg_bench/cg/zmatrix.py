"""Internal coordinates of a CG chain: a Z-matrix, the exact map to and from Cartesians.

Every bead after the first three is placed from three already placed beads
(j, k, l): bond |r_i - r_j|, angle (i, j, k), dihedral (i, j, k, l) in the
convention of :func:`cgbg_bench.observables.dihedral` (so the phi/psi of the metric
are internal coordinates of the chain). Main-chain beads use the three previous
main-chain beads; a branch bead b on main bead m (CB on CA, O on C) uses
(m, a, c) with a, c the main-chain neighbours of m: an improper-like dihedral
that is sharply peaked (chirality, planarity).

The first three beads fix the frame: bead 0 at the origin, bead 1 on +x, bead 2
in the xy plane. Global rotation and translation are thereby factored
out; the Cartesian volume element is

    dR = dT dOmega * r_1^2 dr_1 * r_2^2 sin(theta_2) dr_2 dtheta_2 * prod_i r_i^2 sin(theta_i) dr_i dtheta_i dphi_i

so log J(ic) = sum_i 2 log r_i + sum_i log sin(theta_i) is the log-density
correction between internal and (rotation-averaged) Cartesian space.
Torch throughout (differentiable); float64 recommended for round trips.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from cgbg_bench.cg.mappings import CGMapping, get_mapping
from cgbg_bench.errors import MappingError

__all__ = ["ZMatrix", "zmatrix_for"]

_BRANCH_NAMES = {"O", "CB"}


@dataclass(frozen=True)
class ZMatrix:
    """Placement order and references.

    order: bead indices in placement order (first three: the frame beads).
    refs: for each placed bead after the first, its (j, k, l) references (bead indices;
    -1 where not used: bead 1 has only j, bead 2 has j, k).
    """

    n_beads: int
    order: tuple[int, ...]
    refs: tuple[tuple[int, int, int], ...]

    @property
    def n_bonds(self) -> int:
        return self.n_beads - 1

    @property
    def n_angles(self) -> int:
        return self.n_beads - 2

    @property
    def n_dihedrals(self) -> int:
        return self.n_beads - 3

    @property
    def n_ic(self) -> int:
        return 3 * self.n_beads - 6

    def dihedral_index(self, quad: tuple[int, int, int, int]) -> int:
        """Position in the dihedral block of the internal coordinate equal to dihedral ``quad``.

        The dihedral (i, j, k, l) equals (l, k, j, i); either orientation matches.
        """
        for d, (bead, (j, k, l)) in enumerate(zip(self.order[3:], self.refs[2:])):
            q = (bead, j, k, l)
            if tuple(quad) in (q, q[::-1]):
                return d
        raise KeyError(f"dihedral {quad} is not an internal coordinate of this Z-matrix")

    # -- Cartesian -> internal -------------------------------------------------------
    def to_internal(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """x (B, n, 3) -> bonds (B, n-1), angles (B, n-2), dihedrals (B, n-3) in (-pi, pi]."""
        bonds, angles, dihedrals = [], [], []
        for bead, (j, k, l) in zip(self.order[1:], self.refs):
            bonds.append(_norm(x[:, bead] - x[:, j]))
            if k >= 0:
                angles.append(_angle(x[:, bead], x[:, j], x[:, k]))
            if l >= 0:
                dihedrals.append(_dihedral(x[:, bead], x[:, j], x[:, k], x[:, l]))
        empty = x.new_zeros((x.shape[0], 0))
        stack = lambda v: torch.stack(v, -1) if v else empty  # noqa: E731
        return stack(bonds), stack(angles), stack(dihedrals)

    # -- internal -> Cartesian (canonical frame) ---------------------------------------
    def to_cartesian(self, bonds: torch.Tensor, angles: torch.Tensor, dihedrals: torch.Tensor) -> torch.Tensor:
        """Inverse of :meth:`to_internal` up to rotation and translation: (B, n, 3), canonical frame."""
        batch = bonds.shape[0]
        pos: list[torch.Tensor | None] = [None] * self.n_beads
        zero = bonds.new_zeros(batch)
        pos[self.order[0]] = torch.stack([zero, zero, zero], -1)
        pos[self.order[1]] = torch.stack([bonds[:, 0], zero, zero], -1)
        # bead 2: bond to j, angle (2, j, k), in the xy plane 
        b2, j2, k2 = self.order[2], self.refs[1][0], self.refs[1][1]
        u = pos[k2] - pos[j2]
        u = u / _norm(u)[:, None]
        perp = torch.stack([-u[:, 1], u[:, 0], zero], -1)  # u rotated by +90 deg in the xy plane
        r, th = bonds[:, 1], angles[:, 0]
        pos[b2] = pos[j2] + r[:, None] * (torch.cos(th)[:, None] * u + torch.sin(th)[:, None] * perp)
        for n, (bead, (j, k, l)) in enumerate(zip(self.order[3:], self.refs[2:])):
            pos[bead] = _nerf(pos[j], pos[k], pos[l], bonds[:, n + 2], angles[:, n + 1], dihedrals[:, n])
        return torch.stack(pos, 1)

    def log_jacobian(self, bonds: torch.Tensor, angles: torch.Tensor) -> torch.Tensor:
        """log of the Cartesian volume per unit internal volume: sum 2 log r + sum log sin(theta)."""
        return 2.0 * torch.log(bonds).sum(-1) + torch.log(torch.sin(angles)).sum(-1)


def _norm(v: torch.Tensor) -> torch.Tensor:
    return torch.linalg.vector_norm(v, dim=-1)


def _angle(a, b, c) -> torch.Tensor:
    u, v = a - b, c - b
    cos = (u * v).sum(-1) / (_norm(u) * _norm(v))
    return torch.acos(cos.clamp(-1.0, 1.0))


def _dihedral(a, b, c, d) -> torch.Tensor:
    """Same convention as cgbg_bench.observables.dihedral (mdtraj's), values in (-pi, pi]."""
    b0, b1, b2 = b - a, c - b, d - c
    n1 = torch.linalg.cross(b0, b1)
    n2 = torch.linalg.cross(b1, b2)
    m1 = torch.linalg.cross(n1, b1 / _norm(b1)[:, None])
    x = (n1 * n2).sum(-1)
    y = (m1 * n2).sum(-1)
    return -torch.atan2(y, x)


def _nerf(j, k, l, r, theta, phi) -> torch.Tensor:
    """Place bead i with |i - j| = r, angle (i, j, k) = theta, dihedral (i, j, k, l) = phi."""
    bc = j - k
    bc = bc / _norm(bc)[:, None]
    n = torch.linalg.cross(k - l, bc)
    n = n / _norm(n)[:, None]
    m = torch.linalg.cross(n, bc)
    # local displacement in the (bc, m, n) frame; sign of phi matches _dihedral
    d2 = torch.stack([-r * torch.cos(theta), r * torch.sin(theta) * torch.cos(phi),
                      r * torch.sin(theta) * torch.sin(phi)], -1)
    return j + d2[:, 0:1] * bc + d2[:, 1:2] * m + d2[:, 2:3] * n


def zmatrix_for(mapping: CGMapping | tuple[str, str]) -> ZMatrix:
    """Z-matrix of a CG mapping: main chain in bead order, O/CB branches on their main bead."""
    if isinstance(mapping, tuple):
        mapping = get_mapping(*mapping)
    names = [name for _, name in mapping.atoms]
    main = [i for i, (pos, name) in enumerate(mapping.atoms) if name not in _BRANCH_NAMES]
    branches = [i for i in range(len(names)) if i not in main]
    if len(main) < 3:
        raise MappingError(f"{mapping.name}: a Z-matrix needs at least 3 main-chain beads")
    order = list(main[:3])
    refs: list[tuple[int, int, int]] = [(main[0], -1, -1), (main[1], main[0], -1)]
    pending = list(branches)

    def place_ready_branches() -> None:
        for b in list(pending):
            m = _branch_parent(mapping, b, main)
            mi = main.index(m)
            if mi == 0 or mi + 1 >= len(main):
                raise MappingError(f"{mapping.name}: branch bead {b} sits on a chain end")
            a, c = main[mi - 1], main[mi + 1]
            if a in order and c in order and m in order:
                order.append(b)
                refs.append((m, a, c))
                pending.remove(b)

    for n in range(3, len(main)):
        place_ready_branches()
        order.append(main[n])
        refs.append((main[n - 1], main[n - 2], main[n - 3]))
    place_ready_branches()
    if pending:
        raise MappingError(f"{mapping.name}: could not place branch beads {pending}")
    return ZMatrix(n_beads=len(names), order=tuple(order), refs=tuple(refs))


def _branch_parent(mapping: CGMapping, b: int, main: list[int]) -> int:
    """The main-chain bead a branch is bonded to: CB -> CA, O -> C of the same residue."""
    res, name = mapping.atoms[b]
    want = "CA" if name == "CB" else "C"
    for i in main:
        if mapping.atoms[i] == (res, want):
            return i
    raise MappingError(f"{mapping.name}: no {want} in residue {res} for branch bead {b} ({name})")
