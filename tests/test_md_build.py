"""Built peptides: counts, bonds, L chirality, finite minimized energy; systems and boxes."""

from __future__ import annotations

import numpy as np
import pytest

from cgbg_bench.md.build import build_peptide, chirality_volume
from cgbg_bench.md.systems import create_system, min_image_distance, solute_diameter

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
    top, pos, edge, dist = solvate(pep)
    assert dist >= 1.2
    assert edge >= solute_diameter(pep.positions_nm) + 1.2
    # every orientation: the extent along any axis is at most the diameter
    rng = np.random.default_rng(0)
    for _ in range(5):
        q, _ = np.linalg.qr(rng.normal(size=(3, 3)))
        assert min_image_distance(pep.positions_nm @ q.T, edge) >= 1.2
    assert sum(r.name == "HOH" for r in top.residues()) > 200


def test_build_is_reproducible():
    a = build_peptide("ala3")
    b = build_peptide("ala3")
    np.testing.assert_array_equal(a.positions_nm, b.positions_nm)
