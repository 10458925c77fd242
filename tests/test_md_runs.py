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
    assert sidecar["settings"]["bias_residue"] == {"ala2": 1, "ala3": 2, "ala6": 4}[system]  # the scored one
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
        # the bias is on: right after a 5 kJ/mol hill the walker sits under it (the last sample
        # alone can have moved off the hills: 0.44 kJ/mol seen once, hence the max over the chunk)
        assert z["bias_energy_kj_per_mol"].max() > 2.0
        assert np.all(z["min_image_distance_nm"] >= 1.2)  # checked on every stored frame
    with gzip.open(tmp_path / "system.xml.gz", "rt") as fh:
        system = openmm.XmlSerializer.deserialize(fh.read())
    state = openmm.XmlSerializer.deserialize(str(_read_checkpoint(tmp_path)["state_xml"]))
    ctx = openmm.Context(system, openmm.VerletIntegrator(0.001),
                         openmm.Platform.getPlatformByName("Reference"))
    ctx.setState(state)
    # Reference forces summed over each group: the exact derivative of a rigid group
    # translation. (A finite difference is not used here: a pair crossing the 0.9 nm cutoff
    # makes the truncated PME energy jump by ~1e-2 kJ/mol, which a 1e-4 nm step turns into a
    # ~100 kJ/mol/nm error; CI hit this once.)
    ref = ctx.getState(getForces=True).getForces(asNumpy=True)._value
    check = np.arange(len(heavy))  # every stored heavy-atom group (cheap without FD)
    owner = np.asarray(derived["force_owner"])  # group = heavy atom + its bonded hydrogens
    fd = np.stack([ref[np.flatnonzero(owner == slot)].sum(axis=0) for slot in check])
    assert all(np.count_nonzero(owner == slot) >= 1 for slot in check)
    # CPU-platform PME (single precision, Ewald tolerance 5e-4) against Reference: ~1%.
    scale = np.abs(fd).max()
    np.testing.assert_allclose(stored, fd, atol=0.02 * scale)



def test_md_bench_measures_the_box_it_is_given(monkeypatch, capsys):
    """`md bench` passes --box-shape/--image-distance on, and the run settings take them for explicit
    solvent only."""
    from cgbg_bench.cli import main
    from cgbg_bench.md import throughput

    real = throughput.measure_ns_per_day
    seen = []

    def fake(system, solvent, bias, threads, platform, **box):
        seen.append((system, solvent, box))
        return {"n_atoms": 1, "ns_per_day": 1.0, "ns_per_cpu_day": 1.0, "platform": "CPU", "threads": threads}

    monkeypatch.setattr(throughput, "measure_ns_per_day", fake)
    assert main(["md", "bench", "--system", "ala6", "--solvent", "explicit", "obc2",
                 "--box-shape", "dodecahedron", "--image-distance", "1.6"]) == 0
    box = {"box_shape": "dodecahedron", "image_distance_nm": 1.6}
    assert seen == [("ala6", "explicit", box), ("ala6", "obc2", box)]
    rows = [line for line in capsys.readouterr().out.splitlines() if line.startswith("| ala6")]
    assert "| dodecahedron, >= 1.6 nm |" in rows[0] and "| obc2 | - |" in rows[1]

    class Stop(Exception):
        pass

    made = []

    def no_run(settings, *args, **kwargs):
        made.append(settings)
        raise Stop

    monkeypatch.setattr(throughput, "run", no_run)
    for solvent in ("explicit", "obc2"):
        with pytest.raises(Stop):
            real("ala6", solvent, **box)
    assert (made[0].box_shape, made[0].image_distance_nm) == ("dodecahedron", 1.6)
    assert made[1].box_shape == RunSettings("ala6", "obc2").box_shape  # the default: no box in GB
