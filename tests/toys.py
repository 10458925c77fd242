"""Toy systems with known answers, shared by several test files."""

from __future__ import annotations

import numpy as np
import torch


class AnalyticChain(torch.nn.Module):
    """U/kT = -log p_ic(ic) + log J(ic): independent normal bonds/angles, von Mises dihedrals.

    Its Boltzmann distribution (kT = 1) has exactly these internal-coordinate marginals:
    bonds N(0.15, 0.01^2) nm, angles N(1.95, 0.1^2) rad, dihedral k von Mises(mu_k, kappa).
    """

    def __init__(self, z, kappa: float = 2.0):
        super().__init__()
        self.z, self.kappa = z, kappa
        self.mu = torch.linspace(-2.0, 2.0, z.n_dihedrals, dtype=torch.float64)

    def forward(self, x):
        b, a, d = self.z.to_internal(x.to(torch.float64))
        u = ((b - 0.15) ** 2 / (2 * 0.01**2)).sum(-1) + ((a - 1.95) ** 2 / (2 * 0.1**2)).sum(-1)
        u = u - self.kappa * torch.cos(d - self.mu).sum(-1)
        return (u + self.z.log_jacobian(b, a)).to(x.dtype)

    def sample(self, n: int, seed: int) -> np.ndarray:
        rng = np.random.default_rng(seed)
        z = self.z
        b = 0.15 + 0.01 * rng.normal(size=(n, z.n_bonds))
        a = 1.95 + 0.1 * rng.normal(size=(n, z.n_angles))
        d = rng.vonmises(self.mu.numpy(), self.kappa, size=(n, z.n_dihedrals))
        return z.to_cartesian(*(torch.tensor(v) for v in (b, a, d))).numpy()
