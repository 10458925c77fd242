"""Frozen CG mappings: bead atoms and phi/psi quadruples, docs/spec.md section 3."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from cgbg_bench.errors import MappingError

__all__ = [
    "CGMapping",
    "get_mapping",
    "n_alanines",
    "SYSTEMS",
    "REPRESENTATIONS",
    "BENCHMARK_REPRESENTATIONS",
    "SCORED_RESIDUE",
    "scored_residue",
    "observable_residues",
]

#: system name -> number of alanines between the ACE and NME caps.
SYSTEMS = {"ala2": 1, "ala3": 3, "ala6": 6}
REPRESENTATIONS = ("heavy-atom", "core-beta")
#: The (system, representation) pairs that are benchmark tasks (docs/spec.md section 3).
#: ala6 heavy-atom is defined too (handy for analysis) but is not a task.
BENCHMARK_REPRESENTATIONS = (
    ("ala2", "heavy-atom"),
    ("ala2", "core-beta"),
    ("ala3", "heavy-atom"),
    ("ala3", "core-beta"),
    ("ala6", "core-beta"),
)

#: system -> the alanine (1..n) whose (phi, psi) histogram is a task's headline score, the
#: residue metadynamics biases by default (docs/spec.md section 4). The other residues with both
#: angles in a representation are reported, not ranked.
SCORED_RESIDUE = {"ala2": 1, "ala3": 2, "ala6": 4}

_ALA_HEAVY = ("N", "CA", "CB", "C", "O")
#: Other names the same atom goes by in common PDB conventions.
_ALIASES = {("NME", "C"): ("C", "CH3", "CT"), ("ACE", "CH3"): ("CH3", "CA")}


def n_alanines(system: str) -> int:
    try:
        return SYSTEMS[system]
    except KeyError:
        raise MappingError(f"unknown system {system!r}; choose one of {sorted(SYSTEMS)}") from None


def scored_residue(system: str) -> int:
    """The alanine whose (phi, psi) histogram is ``system``'s headline score (:data:`SCORED_RESIDUE`)."""
    n_alanines(system)
    return SCORED_RESIDUE[system]


def observable_residues(mapping: "CGMapping") -> tuple[int, ...]:
    """The residues a task of ``mapping`` scores, in task order: the scored residue first (the
    headline), then the others with both phi and psi, in chain order. Raises MappingError when
    the representation lacks the scored residue's phi or psi."""
    scored = scored_residue(mapping.system)
    if scored not in mapping.residues:
        raise MappingError(f"{mapping.name}: the scored residue {scored} has no (phi, psi) in this "
                           f"representation (it has residues {list(mapping.residues)})")
    return (scored, *(r for r in mapping.residues if r != scored))


@dataclass(frozen=True)
class CGMapping:
    """Beads of one representation of one capped peptide.

    atoms: (residue position, atom name) per bead, in bead order. Residue position 0
        is the ACE cap, 1..n the alanines, n+1 the NME cap.
    residues: alanine numbers (1..n) that have both phi and psi in this representation.
    phi, psi: bead-index quadruples, aligned with ``residues``.
    """

    system: str
    representation: str
    atoms: tuple[tuple[int, str], ...]
    residues: tuple[int, ...]
    phi: tuple[tuple[int, int, int, int], ...]
    psi: tuple[tuple[int, int, int, int], ...]

    @property
    def n_beads(self) -> int:
        return len(self.atoms)

    @property
    def name(self) -> str:
        return f"{self.system}/{self.representation}"

    def atom_indices(self, topology) -> np.ndarray:
        """Indices of the bead atoms in ``topology`` (mdtraj or OpenMM), in bead order."""
        residues = _peptide_residues(topology, n_alanines(self.system))
        out = []
        for pos, name in self.atoms:
            res = residues[pos]
            resname = _resname(res)
            candidates = _ALIASES.get((resname, name), (name,))
            atoms = list(res.atoms() if callable(res.atoms) else res.atoms)  # OpenMM | mdtraj
            index = next((a.index for a in atoms if a.name in candidates), None)
            if index is None:
                raise MappingError(
                    f"{self.name}: residue {resname}{pos} has no atom named {name!r} "
                    f"(has {[a.name for a in atoms]})"
                )
            out.append(index)
        return np.asarray(out, dtype=np.int64)

    def force_groups(self, topology) -> list[np.ndarray]:
        """Per bead, the atoms of ``topology`` whose forces sum to the bead's mapped force.

        Every atom that is not a bead joins the bead nearest to it along the bonds
        (breadth-first from all beads at once; ties go to the lower bead index). Moving
        each such atom rigidly with its bead is a change of variables with unit Jacobian,
        so the summed force is an unbiased estimate of the mean force on the bead, like
        the bead atom's own force, but without the large bonded forces between the bead
        and the atoms it drops (a carbonyl C's force includes the fluctuating C=O bond
        force unless O is summed in). Atoms not connected to any bead join no group.
        """
        beads = self.atom_indices(topology)
        atoms = list(topology.atoms() if callable(topology.atoms) else topology.atoms)
        bonds = list(topology.bonds() if callable(topology.bonds) else topology.bonds)
        neighbours: dict[int, list[int]] = {a.index: [] for a in atoms}
        for bond in bonds:
            i, j = bond[0].index, bond[1].index
            neighbours[i].append(j)
            neighbours[j].append(i)
        owner = {int(b): k for k, b in enumerate(beads)}
        frontier = [int(b) for b in beads]
        while frontier:
            nxt = []
            for i in frontier:
                for j in sorted(neighbours[i]):
                    if j not in owner:
                        owner[j] = owner[i]
                        nxt.append(j)
            frontier = nxt
        groups = [[] for _ in beads]
        for i, k in sorted(owner.items()):
            groups[k].append(i)
        return [np.asarray(g, dtype=np.int64) for g in groups]


def _resname(residue) -> str:
    return residue.name.strip().upper()


def _peptide_residues(topology, n: int) -> list:
    """The n+2 residues ACE, ALA x n, NME of the first capped peptide in ``topology``."""
    residues = list(topology.residues() if callable(topology.residues) else topology.residues)
    names = [_resname(r) for r in residues]
    want = ["ACE"] + ["ALA"] * n + ["NME"]
    for start in range(len(names) - len(want) + 1):
        if names[start : start + len(want)] == want:
            return residues[start : start + len(want)]
    raise MappingError(
        f"topology has no ACE-(ALA){n}-NME peptide; its first residues are {names[: n + 4]}"
    )


def _heavy_atom(system: str) -> CGMapping:
    n = n_alanines(system)
    atoms = [(0, "CH3"), (0, "C"), (0, "O")]
    for k in range(1, n + 1):
        atoms += [(k, name) for name in _ALA_HEAVY]
    atoms += [(n + 1, "N"), (n + 1, "C")]
    index = {key: i for i, key in enumerate(atoms)}

    def carbonyl(k):  # C of residue position k (0 = ACE)
        return index[(k, "C")]

    def amide_n(k):  # N of residue position k (n+1 = NME)
        return index[(k, "N")]

    residues = tuple(range(1, n + 1))
    phi = tuple((carbonyl(k - 1), amide_n(k), index[(k, "CA")], carbonyl(k)) for k in residues)
    psi = tuple((amide_n(k), index[(k, "CA")], carbonyl(k), amide_n(k + 1)) for k in residues)
    return CGMapping(system, "heavy-atom", tuple(atoms), residues, phi, psi)


def _core_beta(system: str) -> CGMapping:
    n = n_alanines(system)
    if n == 1:
        # ala2 keeps the cap atoms of its phi and psi: C(ACE), N, CA, CB, C, N(NME).
        atoms = ((0, "C"), (1, "N"), (1, "CA"), (1, "CB"), (1, "C"), (2, "N"))
        return CGMapping(system, "core-beta", atoms, (1,), ((0, 1, 2, 4),), ((1, 2, 4, 5),))
    # Longer peptides drop the caps: N, CA, CB, C of every alanine.
    atoms = tuple((k, name) for k in range(1, n + 1) for name in ("N", "CA", "CB", "C"))
    index = {key: i for i, key in enumerate(atoms)}
    residues = tuple(range(2, n))
    phi = tuple(
        (index[(k - 1, "C")], index[(k, "N")], index[(k, "CA")], index[(k, "C")]) for k in residues
    )
    psi = tuple(
        (index[(k, "N")], index[(k, "CA")], index[(k, "C")], index[(k + 1, "N")]) for k in residues
    )
    return CGMapping(system, "core-beta", atoms, residues, phi, psi)


def get_mapping(system: str, representation: str) -> CGMapping:
    """The CG mapping of ``system`` (ala2, ala3, ala6) in ``representation``."""
    n_alanines(system)
    if representation == "heavy-atom":
        return _heavy_atom(system)
    if representation == "core-beta":
        return _core_beta(system)
    raise MappingError(
        f"unknown representation {representation!r}; choose one of {list(REPRESENTATIONS)}"
    )
