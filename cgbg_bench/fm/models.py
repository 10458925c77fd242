"""Small smooth PMF models for force matching."""

from __future__ import annotations

import torch
from torch import nn

from cgbg_bench.errors import DataError

__all__ = ["RBFMLP"]


class RBFMLP(nn.Module):
    """PMF of one scalar coordinate: Gaussian radial basis features -> MLP -> energy.

    forward: x (B, 1) float32 -> (B,) energies (kT for Mueller-Brown).
    Features phi_k(x) = exp(-(x - mu_k)^2 / (2 s^2)) on ``n_centres`` fixed,
    equally spaced centres over ``centre_range`` with s = the centre spacing
    times ``width_factor`` (centres and width are buffers, not trained). The MLP
    uses SiLU, so U and the force -dU/dx are smooth. Exportable with
    torch.export with a dynamic batch dimension.

    ``seed`` initializes the weights from a private RNG (the global torch RNG is
    left as it was); ``seed=None`` uses the global RNG.
    """

    def __init__(
        self,
        n_centres: int = 32,
        centre_range: tuple[float, float] = (0.0, 50.0),
        hidden: tuple[int, ...] = (64, 64),
        width_factor: float = 1.0,
        seed: int | None = 0,
    ):
        super().__init__()
        if n_centres < 2:
            raise DataError(f"n_centres must be >= 2, got {n_centres}")
        lo, hi = float(centre_range[0]), float(centre_range[1])
        if not hi > lo:
            raise DataError(f"centre_range must be (lo, hi) with hi > lo, got {centre_range}")
        centres = torch.linspace(lo, hi, n_centres, dtype=torch.float32)
        width = (hi - lo) / (n_centres - 1) * width_factor
        self.register_buffer("centres", centres)
        self.register_buffer("inv_two_var", torch.tensor(1.0 / (2.0 * width * width), dtype=torch.float32))
        self.config = dict(
            n_centres=n_centres, centre_range=(lo, hi), hidden=tuple(hidden), width_factor=width_factor
        )

        def build() -> nn.Sequential:
            layers: list[nn.Module] = []
            n_in = n_centres
            for h in hidden:
                layers += [nn.Linear(n_in, h), nn.SiLU()]
                n_in = h
            layers.append(nn.Linear(n_in, 1))
            return nn.Sequential(*layers)

        if seed is None:
            self.mlp = build()
        else:
            with torch.random.fork_rng(devices=[]):
                torch.manual_seed(seed)
                self.mlp = build()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        d = x[:, 0:1] - self.centres[None, :]  # (B, n_centres)
        phi = torch.exp(-d * d * self.inv_two_var)
        return self.mlp(phi)[:, 0]
