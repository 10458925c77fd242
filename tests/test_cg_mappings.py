"""CG mappings: bead counts and order of docs/spec.md section 3; phi/psi from beads equal mdtraj's."""

from __future__ import annotations

import mdtraj as md
import numpy as np
import pytest

from cgbg_bench.cg import BENCHMARK_REPRESENTATIONS, CGMapping, get_mapping
from cgbg_bench.errors import MappingError
from cgbg_bench.md.build import build_peptide
from cgbg_bench.observables import dihedral

N_BEADS = {("ala2", "heavy-atom"): 10, ("ala2", "core-beta"): 6, ("ala3", "heavy-atom"): 20,
           ("ala3", "core-beta"): 12, ("ala6", "heavy-atom"): 35, ("ala6", "core-beta"): 24}
CASES = sorted(N_BEADS)


def _frames(system: str) -> md.Trajectory:
    """All-atom frames over a spread of backbone angles (unminimized builds)."""
    rng = np.random.default_rng(0)
    xyz, top = [], None
    for phi, psi in [(-80, 150), (-60, -45), (60, 40), (-150, 170), (75, -65), (179, -179)]:
        pep = build_peptide(system, phi + rng.normal(0, 5), psi + rng.normal(0, 5), minimize=False)
        top = md.Topology.from_openmm(pep.topology)
        xyz.append(pep.positions_nm + rng.normal(0, 0.01, pep.positions_nm.shape))
    return md.Trajectory(np.asarray(xyz, dtype=np.float32), top)


@pytest.fixture(scope="module", params=["ala2", "ala3", "ala6"])
def traj(request):
    return request.param, _frames(request.param)


def test_frozen_and_counts():
    for (system, rep), n in N_BEADS.items():
        m = get_mapping(system, rep)
        assert isinstance(m, CGMapping) and m.n_beads == n
        assert len(m.phi) == len(m.psi) == len(m.residues)
        with pytest.raises(Exception):
            m.system = "x"  # frozen
    assert ("ala6", "heavy-atom") not in BENCHMARK_REPRESENTATIONS


def test_ala2_order_and_quads_are_the_published_ones():
    heavy = get_mapping("ala2", "heavy-atom")
    assert heavy.atoms == ((0, "CH3"), (0, "C"), (0, "O"), (1, "N"), (1, "CA"), (1, "CB"),
                           (1, "C"), (1, "O"), (2, "N"), (2, "C"))
    assert heavy.phi == ((1, 3, 4, 6),) and heavy.psi == ((3, 4, 6, 8),)
    core = get_mapping("ala2", "core-beta")
    assert core.atoms == ((0, "C"), (1, "N"), (1, "CA"), (1, "CB"), (1, "C"), (2, "N"))
    assert core.phi == ((0, 1, 2, 4),) and core.psi == ((1, 2, 4, 5),)
    assert get_mapping("ala3", "core-beta").residues == (2,)
    assert get_mapping("ala6", "core-beta").residues == (2, 3, 4, 5)


@pytest.mark.parametrize("rep", ["heavy-atom", "core-beta"])
def test_bead_dihedrals_match_mdtraj(traj, rep):
    system, t = traj
    m = get_mapping(system, rep)
    idx = m.atom_indices(t.topology)
    assert len(set(idx.tolist())) == m.n_beads
    beads = t.xyz[:, idx].astype(np.float64)
    phi_atoms, phi_ref = md.compute_phi(t)
    psi_atoms, psi_ref = md.compute_psi(t)
    # mdtraj lists phi/psi of residues 1..n in order; map alanine k -> column k-1.
    for r, qphi, qpsi in zip(m.residues, m.phi, m.psi):
        np.testing.assert_array_equal(idx[list(qphi)], phi_atoms[r - 1])
        np.testing.assert_array_equal(idx[list(qpsi)], psi_atoms[r - 1])
        d_phi = np.angle(np.exp(1j * (dihedral(beads, qphi) - phi_ref[:, r - 1])))
        d_psi = np.angle(np.exp(1j * (dihedral(beads, qpsi) - psi_ref[:, r - 1])))
        assert np.abs(d_phi).max() < 1e-4 and np.abs(d_psi).max() < 1e-4


def test_heavy_atom_topology_and_openmm_topology(traj):
    system, t = traj
    heavy = t.topology.select("element != H")
    sub = t.topology.subset(heavy)
    for rep in ("heavy-atom", "core-beta"):
        m = get_mapping(system, rep)
        full = m.atom_indices(t.topology)
        np.testing.assert_array_equal(heavy[m.atom_indices(sub)], full)
        np.testing.assert_array_equal(m.atom_indices(t.topology.to_openmm()), full)
    # The heavy-atom mapping of a heavy-atom topology is every atom, in topology order.
    np.testing.assert_array_equal(get_mapping(system, "heavy-atom").atom_indices(sub),
                                  np.arange(sub.n_atoms))


def test_force_groups_partition_the_heavy_atoms(traj):
    """Every heavy atom is in exactly one bead's force group, the bead atom heads its own group,
    heavy-atom mappings have singleton groups, and every dropped atom is bonded (through dropped
    atoms only) to its bead."""
    system, t = traj
    sub = t.topology.subset(t.topology.select("element != H"))
    for rep in ("heavy-atom", "core-beta"):
        m = get_mapping(system, rep)
        beads = m.atom_indices(sub)
        groups = m.force_groups(sub)
        assert len(groups) == m.n_beads
        assert sorted(np.concatenate(groups).tolist()) == list(range(sub.n_atoms))
        assert all(b in g for b, g in zip(beads, groups))
        if rep == "heavy-atom":
            assert all(len(g) == 1 for g in groups)
        bonded = {frozenset((a.index, b.index)) for a, b in sub.bonds}
        for b, g in zip(beads, groups):
            reached, todo = {int(b)}, [int(b)]
            while todo:
                i = todo.pop()
                for j in g:
                    if int(j) not in reached and frozenset((i, int(j))) in bonded:
                        reached.add(int(j))
                        todo.append(int(j))
            assert reached == set(g.tolist()), (rep, b, g)


def test_force_groups_of_ala2_core_beta():
    t = md.Topology.from_openmm(build_peptide("ala2", minimize=False).topology)
    sub = t.subset(t.select("element != H"))
    names = [[f"{sub.atom(int(i)).residue.name}:{sub.atom(int(i)).name}" for i in g]
             for g in get_mapping("ala2", "core-beta").force_groups(sub)]
    assert names == [["ACE:CH3", "ACE:C", "ACE:O"], ["ALA:N"], ["ALA:CA"], ["ALA:CB"], ["ALA:C", "ALA:O"],
                     ["NME:N", "NME:C"]]


def test_errors_name_the_problem():
    with pytest.raises(MappingError, match="unknown system"):
        get_mapping("ala4", "core-beta")
    with pytest.raises(MappingError, match="representation"):
        get_mapping("ala2", "beta")
    t = md.Topology.from_openmm(build_peptide("ala2", minimize=False).topology)
    with pytest.raises(MappingError, match="ACE-\\(ALA\\)3-NME"):
        get_mapping("ala3", "core-beta").atom_indices(t)


@pytest.mark.parametrize("rep", ["heavy-atom", "core-beta"])
def test_task_observables_scored_residue_first_and_each_matches_mdtraj(traj, rep):
    """The observables a task stores (cgbg_bench.build.observables): the scored residue first, then
    every other residue with both angles; each named ala<r> is mdtraj's phi/psi of residue r."""
    from cgbg_bench.build.observables import reference_columns, task_observables
    from cgbg_bench.cg.mappings import SCORED_RESIDUE

    system, t = traj
    m = get_mapping(system, rep)
    obs = task_observables(m)
    residues = [int(o["name"][3:]) for o in obs]
    assert residues[0] == SCORED_RESIDUE[system] and sorted(residues) == list(m.residues)
    assert reference_columns(m) == [r - 1 for r in residues]
    idx = m.atom_indices(t.topology)
    beads = t.xyz[:, idx].astype(np.float64)
    phi_atoms, phi_ref = md.compute_phi(t)
    psi_atoms, psi_ref = md.compute_psi(t)
    for r, o in zip(residues, obs):
        np.testing.assert_array_equal(idx[o["phi"]], phi_atoms[r - 1])
        np.testing.assert_array_equal(idx[o["psi"]], psi_atoms[r - 1])
        for quad, ref in ((o["phi"], phi_ref[:, r - 1]), (o["psi"], psi_ref[:, r - 1])):
            assert np.abs(np.angle(np.exp(1j * (dihedral(beads, tuple(quad)) - ref)))).max() < 1e-4


def test_scored_residues_are_the_published_ones():
    from cgbg_bench.cg.mappings import observable_residues

    assert observable_residues(get_mapping("ala3", "heavy-atom")) == (2, 1, 3)
    assert observable_residues(get_mapping("ala3", "core-beta")) == (2,)
    assert observable_residues(get_mapping("ala6", "core-beta")) == (4, 2, 3, 5)
    assert observable_residues(get_mapping("ala2", "core-beta")) == (1,)
