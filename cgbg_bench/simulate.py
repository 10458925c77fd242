"""CG Langevin dynamics with any PMF (torch, forces by autograd): the slow check that
importance reweighting replaces.

Used to verify proposals: the reweighted bank and a CG simulation of the same PMF must
give the same distributions within their errors (tests/test_simulate.py on an analytic
toy; docs for the full alanine-dipeptide check).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch

__all__ = ["LangevinResult", "cg_langevin", "pmf_forces"]


def pmf_forces(pmf: torch.nn.Module, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Energies (B,) and forces -dU/dx (same shape as x) by autograd."""
    x = x.detach().requires_grad_(True)
    energy = pmf(x)
    (grad,) = torch.autograd.grad(energy.sum(), x)
    return energy.detach(), -grad.detach()


@dataclass(frozen=True)
class LangevinResult:
    positions: np.ndarray  # (n_frames, n_walkers, *shape) float32
    energies: np.ndarray  # (n_frames, n_walkers) float64
    time: np.ndarray  # (n_frames,) in the time unit of dt


def cg_langevin(
    pmf: torch.nn.Module,
    x0: np.ndarray,
    *,
    kT: float,
    n_frames: int,
    stride: int,
    dt: float,
    friction: float = 1.0,
    mass: float = 1.0,
    seed: int = 0,
    dtype: torch.dtype = torch.float32,
) -> LangevinResult:
    """Underdamped Langevin (BAOAB) for walkers x0 (n_walkers, *shape) under U = pmf(x).

    The stationary distribution of the positions is exp(-U/kT) for any mass and friction.
    One frame every ``stride`` steps, the first after ``stride`` steps.
    """
    gen = torch.Generator().manual_seed(seed)
    x = torch.as_tensor(np.asarray(x0), dtype=dtype).clone()
    v = torch.randn(x.shape, generator=gen, dtype=dtype) * math.sqrt(kT / mass)
    c1 = math.exp(-friction * dt)
    c2 = math.sqrt((1.0 - c1 * c1) * kT / mass)
    energy, force = pmf_forces(pmf, x)
    frames, energies = [], []
    for _ in range(n_frames):
        for _ in range(stride):
            v = v + 0.5 * dt * force / mass
            x = x + 0.5 * dt * v
            v = c1 * v + c2 * torch.randn(x.shape, generator=gen, dtype=dtype)
            x = x + 0.5 * dt * v
            energy, force = pmf_forces(pmf, x)
            v = v + 0.5 * dt * force / mass
        if not torch.isfinite(x).all():
            raise FloatingPointError("CG Langevin diverged (non-finite positions): lower dt")
        frames.append(x.numpy().astype(np.float32))
        energies.append(energy.numpy().astype(np.float64))
    return LangevinResult(np.stack(frames), np.stack(energies), dt * stride * (1 + np.arange(n_frames)))
