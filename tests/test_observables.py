"""The dihedral observable against mdtraj and a naive per-frame loop."""

import math

import mdtraj as md
import numpy as np

from cgbg_bench.observables import dihedral, dihedrals


def _naive(x, quad):
    out = []
    for frame in x.astype(np.float64):
        a, b, c, d = (frame[i] for i in quad)
        b0, b1, b2 = b - a, c - b, d - c
        n1, n2 = np.cross(b0, b1), np.cross(b1, b2)
        m1 = np.cross(n1, b1 / np.linalg.norm(b1))
        out.append(-math.atan2(m1 @ n2, n1 @ n2))
    return np.array(out)


def test_matches_mdtraj_and_naive_loop():
    rng = np.random.default_rng(0)
    x = rng.normal(size=(300, 6, 3)).astype(np.float32)
    top = md.Topology()
    res = top.add_residue("ALA", top.add_chain())
    for k in range(6):
        top.add_atom(f"C{k}", md.element.carbon, res)
    quads = [(0, 1, 2, 4), (1, 2, 4, 5)]
    ours = dihedrals(x, quads)
    ref = md.compute_dihedrals(md.Trajectory(x, top), quads)
    np.testing.assert_allclose(np.angle(np.exp(1j * (ours - ref))), 0, atol=1e-5)
    np.testing.assert_allclose(dihedral(x, quads[0]), _naive(x, quads[0]), atol=1e-12)
    assert np.all(ours > -math.pi) and np.all(ours <= math.pi)


def test_hand_values():
    # trans (180 deg) and +90 deg about the x axis
    x = np.array([[[0, 1, 0], [0, 0, 0], [1, 0, 0], [1, -1, 0]],
                  [[0, 1, 0], [0, 0, 0], [1, 0, 0], [1, 0, 1]]], np.float32)
    np.testing.assert_allclose(dihedral(x, (0, 1, 2, 3)), [math.pi, math.pi / 2], atol=1e-7)
