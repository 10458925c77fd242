"""Short runs of every system: explicit (PME box, unbiased forces) and implicit solvent."""

from __future__ import annotations

import gzip
import json

import numpy as np
import pytest

from cgbg_bench.cg import get_mapping
from cgbg_bench.md.metadynamics import MetadParams
from cgbg_bench.md.production import RunSettings, _read_checkpoint, chunk_paths, load_chunks, run

FAST_META = MetadParams(height_kj_per_mol=5.0, width_rad=0.3, bias_factor=10.0, pace_ps=0.1,
                        grid_points=60)


@pytest.mark.parametrize("system", ["ala2", "ala3", "ala6"])
@pytest.mark.parametrize("solvent,bias", [("obc2", "wtmetad"), ("obc1", "none")])
def test_implicit_runs(tmp_path, system, solvent, bias):
    n = {"ala2": 1, "ala3": 3, "ala6": 6}[system]
    settings = RunSettings(system, solvent, bias, chunk_ps=1.0, equilibration_ps=0.4,
                           metad=FAST_META)
    run(settings, tmp_path, ns=0.001, platform="CPU")
    d = load_chunks(tmp_path)
    assert d["phi"].shape == (10, n) and d["positions_nm"].shape == (1, 5 + 5 * n, 3)
    assert np.all(np.isfinite(d["forces_kj_per_mol_nm"]))
    assert np.all(np.isnan(d["min_image_distance_nm"]))  # no periodic box
    sidecar = json.loads((tmp_path / "run.json").read_text())
    assert sidecar["settings"]["forcefield_files"][1] == f"implicit/{solvent}.xml"
    assert sidecar["settings"]["bias_residue"] == (n + 1) // 2
    # the stored heavy atoms are in heavy-atom bead order; core beta is a subset
    import mdtraj as md

    top = md.load(str(tmp_path / "solute.pdb")).topology
    np.testing.assert_array_equal(get_mapping(system, "heavy-atom").atom_indices(top),
                                  np.arange(5 + 5 * n))
    assert len(get_mapping(system, "core-beta").atom_indices(top)) in (6, 4 * n)


def test_explicit_run_box_and_unbiased_forces(tmp_path, monkeypatch):
    import openmm

    from cgbg_bench.md import production

    monkeypatch.setattr(production, "SETUP_MINIMIZE_MAX_ITERATIONS", 100)

    settings = RunSettings("ala2", "explicit", "wtmetad", chunk_ps=1.0, equilibration_ps=0.4,
                           metad=FAST_META)
    run(settings, tmp_path, ns=0.001, platform="CPU")
    sidecar = json.loads((tmp_path / "run.json").read_text())
    derived = sidecar["derived"]
    assert derived["min_image_distance_nm"] >= 1.2
    assert derived["n_waters"] > 200 and derived["box_edge_nm"] > 2.0
    assert sidecar["settings"]["nonbonded"] == {"method": "PME", "cutoff_nm": 0.9}
    heavy = np.asarray(derived["heavy_atom_indices"])
    with np.load(chunk_paths(tmp_path)[-1]) as z:
        stored = z["forces_kj_per_mol_nm"][-1].astype(np.float64)
        assert z["bias_energy_kj_per_mol"][-1] > 0.5  # the bias is on
        assert np.all(z["min_image_distance_nm"] >= 1.2)  # checked on every stored frame
    with gzip.open(tmp_path / "system.xml.gz", "rt") as fh:
        system = openmm.XmlSerializer.deserialize(fh.read())
    state = openmm.XmlSerializer.deserialize(str(_read_checkpoint(tmp_path)["state_xml"]))
    ctx = openmm.Context(system, openmm.VerletIntegrator(0.001),
                         openmm.Platform.getPlatformByName("Reference"))
    ctx.setState(state)
    pos0 = state.getPositions(asNumpy=True)._value

    def energy(p):
        ctx.setPositions(p)
        return ctx.getState(getEnergy=True).getPotentialEnergy()._value

    h = 1e-4
    check = [3, 4, 5, 6]  # N, CA, CB, C: the biased phi/psi atoms (Reference PME is slow)
    stored = stored[check]
    owner = np.asarray(derived["force_owner"])  # group = heavy atom + its bonded hydrogens
    fd = np.zeros((len(check), 3))
    for i, slot in enumerate(check):
        group = np.flatnonzero(owner == slot)
        for k in range(3):
            p = pos0.copy()
            p[group, k] += h
            ep = energy(p)
            p[group, k] -= 2 * h
            fd[i, k] = -(ep - energy(p)) / (2 * h)
    # CPU-platform PME (single precision, Ewald tolerance 5e-4) against Reference: ~1%.
    scale = np.abs(fd).max()
    np.testing.assert_allclose(stored, fd, atol=0.02 * scale)
