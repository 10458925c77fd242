"""The observables of an alanine task, scored residue first, and the matching reference columns.

A task's first observable is its headline (:func:`cgbg_bench.bootstrap.bootstrap_scores`): the
scored residue's (phi, psi) (:data:`cgbg_bench.cg.mappings.SCORED_RESIDUE`). The reference and
implicit-solvent histograms of a task are built on :func:`reference_columns`, so their residue
axis is in the same order as the task.yaml ``observables`` of :func:`task_observables`.
"""

from __future__ import annotations

from cgbg_bench.cg.mappings import CGMapping, observable_residues
from cgbg_bench.reference import DIHEDRAL_BINS

__all__ = ["task_observables", "reference_columns"]


def task_observables(mapping: CGMapping) -> list[dict]:
    """task.yaml ``observables`` of a task of ``mapping``: one (phi, psi) pair per residue, named
    ``ala<r>``, the scored residue first."""
    quads = {r: (p, q) for r, p, q in zip(mapping.residues, mapping.phi, mapping.psi)}
    return [{"name": f"ala{r}", "kind": "dihedral_pair", "phi": list(quads[r][0]), "psi": list(quads[r][1]),
             "bins": DIHEDRAL_BINS} for r in observable_residues(mapping)]


def reference_columns(mapping: CGMapping) -> list[int]:
    """Columns of the MD runs' (phi, psi) arrays (alanine r is column r - 1), in observable order."""
    return [r - 1 for r in observable_residues(mapping)]
