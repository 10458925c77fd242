"""Coarse-grained mappings of the capped alanine peptides (docs/spec.md section 3).

A mapping is a frozen list of atoms (beads are atom positions, no centres of
mass) in the exact bead order of docs/spec.md section 3, plus the bead quadruples of
each residue's backbone phi and psi. ``mapping.atom_indices(topology)`` finds the
beads in an mdtraj (or OpenMM) topology: the full solvated system, the all-atom
peptide, or the heavy-atom-only topology stored with MD runs.
"""

from cgbg_bench.cg.mappings import (
    BENCHMARK_REPRESENTATIONS,
    REPRESENTATIONS,
    SYSTEMS,
    CGMapping,
    get_mapping,
    n_alanines,
)

__all__ = [
    "CGMapping",
    "get_mapping",
    "n_alanines",
    "SYSTEMS",
    "REPRESENTATIONS",
    "BENCHMARK_REPRESENTATIONS",
]
