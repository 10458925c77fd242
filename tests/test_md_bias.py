"""The (phi, psi) grid bias owned by cgbg_bench.md.metadynamics (public OpenMM API only)
against openmm.app.Metadynamics, which the MD engine used before: same hills, same grid,
same bias energy and forces."""

from __future__ import annotations

import math

import numpy as np
import pytest

from cgbg_bench.errors import MDError
from cgbg_bench.md import metadynamics as M

META = M.MetadParams(height_kj_per_mol=5.0, width_rad=0.3, bias_factor=10.0, pace_ps=0.02,
                     grid_points=60)
T = 300.0
PACE = 10  # steps (2 fs)


@pytest.fixture(scope="module")
def ala2():
    """(System XML, positions, phi atoms, psi atoms, topology) of alanine dipeptide in vacuum."""
    import openmm

    from cgbg_bench.md.build import build_peptide
    from cgbg_bench.md.systems import create_system

    pep = build_peptide("ala2")
    atoms = {(a.residue.name, a.name): a.index for a in pep.topology.atoms()}
    phi = tuple(atoms[k] for k in (("ACE", "C"), ("ALA", "N"), ("ALA", "CA"), ("ALA", "C")))
    psi = tuple(atoms[k] for k in (("ALA", "N"), ("ALA", "CA"), ("ALA", "C"), ("NME", "N")))
    system = create_system(pep.topology, "vacuum")
    return openmm.XmlSerializer.serialize(system), pep.positions_nm, phi, psi, pep.topology


def _context(system, positions, seed=7):
    import openmm

    integrator = openmm.LangevinMiddleIntegrator(T, 1.0, 0.002)
    integrator.setRandomNumberSeed(seed)
    ctx = openmm.Context(system, integrator, openmm.Platform.getPlatformByName("Reference"))
    ctx.setPositions(positions)
    ctx.setVelocitiesToTemperature(T, 11)
    return ctx, integrator


def _system(xml):
    import openmm

    return openmm.XmlSerializer.deserialize(xml)


def _bias_state(ctx, positions):
    ctx.setPositions(positions)
    st = ctx.getState(getEnergy=True, getForces=True, groups={M.BIAS_FORCE_GROUP})
    return st.getPotentialEnergy()._value, st.getForces(asNumpy=True)._value


def _configs(pos0, n=30):
    rng = np.random.default_rng(0)
    return [pos0] + [pos0 + rng.normal(0, 0.05, pos0.shape) for _ in range(n - 1)]


def test_wtmetad_matches_openmm_metadynamics(ala2):
    """300 steps, a hill every 10: the same walker, the same hills, the same grid as
    openmm.app.Metadynamics driven by its public step(); then the same bias energy and forces."""
    import openmm
    import openmm.app as app
    from openmm.app.metadynamics import BiasVariable, Metadynamics

    xml, pos, phi, psi, top = ala2
    sys_a, sys_b = _system(xml), _system(xml)
    variables = [BiasVariable(M.torsion_cv(a), -math.pi, math.pi, META.width_rad, periodic=True,
                              gridWidth=META.grid_points) for a in (phi, psi)]
    meta = Metadynamics(sys_a, variables, T, META.bias_factor, META.height_kj_per_mol, PACE)
    ours = M.add_wtmetad(sys_b, phi, psi, META, T)
    # One after the other: the Reference platform draws its random numbers from one global
    # stream, (re)seeded when a Context is made, so two interleaved walkers would not match.
    walks, contexts = [], []
    for system in (sys_a, sys_b):
        integrator = openmm.LangevinMiddleIntegrator(T, 1.0, 0.002)
        integrator.setRandomNumberSeed(7)
        sim = app.Simulation(top, system, integrator, openmm.Platform.getPlatformByName("Reference"))
        sim.context.setPositions(pos)
        sim.context.setVelocitiesToTemperature(T, 11)
        walk = []
        for _ in range(30):
            if system is sys_a:
                meta.step(sim, PACE)
            else:
                sim.step(PACE)
                e = sim.context.getState(getEnergy=True, groups={M.BIAS_FORCE_GROUP})
                ours.deposit(sim.context, e.getPotentialEnergy()._value)
            st = sim.context.getState(getPositions=True, getEnergy=True, groups={M.BIAS_FORCE_GROUP})
            walk.append((st.getPositions(asNumpy=True)._value, st.getPotentialEnergy()._value))
        walks.append(walk)
        contexts.append(sim.context)
    ctx_a, ctx_b = contexts
    worst_pos = max(float(np.abs(a[0] - b[0]).max()) for a, b in zip(*walks))
    worst_energy = max(abs(a[1] - b[1]) for a, b in zip(*walks))
    # Metadynamics computes the hill height with unit-carrying numpy arithmetic, we with floats:
    # the two may differ in the last bit, so the walkers agree to round-off, not bit for bit.
    assert worst_pos < 1e-9 and worst_energy < 1e-9, (worst_pos, worst_energy)
    fe_a = meta.getFreeEnergy()._value
    fe_b = ours.free_energy()
    assert fe_b.shape == fe_a.shape == (META.grid_points, META.grid_points)
    assert fe_a.min() < -10  # 30 hills of up to 5 kJ/mol, times -(T + dT)/dT = -10/9
    print(f"walk: max |dx| {worst_pos:.3g} nm, max |dV| {worst_energy:.3g} kJ/mol; "
          f"grid: max |dF| {np.abs(fe_b - fe_a).max():.3g} kJ/mol, identical: {np.array_equal(fe_a, fe_b)}")
    np.testing.assert_allclose(fe_b, fe_a, rtol=1e-12, atol=1e-10)
    np.testing.assert_allclose(ours.grid, fe_b / -((T + ours.delta_t_kelvin) / ours.delta_t_kelvin),
                               rtol=1e-14)
    # bias energy and forces of the two forces at the walker's position and 29 others
    for p in _configs(ctx_b.getState(getPositions=True).getPositions(asNumpy=True)._value):
        ea, fa = _bias_state(ctx_a, p)
        eb, fb = _bias_state(ctx_b, p)
        print(f"config: |dV| {abs(ea - eb):.3g}, max |dF| {np.abs(fa - fb).max():.3g}")
        assert abs(ea - eb) <= 1e-10 * max(1.0, abs(ea))
        np.testing.assert_allclose(fb, fa, rtol=1e-9, atol=1e-9 * max(1.0, np.abs(fa).max()))


def test_static_bias_is_the_same_force(ala2):
    """A frozen GridBias made from a grid gives, bit for bit, the energy and forces of the
    metadynamics force holding that grid (set before and after the Context exists)."""
    xml, pos, phi, psi, _ = ala2
    rng = np.random.default_rng(1)
    grid = rng.normal(0, 3.0, (META.grid_points, META.grid_points))
    grid[-1], grid[:, -1] = grid[0], grid[:, 0]  # periodic: first = last
    sys_s, sys_m, sys_l = _system(xml), _system(xml), _system(xml)
    static = M.add_static_bias(sys_s, phi, psi, grid)
    before = M.add_wtmetad(sys_m, phi, psi, META, T)
    before.set_grid(grid)
    live = M.add_wtmetad(sys_l, phi, psi, META, T)
    ctx_s, _ = _context(sys_s, pos)
    ctx_m, _ = _context(sys_m, pos)
    ctx_l, _ = _context(sys_l, pos)
    assert _bias_state(ctx_l, pos)[0] == 0.0
    live.set_grid(grid, ctx_l)
    np.testing.assert_array_equal(static.grid, grid)
    assert static.force.getTabulatedFunction(0).getPeriodic()
    assert live.bias.force.getTabulatedFunction(0).getPeriodic()
    for p in _configs(pos, 10):
        es, fs = _bias_state(ctx_s, p)
        for ctx in (ctx_m, ctx_l):
            e, f = _bias_state(ctx, p)
            assert e == es
            np.testing.assert_array_equal(f, fs)


def test_constant_grid_and_periodicity(ala2):
    """A constant grid is a constant energy with no force; a hill straddling phi = +-pi is
    continuous across it."""
    xml, pos, phi, psi, _ = ala2
    system = _system(xml)
    bias = M.add_static_bias(system, phi, psi, np.full((40, 40), 2.5))
    ctx, _ = _context(system, pos)
    e, f = _bias_state(ctx, pos)
    assert e == pytest.approx(2.5, abs=1e-12) and np.abs(f).max() < 1e-10
    h = M.hill(math.pi - 0.01, 0.3, (40, 40), 0.3)
    h_wrapped = M.hill(-math.pi - 0.01, 0.3, (40, 40), 0.3)
    np.testing.assert_allclose(h, h_wrapped, atol=1e-12)
    np.testing.assert_array_equal(h[:, 0], h[:, -1])  # first = last grid point
    bias.set_grid(h, ctx)
    assert _bias_state(ctx, pos)[0] != e


def test_hill_is_a_periodic_gaussian():
    w = 0.35
    phi0, psi0 = 2.9, -1.2
    shape = (50, 70)
    axis_psi, axis_phi = M.grid_axis(shape[0]), M.grid_axis(shape[1])

    def d(a, b):
        return np.angle(np.exp(1j * (a - b)))

    expected = np.exp(-(d(axis_psi, psi0)[:, None] ** 2 + d(axis_phi, phi0)[None] ** 2) / (2 * w * w))
    np.testing.assert_allclose(M.hill(phi0, psi0, shape, w), expected, rtol=1e-12, atol=1e-300)


def test_hill_height_is_well_tempered():
    metad = M.WellTemperedMetad((0, 1, 2, 3), (1, 2, 3, 4), META, T)
    r = 8.314462618e-3
    assert metad.hill_height(0.0) == META.height_kj_per_mol
    dt = T * (META.bias_factor - 1)
    assert metad.hill_height(10.0) == pytest.approx(META.height_kj_per_mol * math.exp(-10 / (r * dt)),
                                                    rel=1e-9)


def test_bad_grids_and_settings_are_refused():
    with pytest.raises(MDError, match="bias factor"):
        M.WellTemperedMetad((0, 1, 2, 3), (1, 2, 3, 4), M.MetadParams(bias_factor=1.0), T)
    metad = M.WellTemperedMetad((0, 1, 2, 3), (1, 2, 3, 4), META, T)
    with pytest.raises(MDError, match="shape"):
        metad.set_grid(np.zeros((10, 10)))
    with pytest.raises(MDError, match="finite"):
        M.GridBias((0, 1, 2, 3), (1, 2, 3, 4), np.full((5, 5), np.nan))
    with pytest.raises(MDError, match="static bias grid"):
        M.add_static_bias(None, (0, 1, 2, 3), (1, 2, 3, 4), np.zeros(5))
    saved = np.ones((META.grid_points, META.grid_points))
    metad.set_grid(saved)
    saved[:] = 7.0  # the caller's array is copied, never aliased
    assert metad.grid.max() == 1.0
