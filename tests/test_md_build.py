"""Built peptides: counts, bonds, L chirality, finite minimized energy; systems and boxes."""

from __future__ import annotations

import numpy as np
import pytest

from cgbg_bench.md.build import build_peptide, chirality_volume
from cgbg_bench.md.systems import create_system, image_shifts, min_image_distance, solute_diameter

# (n alanines, atoms: ACE 6 + ALA 10 each + NME 6)
COUNTS = {"ala2": 1, "ala3": 3, "ala6": 6}


@pytest.fixture(scope="module", params=sorted(COUNTS))
def peptide(request):
    return build_peptide(request.param)


def test_residue_atom_and_bond_counts(peptide):
    n = COUNTS[peptide.system]
    top = peptide.topology
    assert [r.name for r in top.residues()] == ["ACE"] + ["ALA"] * n + ["NME"]
    assert top.getNumAtoms() == 12 + 10 * n
    heavy = [a for a in top.atoms() if a.element.symbol != "H"]
    assert len(heavy) == 5 + 5 * n
    # A chain without rings: a tree, bonds = atoms - 1, and every H has exactly one bond.
    bonds = list(top.bonds())
    assert len(bonds) == top.getNumAtoms() - 1
    degree = np.zeros(top.getNumAtoms(), int)
    for a, b in bonds:
        degree[a.index] += 1
        degree[b.index] += 1
    assert all(degree[a.index] == 1 for a in top.atoms() if a.element.symbol == "H")
    assert all(degree[a.index] == 4 for a in top.atoms() if a.name in ("CA", "CB", "CH3"))


def test_bond_lengths_are_chemical(peptide):
    pos = peptide.positions_nm
    for a, b in peptide.topology.bonds():
        d = np.linalg.norm(pos[a.index] - pos[b.index])
        lo, hi = (0.09, 0.115) if "H" in (a.element.symbol, b.element.symbol) else (0.118, 0.16)
        assert lo < d < hi, (a, b, d)


def test_l_chirality(peptide):
    pos = peptide.positions_nm
    for res in peptide.topology.residues():
        if res.name == "ALA":
            at = {a.name: pos[a.index] for a in res.atoms()}
            assert chirality_volume(at["N"], at["CA"], at["C"], at["CB"]) > 0  # L


def test_l_sign_convention_matches_a_known_l_alanine():
    """pdbfixer's ALA template (an L-alanine from a real structure) has a positive volume."""
    import os

    import pdbfixer

    path = os.path.join(os.path.dirname(pdbfixer.__file__), "templates", "ALA.pdb")
    at = {}
    for line in open(path):
        if line.startswith(("ATOM", "HETATM")):
            at[line[12:16].strip()] = np.array([float(line[30:38]), float(line[38:46]),
                                                float(line[46:54])])
    assert chirality_volume(at["N"], at["CA"], at["C"], at["CB"]) > 0


@pytest.mark.parametrize("solvent", ["vacuum", "obc1", "obc2"])
def test_finite_energy(peptide, solvent):
    import openmm

    system = create_system(peptide.topology, solvent)
    ctx = openmm.Context(system, openmm.VerletIntegrator(0.001),
                         openmm.Platform.getPlatformByName("Reference"))
    ctx.setPositions(peptide.positions_nm)
    e = ctx.getState(getEnergy=True).getPotentialEnergy()._value
    assert np.isfinite(e)


def test_obc1_and_obc2_differ(peptide):
    import openmm

    energies = []
    for solvent in ("obc1", "obc2"):
        ctx = openmm.Context(create_system(peptide.topology, solvent), openmm.VerletIntegrator(0.001),
                             openmm.Platform.getPlatformByName("Reference"))
        ctx.setPositions(peptide.positions_nm)
        energies.append(ctx.getState(getEnergy=True).getPotentialEnergy()._value)
    assert abs(energies[0] - energies[1]) > 1.0


def test_box_keeps_images_apart():
    from cgbg_bench.md.systems import solvate

    pep = build_peptide("ala2")
    top, pos, box, dist = solvate(pep)
    edge = box[0, 0]
    assert np.allclose(box, edge * np.eye(3))
    assert dist >= 1.2
    assert edge >= solute_diameter(pep.positions_nm) + 1.2
    # every orientation: the extent along any axis is at most the diameter
    rng = np.random.default_rng(0)
    for _ in range(5):
        q, _ = np.linalg.qr(rng.normal(size=(3, 3)))
        assert min_image_distance(pep.positions_nm @ q.T, edge) >= 1.2
    assert sum(r.name == "HOH" for r in top.residues()) > 200


def test_dodecahedron_keeps_images_apart_with_less_water():
    from cgbg_bench.md.systems import PME_CUTOFF_NM, solvate

    pep = build_peptide("ala2")
    _, _, cube, _ = solvate(pep, distance_nm=1.6)
    top, _, box, dist = solvate(pep, distance_nm=1.6, box_shape="dodecahedron")
    assert dist >= 1.6
    # nearest lattice points are the width apart: 12 of them, all at the same distance
    lengths = np.sort(np.linalg.norm(image_shifts(box), axis=1))
    assert np.allclose(lengths[:12], lengths[0]) and lengths[12] > lengths[0] * 1.1
    assert np.linalg.det(box) == pytest.approx(lengths[0] ** 3 / np.sqrt(2.0))
    assert box[2, 2] >= 2 * PME_CUTOFF_NM  # PME needs every height >= 2 x cutoff
    rng = np.random.default_rng(1)
    for _ in range(5):
        q, _ = np.linalg.qr(rng.normal(size=(3, 3)))
        assert min_image_distance(pep.positions_nm @ q.T, box) >= 1.6
    assert np.linalg.det(box) < np.linalg.det(cube)


def test_min_image_distance_matches_a_naive_loop():
    rng = np.random.default_rng(2)
    pos = rng.normal(scale=0.3, size=(6, 3))
    box = np.array([[2.5, 0.0, 0.0], [0.0, 2.5, 0.0], [1.25, 1.25, 2.5 / np.sqrt(2.0)]])
    best = np.inf
    for i in range(-3, 4):
        for j in range(-3, 4):
            for k in range(-3, 4):
                if (i, j, k) == (0, 0, 0):
                    continue
                t = i * box[0] + j * box[1] + k * box[2]
                for a in pos:
                    for b in pos:
                        best = min(best, np.linalg.norm(a - (b + t)))
    assert min_image_distance(pos, box) == pytest.approx(best)


def test_build_is_reproducible():
    a = build_peptide("ala3")
    b = build_peptide("ala3")
    np.testing.assert_array_equal(a.positions_nm, b.positions_nm)


def test_hydrogen_mass_repartitioning_is_optional():
    pep = build_peptide("ala2")
    masses = {}
    for hmr in (3.024, None):
        system = create_system(pep.topology, "obc2", hydrogen_mass_amu=hmr)
        masses[hmr] = np.array([system.getParticleMass(i)._value for i in range(system.getNumParticles())])
    h = np.array([a.element.symbol == "H" for a in pep.topology.atoms()])
    assert np.allclose(masses[None][h], 1.008, atol=1e-3)
    assert np.allclose(masses[3.024][h], 3.024)
    assert masses[3.024].sum() == pytest.approx(masses[None].sum())  # moved, not added


def test_run_settings_of_older_runs_are_unchanged():
    """New settings (box shape, image distance, hydrogen mass) keep older run.json comparable."""
    from cgbg_bench.md.production import RunSettings

    d = RunSettings(system="ala2", solvent="explicit").resolved().to_dict()
    assert "box_shape" not in d and "image_distance_nm" not in d and "shape" not in d["box"]
    assert d["box"]["min_image_distance_nm"] == 1.2 and d["hydrogen_mass_amu"] == 3.024
    rd = RunSettings(system="ala2", solvent="explicit", box_shape="dodecahedron",
                     image_distance_nm=1.6).resolved().to_dict()
    assert rd["box"]["shape"] == "dodecahedron" and rd["box"]["min_image_distance_nm"] == 1.6
