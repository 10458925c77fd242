"""Stored forces are those of the UNBIASED Hamiltonian, while the bias is active."""

from __future__ import annotations

import gzip

import numpy as np
import pytest

from cgbg_bench.md.metadynamics import MetadParams, add_static_bias
from cgbg_bench.md.production import RunSettings, _read_checkpoint, chunk_paths, load_chunks, run

# Tall, frequent hills, so that the bias force on the phi/psi atoms is large.
META = MetadParams(height_kj_per_mol=5.0, width_rad=0.3, bias_factor=10.0, pace_ps=0.1, grid_points=60)


@pytest.fixture(scope="module")
def metad_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("md") / "ala2-vac-metad"
    settings = RunSettings("ala2", "vacuum", "wtmetad", seed=3, chunk_ps=4.0, equilibration_ps=1.0,
                           metad=META)
    run(settings, out, ns=0.004, platform="CPU")
    return out


def _context(out, platform="Reference", grid=None, phi_psi_atoms=None):
    import openmm

    with gzip.open(out / "system.xml.gz", "rt") as fh:
        system = openmm.XmlSerializer.deserialize(fh.read())
    if grid is not None:
        add_static_bias(system, *phi_psi_atoms, grid)
    ctx = openmm.Context(system, openmm.VerletIntegrator(0.001),
                         openmm.Platform.getPlatformByName(platform))
    state = openmm.XmlSerializer.deserialize(str(_read_checkpoint(out)["state_xml"]))
    ctx.setPositions(state.getPositions())
    return ctx


def _stored_vs_unbiased_and_biased(out, grid):
    """(max |stored - FD of the unbiased potential|, tolerance, max |biased force - stored|) at the
    checkpoint state, the last stored frame; biased = the System plus the static bias ``grid``."""
    import json

    derived = json.loads((out / "run.json").read_text())["derived"]
    heavy = np.asarray(derived["heavy_atom_indices"])
    with np.load(chunk_paths(out)[-1]) as z:
        stored = z["forces_kj_per_mol_nm"][-1].astype(np.float64)  # last frame = checkpoint state
        stored_pos = z["positions_nm"][-1]
    ctx = _context(out)
    pos0 = ctx.getState(getPositions=True).getPositions(asNumpy=True)._value.copy()
    np.testing.assert_allclose(pos0[heavy], stored_pos, atol=1e-6)

    def energy(p):
        ctx.setPositions(p)
        return ctx.getState(getEnergy=True).getPotentialEnergy()._value

    # The stored force of a heavy atom is the force on its group (it and its bonded,
    # constrained hydrogens): minus the derivative for moving the whole group rigidly.
    owner = np.asarray(derived["force_owner"])
    h = 1e-5
    fd = np.zeros((len(heavy), 3))
    for i in range(len(heavy)):
        group = np.flatnonzero(owner == i)
        assert heavy[i] in group
        for d in range(3):
            p = pos0.copy()
            p[group, d] += h
            ep = energy(p)
            p[group, d] -= 2 * h
            fd[i, d] = -(ep - energy(p)) / (2 * h)
    tol = 2e-3 * np.abs(fd).max()
    np.testing.assert_allclose(stored, fd, atol=tol, rtol=2e-3)
    quads = derived["phi_quads_heavy"][0], derived["psi_quads_heavy"][0]
    atoms = [tuple(int(heavy[i]) for i in q) for q in quads]
    biased = _context(out, grid=grid, phi_psi_atoms=atoms)
    fall = biased.getState(getForces=True).getForces(asNumpy=True)._value[: len(owner)]
    fb = np.stack([fall[owner == i].sum(0) for i in range(len(heavy))])
    return tol, float(np.abs(fb - stored).max())


def test_stored_forces_are_minus_gradient_of_unbiased_potential(metad_run):
    # metadynamics: stored forces are the unbiased ones (FD of the System without the bias); how
    # much the bias would have changed them at this frame depends on where the walker ended
    # (machine-dependent), so the exclusion is proven by the static-bias test below
    _stored_vs_unbiased_and_biased(metad_run, _read_checkpoint(metad_run)["metad_grid"])


def test_stored_forces_exclude_a_steep_static_bias(tmp_path):
    # a static bias with a large gradient wherever alanine dipeptide goes: V = 100 (cos phi + cos psi)
    # kJ/mol, so |dV/dphi| >= 48 kJ/mol/rad for -2.6 < phi < -0.5 and the bias changes the forces
    # on the phi/psi atoms by far more than the tolerance of the FD check
    axis = np.linspace(-np.pi, np.pi, 60)
    psi, phi = np.meshgrid(axis, axis, indexing="ij")  # grid (n_psi, n_phi)
    grid = 100.0 * (np.cos(phi) + np.cos(psi))
    bias = tmp_path / "steep_bias.npz"
    np.savez(bias, grid_kj_per_mol=grid, residue=np.int64(1))
    out = tmp_path / "static"
    run(RunSettings("ala2", "vacuum", "static", seed=5, chunk_ps=2.0, equilibration_ps=1.0), out,
        ns=0.002, bias_from=bias, platform="CPU")
    assert np.abs(load_chunks(out)["bias_energy_kj_per_mol"]).max() > 1.0
    tol, diff = _stored_vs_unbiased_and_biased(out, grid)
    assert diff > 10 * tol, f"bias force too small to test the exclusion ({diff} vs tolerance {tol})"


def test_chunk_contents(metad_run):
    d = load_chunks(metad_run)
    n_dih, n_frames = 40, 4
    assert d["time_ps"].shape == (n_dih,) and d["phi"].shape == (n_dih, 1)
    assert d["positions_nm"].shape == (n_frames, 10, 3) and d["positions_nm"].dtype == np.float32
    assert d["forces_kj_per_mol_nm"].dtype == np.float32
    np.testing.assert_allclose(np.diff(d["time_ps"]), 0.1, atol=1e-9)
    np.testing.assert_allclose(d["frame_time_ps"], [1, 2, 3, 4], atol=1e-9)
    assert np.all(np.abs(d["phi"]) <= np.pi) and np.all(np.abs(d["psi"]) <= np.pi)
    # The bias grows as hills are deposited.
    assert d["bias_energy_kj_per_mol"][0] == 0 and d["bias_energy_kj_per_mol"].max() > 5


def test_stored_dihedrals_match_positions(metad_run):
    from cgbg_bench.cg import get_mapping
    from cgbg_bench.observables import dihedral

    d = load_chunks(metad_run)
    m = get_mapping("ala2", "heavy-atom")  # stored heavy atoms are in this bead order
    every = 10  # a frame each 1 ps, a dihedral each 0.1 ps
    phi = dihedral(d["positions_nm"], m.phi[0])
    psi = dihedral(d["positions_nm"], m.psi[0])
    np.testing.assert_allclose(np.angle(np.exp(1j * (phi - d["phi"][every - 1 :: every, 0]))), 0,
                               atol=1e-5)
    np.testing.assert_allclose(np.angle(np.exp(1j * (psi - d["psi"][every - 1 :: every, 0]))), 0,
                               atol=1e-5)


def test_static_bias_from_metad_run(metad_run, tmp_path):
    out = tmp_path / "static"
    settings = RunSettings("ala2", "vacuum", "static", seed=4, chunk_ps=2.0, equilibration_ps=1.0)
    run(settings, out, ns=0.002, bias_from=metad_run, platform="CPU")
    d = load_chunks(out)
    with np.load(out / "static_bias.npz") as z, np.load(metad_run / "bias.npz") as src:
        np.testing.assert_array_equal(z["grid_kj_per_mol"], src["grid_kj_per_mol"])
        grid = z["grid_kj_per_mol"]
    v = d["bias_energy_kj_per_mol"]
    assert np.all(v >= grid.min() - 1e-3) and np.all(v <= grid.max() + 1e-3) and v.max() > 0
    # bias energy = the grid interpolated at the stored (phi, psi): nearest grid point is close.
    axis = np.linspace(-np.pi, np.pi, grid.shape[0])
    i = np.abs(axis[None] - d["psi"][:, :1]).argmin(1)
    j = np.abs(axis[None] - d["phi"][:, :1]).argmin(1)
    slope = np.abs(np.gradient(grid, axis, axis)).max() * (axis[1] - axis[0])
    assert np.abs(grid[i, j] - v).max() <= slope + 1e-3
    # resuming without --bias-from uses the copy in the run directory
    run(settings, out, ns=0.004, platform="CPU")
    assert len(chunk_paths(out)) == 2
    # a different grid (e.g. the source run went on) is refused
    from cgbg_bench.errors import RunSettingsMismatch

    other = tmp_path / "other_bias.npz"
    np.savez(other, grid_kj_per_mol=grid + 1.0, residue=np.int64(1))
    with pytest.raises(RunSettingsMismatch, match="static_bias_sha256"):
        run(settings, out, ns=0.006, bias_from=other, platform="CPU")


@pytest.mark.parametrize("rep,n_beads", [("heavy-atom", 10), ("core-beta", 6)])
def test_load_cg(metad_run, rep, n_beads):
    from cgbg_bench.md import load_cg
    from cgbg_bench.observables import dihedral

    d = load_cg(metad_run, rep)
    assert d["positions_nm"].shape == (4, n_beads, 3) == d["forces_kj_per_mol_nm"].shape
    # mapped forces: each bead's force group summed; together they keep the total force
    from cgbg_bench.md.production import load_chunks

    raw = load_chunks(metad_run, keys=("forces_kj_per_mol_nm",))["forces_kj_per_mol_nm"]
    np.testing.assert_allclose(d["forces_kj_per_mol_nm"].sum(1), raw.sum(1), rtol=1e-4, atol=1e-2)
    if rep == "heavy-atom":
        np.testing.assert_array_equal(d["forces_kj_per_mol_nm"], raw)
    m = d["mapping"]
    phi = dihedral(d["positions_nm"], m.phi[0])
    np.testing.assert_allclose(np.angle(np.exp(1j * (phi - d["phi"][9::10, 0]))), 0, atol=1e-5)
