"""Bias on (phi, psi) of one residue: well-tempered metadynamics or a frozen grid.

Both are a :class:`GridBias`: a ``CustomCVForce`` whose energy is a periodic bicubic
spline (``Continuous2DFunction``) through a grid of values, of two collective variables,
the dihedrals phi (``cv0``) and psi (``cv1``) as ``CustomTorsionForce``s. Only OpenMM's
public API is used: the grid lives in numpy here, and a new grid reaches a live Context
through ``getTabulatedFunction(0).setFunctionParameters`` and
``updateParametersInContext``.

The bias is in its own force group (``BIAS_FORCE_GROUP``; every other force is in
group 0), so the forces and energies of the unbiased Hamiltonian are those of the groups
``UNBIASED_GROUPS``. The grid has shape (n_psi, n_phi); point i of an axis is at
-pi + i * 2 pi / (n - 1), and the grid is periodic (first = last point).

Well-tempered metadynamics (Barducci, Bussi & Parrinello 2008) adds, every pace, a
Gaussian hill at the current (phi, psi) of height ``h0 exp(-V / (R dT))``, V the bias
there and dT = T (gamma - 1), gamma the bias factor; the free energy estimate is
``-(T + dT) / dT * V``. Grid, hills and free energy are computed exactly as
``openmm.app.Metadynamics`` (OpenMM 8) computes them, which the runs made before this
module owned its force used: their saved grids (``metad_grid``, ``bias.npz``) continue
unchanged, and a run continues bit for bit (tests/test_md_bias.py).
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass

import numpy as np

from cgbg_bench.errors import MDError

__all__ = [
    "BIAS_FORCE_GROUP",
    "UNBIASED_GROUPS",
    "GridBias",
    "MetadParams",
    "WellTemperedMetad",
    "add_static_bias",
    "add_wtmetad",
    "grid_axis",
    "hill",
    "torsion_cv",
]

BIAS_FORCE_GROUP = 31
UNBIASED_GROUPS = frozenset(range(31))

_LO, _HI = -math.pi, math.pi  # both axes: periodic, first grid point = last


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

    def check(self) -> None:
        """Raise MDError unless these settings make a well-tempered metadynamics."""
        if not self.bias_factor > 1.0:
            raise MDError(f"the metadynamics bias factor must be > 1, got {self.bias_factor}")
        if not (self.width_rad > 0 and self.height_kj_per_mol >= 0 and self.pace_ps > 0):
            raise MDError(f"metadynamics needs a hill width > 0, height >= 0 and pace > 0, got "
                          f"{self.width_rad} rad, {self.height_kj_per_mol} kJ/mol, {self.pace_ps} ps")
        if int(self.grid_points) < 2:
            raise MDError(f"the metadynamics grid needs >= 2 points per axis, got {self.grid_points}")


def grid_axis(n_points: int) -> np.ndarray:
    """Angles (rad) of the grid points along one axis."""
    return np.linspace(-math.pi, math.pi, int(n_points))


def torsion_cv(atoms: tuple[int, int, int, int]):
    """A force whose energy is the dihedral (rad) of four atoms: a collective variable."""
    import openmm

    force = openmm.CustomTorsionForce("theta")
    force.addTorsion(*(int(a) for a in atoms), [])
    return force


def _check_grid(grid, what: str) -> np.ndarray:
    grid = np.array(grid, dtype=np.float64)  # a copy: the caller's array is never aliased
    if grid.ndim != 2 or min(grid.shape) < 2 or not np.all(np.isfinite(grid)):
        raise MDError(f"{what} must be a finite 2-D array with at least 2 points per axis, "
                      f"got shape {grid.shape}")
    return grid


def _axis_gaussian(value_rad: float, n_points: int, width_rad: float) -> np.ndarray:
    """exp(-d^2 / (2 width^2)) at the n grid points of a periodic axis, d the periodic
    distance from ``value_rad``, in units of the period (as openmm.app.Metadynamics)."""
    x = (value_rad - _LO) / (_HI - _LO)
    x = x % 1.0
    dist = np.abs(np.linspace(0, 1.0, num=n_points) - x)
    dist = np.min(np.array([dist, np.abs(dist - 1)]), axis=0)
    dist[-1] = dist[0]
    scaled_variance = (width_rad / (_HI - _LO)) ** 2
    return np.exp(-0.5 * dist * dist / scaled_variance)


def hill(phi_rad: float, psi_rad: float, shape: tuple[int, int], width_rad: float) -> np.ndarray:
    """A unit-height Gaussian hill at (phi, psi) on a grid of ``shape`` (n_psi, n_phi)."""
    n_psi, n_phi = shape
    return np.multiply.outer(_axis_gaussian(psi_rad, n_psi, width_rad),
                             _axis_gaussian(phi_rad, n_phi, width_rad))


class GridBias:
    """A bias V(phi, psi) interpolated (periodic bicubic spline) from a grid (n_psi, n_phi),
    kJ/mol, in force group ``BIAS_FORCE_GROUP``. ``force`` is the OpenMM force; add it to a
    System with :meth:`add_to` before the Context is made."""

    def __init__(self, phi_atoms, psi_atoms, grid, what: str = "bias grid"):
        import openmm

        self._grid = _check_grid(grid, what)
        n_psi, n_phi = self._grid.shape
        force = openmm.CustomCVForce("table(cv0, cv1)")
        force.addCollectiveVariable("cv0", torsion_cv(phi_atoms))
        force.addCollectiveVariable("cv1", torsion_cv(psi_atoms))
        force.addTabulatedFunction("table", openmm.Continuous2DFunction(
            n_phi, n_psi, self._grid.flatten(), _LO, _HI, _LO, _HI, True))
        force.setForceGroup(BIAS_FORCE_GROUP)
        self.force = force

    def add_to(self, system) -> GridBias:
        system.addForce(self.force)
        return self

    @property
    def shape(self) -> tuple[int, int]:
        return self._grid.shape

    @property
    def grid(self) -> np.ndarray:
        """A copy of the grid (n_psi, n_phi), kJ/mol."""
        return self._grid.copy()

    def set_grid(self, grid, context=None) -> None:
        """Replace the grid: in the force (Contexts made from now on) and, if given, in a
        live ``context``."""
        grid = _check_grid(grid, "bias grid")
        if grid.shape != self._grid.shape:
            raise MDError(f"bias grid of shape {grid.shape}, the force uses {self._grid.shape}")
        self._grid = grid
        self._push(context)

    def _push(self, context) -> None:
        n_psi, n_phi = self._grid.shape
        self.force.getTabulatedFunction(0).setFunctionParameters(
            n_phi, n_psi, self._grid.flatten(), _LO, _HI, _LO, _HI)
        if context is not None:
            self.force.updateParametersInContext(context)

    def cv_values(self, context) -> tuple[float, float]:
        """(phi, psi) in rad, as the force sees them in ``context``."""
        phi, psi = self.force.getCollectiveVariableValues(context)
        return float(phi), float(psi)


class WellTemperedMetad:
    """Well-tempered metadynamics on a :class:`GridBias` (``bias``) that starts at zero;
    the caller calls :meth:`deposit` every pace with the bias energy at that step."""

    def __init__(self, phi_atoms, psi_atoms, params: MetadParams, temperature_kelvin: float):
        params.check()
        n = int(params.grid_points)
        self.params = params
        self.temperature_kelvin = float(temperature_kelvin)
        self.delta_t_kelvin = self.temperature_kelvin * (params.bias_factor - 1)
        self.bias = GridBias(phi_atoms, psi_atoms, np.zeros((n, n)), "metadynamics grid")

    @property
    def grid(self) -> np.ndarray:
        return self.bias.grid

    def set_grid(self, grid, context=None) -> None:
        self.bias.set_grid(grid, context)

    def hill_height(self, bias_energy_kj_per_mol: float) -> float:
        """h0 exp(-V / (R dT)), kJ/mol."""
        import openmm.unit as u

        r = u.MOLAR_GAS_CONSTANT_R.value_in_unit(u.kilojoule_per_mole / u.kelvin)
        return self.params.height_kj_per_mol * math.exp(
            -bias_energy_kj_per_mol / (r * self.delta_t_kelvin))

    def deposit(self, context, bias_energy_kj_per_mol: float) -> float:
        """Add a hill at the current (phi, psi) of ``context``, whose bias energy there is
        given, and update the Context; returns the hill's height (kJ/mol)."""
        height = self.hill_height(bias_energy_kj_per_mol)
        phi, psi = self.bias.cv_values(context)
        self.bias._grid += height * hill(phi, psi, self.bias.shape, self.params.width_rad)
        self.bias._push(context)
        return height

    def free_energy(self) -> np.ndarray:
        """-(T + dT) / dT * V on the grid (n_psi, n_phi), kJ/mol."""
        t, dt = self.temperature_kelvin, self.delta_t_kelvin
        return -((t + dt) / dt) * self.bias._grid


def add_wtmetad(system, phi_atoms, psi_atoms, params: MetadParams,
                temperature_kelvin: float) -> WellTemperedMetad:
    """Add a well-tempered metadynamics bias on (phi, psi) to ``system``; returns it."""
    metad = WellTemperedMetad(phi_atoms, psi_atoms, params, temperature_kelvin)
    metad.bias.add_to(system)
    return metad


def add_static_bias(system, phi_atoms, psi_atoms, grid: np.ndarray) -> GridBias:
    """Add a frozen bias V(phi, psi) from ``grid`` (n_psi, n_phi) in kJ/mol; returns it."""
    return GridBias(phi_atoms, psi_atoms, grid, "static bias grid").add_to(system)
