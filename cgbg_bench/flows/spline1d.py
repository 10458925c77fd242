"""A 1-D neural spline flow (zuko's monotonic rational-quadratic splines) for scalar CG coordinates.

x = loc + scale * T(z), z ~ N(0, 1); log q(x) = log p_T(standardized x) - log(scale).
The standardization is fixed from the training data so the spline's [-5, 5] window
covers the data.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
import zuko

__all__ = ["Flow1D", "train_flow"]


class Flow1D(torch.nn.Module):
    def __init__(self, loc: float = 0.0, scale: float = 1.0, transforms: int = 3, bins: int = 16):
        super().__init__()
        self.config = {"loc": float(loc), "scale": float(scale), "transforms": transforms, "bins": bins}
        self.register_buffer("loc", torch.tensor(float(loc), dtype=torch.float64))
        self.register_buffer("scale", torch.tensor(float(scale), dtype=torch.float64))
        self.flow = zuko.flows.NSF(features=1, context=0, transforms=transforms, bins=bins,
                                   hidden_features=[32, 32])

    def log_prob(self, x: torch.Tensor) -> torch.Tensor:
        """Exact log-density of x with shape (N, 1), in the flow's dtype."""
        dtype = next(self.flow.parameters()).dtype
        z = (x.to(dtype) - self.loc.to(dtype)) / self.scale.to(dtype)
        return self.flow().log_prob(z) - torch.log(self.scale.to(dtype))

    @torch.no_grad()
    def sample_bank(self, n: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
        """Draw n samples (float32, shape (n, 1)) and their log q evaluated in float64 at the stored values."""
        torch.manual_seed(seed)
        z = self.flow().sample((n,))
        x = (z.to(torch.float64) * self.scale + self.loc).to(torch.float32)
        model64 = self.to(torch.float64)
        try:
            log_q = model64.log_prob(x.to(torch.float64)).numpy()
        finally:
            self.to(torch.float32)
        return x.numpy(), log_q

    def save(self, path: str | Path) -> None:
        from cgbg_bench._io import atomic_path

        with atomic_path(path) as tmp:
            torch.save({"config": self.config, "state_dict": self.state_dict()}, tmp)

    @classmethod
    def load(cls, path: str | Path) -> "Flow1D":
        blob = torch.load(path, weights_only=True)
        model = cls(**blob["config"])
        model.load_state_dict(blob["state_dict"])
        return model


def train_flow(x: np.ndarray, *, seed: int, epochs: int = 400, lr: float = 5e-3,
               batch_size: int = 8192, transforms: int = 3, bins: int = 16) -> tuple[Flow1D, dict]:
    """Maximum-likelihood training on samples x (N,) or (N, 1); returns the flow and a report."""
    torch.manual_seed(seed)
    rng = np.random.default_rng(seed)
    x = np.array(x, np.float64).reshape(-1, 1)
    lo, hi = np.percentile(x, [0.0, 100.0])
    # map the data's full range into [-4, 4] of the spline window [-5, 5]
    model = Flow1D(loc=0.5 * (lo + hi), scale=(hi - lo) / 8.0 + 1e-6, transforms=transforms, bins=bins)
    data = torch.as_tensor(x, dtype=torch.float32)
    opt = torch.optim.Adam(model.parameters(), lr=lr)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, epochs)
    n = len(data)
    for _ in range(epochs):
        perm = torch.as_tensor(rng.permutation(n))
        for start in range(0, n, batch_size):
            batch = data[perm[start:start + batch_size]]
            loss = -model.log_prob(batch).mean()
            opt.zero_grad()
            loss.backward()
            opt.step()
        sched.step()
    with torch.no_grad():
        nll = float(-model.log_prob(data).mean())
    return model, {"train_nll": nll, "epochs": epochs, "seed": seed, "n_train": n,
                   "n_parameters": sum(p.numel() for p in model.parameters())}
