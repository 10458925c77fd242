"""CG Langevin simulator: reaches the analytic equilibrium of a toy chain from one start."""

import numpy as np
import torch
from scipy.special import i0, i1

from cgbg_bench.cg.zmatrix import zmatrix_for
from cgbg_bench.simulate import cg_langevin, pmf_forces
from tests.toys import AnalyticChain


def test_forces_are_minus_gradient():
    z = zmatrix_for(("ala2", "core-beta"))
    toy = AnalyticChain(z)
    x = torch.as_tensor(toy.sample(3, seed=0))
    _, f = pmf_forces(toy, x)
    eps = 1e-6
    dx = torch.zeros_like(x)
    dx[1, 4, 2] = eps
    fd = -(toy(x + dx) - toy(x - dx))[1] / (2 * eps)
    assert abs(float(f[1, 4, 2] - fd)) < 1e-5 * (1 + abs(float(fd)))


def test_langevin_reaches_analytic_marginals_from_one_start():
    z = zmatrix_for(("ala2", "core-beta"))
    toy = AnalyticChain(z)
    start = np.repeat(toy.sample(1, seed=0), 128, axis=0)  # every walker starts in the same state
    run = cg_langevin(toy, start, kT=1.0, n_frames=40, stride=25, dt=0.002, friction=5.0, seed=1,
                      dtype=torch.float64)
    x = torch.as_tensor(run.positions[20:])  # second half: (frames, walkers, beads, 3)
    _, _, d = z.to_internal(x.reshape(-1, z.n_beads, 3))
    cos = np.cos(d.numpy() - toy.mu.numpy()).reshape(x.shape[0], x.shape[1], -1)
    per_walker = cos.mean(0)  # walkers are independent: their means give the standard error
    est = per_walker.mean(0)
    se = per_walker.std(0, ddof=1) / np.sqrt(per_walker.shape[0])
    expected = i1(toy.kappa) / i0(toy.kappa)
    assert np.all(np.abs(est - expected) < 4 * se), (est, expected, se)
