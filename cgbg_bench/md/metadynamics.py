"""Bias on (phi, psi) of one residue: well-tempered metadynamics or a frozen grid.

Both put the bias in its own force group (``BIAS_FORCE_GROUP``; every other force
is in group 0), so the forces and energies of the unbiased Hamiltonian are those
of the groups ``UNBIASED_GROUPS``. The grid is OpenMM's: shape (n_psi, n_phi),
point i of an axis at -pi + i * 2 pi / (n - 1), periodic (first = last point).
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass

import numpy as np

from cgbg_bench.errors import MDError

__all__ = [
    "BIAS_FORCE_GROUP",
    "UNBIASED_GROUPS",
    "MetadParams",
    "torsion_cv",
    "add_wtmetad",
    "set_metad_grid",
    "add_static_bias",
    "grid_axis",
]

BIAS_FORCE_GROUP = 31
UNBIASED_GROUPS = frozenset(range(31))


@dataclass(frozen=True)
class MetadParams:
    """Well-tempered metadynamics settings (recorded in the run sidecar)."""

    height_kj_per_mol: float = 1.0
    width_rad: float = 0.35
    bias_factor: float = 6.0
    pace_ps: float = 1.0
    grid_points: int = 100

    def to_dict(self) -> dict:
        return asdict(self)


def grid_axis(n_points: int) -> np.ndarray:
    """Angles (rad) of the grid points along one axis."""
    return np.linspace(-math.pi, math.pi, int(n_points))


def torsion_cv(atoms: tuple[int, int, int, int]):
    """A force whose energy is the dihedral (rad) of four atoms: a collective variable."""
    import openmm

    force = openmm.CustomTorsionForce("theta")
    force.addTorsion(*(int(a) for a in atoms), [])
    return force


def add_wtmetad(system, phi_atoms, psi_atoms, params: MetadParams, temperature_kelvin: float,
                pace_steps: int):
    """Add a well-tempered metadynamics bias on (phi, psi) to ``system``; returns it."""
    from openmm.app.metadynamics import BiasVariable, Metadynamics

    variables = [
        BiasVariable(torsion_cv(atoms), -math.pi, math.pi, params.width_rad, periodic=True,
                     gridWidth=params.grid_points)
        for atoms in (phi_atoms, psi_atoms)
    ]
    meta = Metadynamics(system, variables, temperature_kelvin, params.bias_factor,
                        params.height_kj_per_mol, int(pace_steps))
    meta._force.setForceGroup(BIAS_FORCE_GROUP)
    return meta


def set_metad_grid(meta, grid: np.ndarray, context=None) -> None:
    """Load a saved bias grid into ``meta`` (before or after the Context exists)."""
    grid = np.asarray(grid, dtype=np.float64)
    if grid.shape != meta._totalBias.shape:
        raise MDError(f"saved bias grid has shape {grid.shape}, metadynamics uses "
                      f"{meta._totalBias.shape}")
    meta._selfBias = grid.copy()
    meta._totalBias = grid.copy()
    meta._table.setFunctionParameters(*meta._widths, meta._totalBias.flatten(), *meta._limits)
    if context is not None:
        meta._force.updateParametersInContext(context)


def add_static_bias(system, phi_atoms, psi_atoms, grid: np.ndarray):
    """Add a frozen bias V(phi, psi) from ``grid`` (n_psi, n_phi) in kJ/mol; returns the force."""
    import openmm

    grid = np.asarray(grid, dtype=np.float64)
    if grid.ndim != 2 or not np.all(np.isfinite(grid)):
        raise MDError(f"static bias grid must be a finite 2-D array, got shape {grid.shape}")
    n_psi, n_phi = grid.shape
    force = openmm.CustomCVForce("table(cv0, cv1)")
    force.addCollectiveVariable("cv0", torsion_cv(phi_atoms))
    force.addCollectiveVariable("cv1", torsion_cv(psi_atoms))
    table = openmm.Continuous2DFunction(n_phi, n_psi, grid.flatten(), -math.pi, math.pi,
                                        -math.pi, math.pi, True)
    force.addTabulatedFunction("table", table)
    force.setForceGroup(BIAS_FORCE_GROUP)
    system.addForce(force)
    return force
