"""A proposal flow over the internal coordinates of a CG chain, with exact Cartesian log q.

Features (3n - 6): bonds and angles, each shifted and scaled into a window of the
circle [-pi, pi) (u = (v - loc) / scale), and dihedrals as they are (periodic). A
neural circular spline flow (zuko's NCSF: circular rational-quadratic splines,
coupling layers) models them jointly, so the periodic phi/psi are treated exactly.
The support of a bond or angle is loc +- pi * scale, chosen 1.7x wider than the
largest deviation in the training data.

    log q_cart(R) = log q_u(u(R)) - sum log scale - log J(ic(R))

with log J the Z-matrix volume factor (cgbg_bench.cg.zmatrix), so that
log w = -U(R)/kT - log q_cart(R) holds with the PMF's Cartesian input. Bank
samples are given a uniformly random rotation (which leaves q_cart unchanged
up to the constant 8 pi^2 that the weight normalization removes) and are centred.
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import torch
import zuko

from cgbg_bench.cg.zmatrix import ZMatrix

__all__ = ["ICFlow", "train_ic_flow", "random_rotations"]

_WINDOW = 0.6 * math.pi  # training data's largest deviation maps to +-0.6 pi


class ICFlow(torch.nn.Module):
    def __init__(self, zmatrix: ZMatrix, loc, scale, *, transforms: int = 6, bins: int = 16,
                 hidden: int = 128):
        super().__init__()
        self.zmatrix = zmatrix
        self.config = {"transforms": transforms, "bins": bins, "hidden": hidden}
        n_lin = zmatrix.n_bonds + zmatrix.n_angles
        self.register_buffer("loc", torch.as_tensor(np.asarray(loc, np.float64)).reshape(n_lin))
        self.register_buffer("scale", torch.as_tensor(np.asarray(scale, np.float64)).reshape(n_lin))
        self.flow = zuko.flows.NCSF(features=zmatrix.n_ic, transforms=transforms, bins=bins,
                                    hidden_features=[hidden, hidden], passes=2)

    # -- coordinate maps ---------------------------------------------------------------
    def _features(self, positions: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """positions (B, n, 3) -> (u (B, n_ic) in the flow's space, log J (B,))."""
        b, a, d = self.zmatrix.to_internal(positions)
        lin = torch.cat([b, a], -1)
        u_lin = (lin - self.loc.to(lin.dtype)) / self.scale.to(lin.dtype)
        d = torch.where(d >= math.pi, d - 2 * math.pi, d)  # NCSF's domain is [-pi, pi)
        return torch.cat([u_lin, d], -1), self.zmatrix.log_jacobian(b, a)

    def _positions(self, u: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        nb, na = self.zmatrix.n_bonds, self.zmatrix.n_angles
        lin = u[:, : nb + na] * self.scale.to(u.dtype) + self.loc.to(u.dtype)
        b, a, d = lin[:, :nb], lin[:, nb:], u[:, nb + na:]
        return self.zmatrix.to_cartesian(b, a, d), self.zmatrix.log_jacobian(b, a)

    def _log_scale(self, dtype) -> torch.Tensor:
        return torch.log(self.scale.to(dtype)).sum()

    def log_prob_features(self, u: torch.Tensor) -> torch.Tensor:
        dtype = next(self.flow.parameters()).dtype
        return self.flow().log_prob(u.to(dtype))

    def log_prob(self, positions: torch.Tensor) -> torch.Tensor:
        """Exact log q_cart of Cartesian positions (B, n, 3); any rotation and translation."""
        u, log_j = self._features(positions)
        inside = (u[:, : self.loc.numel()].abs() < math.pi).all(-1)
        lp = self.log_prob_features(u).to(positions.dtype) - self._log_scale(positions.dtype) - log_j
        return torch.where(inside, lp, torch.full_like(lp, -math.inf))

    @torch.no_grad()
    def sample_bank(self, n: int, seed: int, batch_size: int = 2048) -> tuple[np.ndarray, np.ndarray]:
        """n samples: positions (n, n_beads, 3) float32 (randomly rotated, centred) and log q (float64).

        log q is recomputed in float64 from the stored float32 positions, so it is exact
        for the very configurations the bank holds. A sample that rounding to float32 puts
        just outside the flow's support (a bond or angle at the edge of its window: log q =
        -inf, an infinite weight) is dropped and drawn again: the bank then samples q
        restricted to its support, whose normalization constant the self-normalized
        weights remove.
        """
        gen = torch.Generator().manual_seed(seed)
        torch.manual_seed(seed)
        out_x = np.empty((n, self.zmatrix.n_beads, 3), np.float32)
        out_lq = np.empty(n, np.float64)
        filled = 0
        while filled < n:
            m = min(batch_size, n - filled)
            u = self.flow().sample((m,)).to(torch.float64)
            x, _ = self._positions(u)
            x = x - x.mean(1, keepdim=True)
            x = x @ random_rotations(m, gen).transpose(1, 2)
            x32 = x.to(torch.float32)
            lq = self.log_prob(x32.to(torch.float64))
            ok = torch.isfinite(lq)
            k = int(ok.sum())
            out_x[filled:filled + k] = x32[ok].numpy()
            out_lq[filled:filled + k] = lq[ok].numpy()
            filled += k
        return out_x, out_lq

    # -- persistence -----------------------------------------------------------------
    def save(self, path: str | Path) -> None:
        from cgbg_bench._io import atomic_path

        z = self.zmatrix
        blob = {"zmatrix": {"n_beads": z.n_beads, "order": list(z.order), "refs": [list(r) for r in z.refs]},
                "config": self.config, "state_dict": self.state_dict()}
        with atomic_path(path) as tmp:
            torch.save(blob, tmp)

    @classmethod
    def load(cls, path: str | Path) -> "ICFlow":
        blob = torch.load(path, weights_only=True)
        zd = blob["zmatrix"]
        z = ZMatrix(n_beads=zd["n_beads"], order=tuple(zd["order"]), refs=tuple(tuple(r) for r in zd["refs"]))
        sd = blob["state_dict"]
        model = cls(z, sd["loc"].numpy(), sd["scale"].numpy(), **blob["config"])
        model.load_state_dict(sd)
        return model


def random_rotations(n: int, generator: torch.Generator) -> torch.Tensor:
    """n uniformly random rotation matrices (QR of Gaussian matrices, sign-fixed), float64."""
    a = torch.randn(n, 3, 3, generator=generator, dtype=torch.float64)
    q, r = torch.linalg.qr(a)
    q = q * torch.sign(torch.diagonal(r, dim1=-2, dim2=-1))[:, None, :]
    det = torch.linalg.det(q)
    q[:, :, 0] *= det[:, None]  # make det = +1
    return q


def train_ic_flow(zmatrix: ZMatrix, positions: np.ndarray, *, seed: int, epochs: int = 50, lr: float = 1e-3,
                  batch_size: int = 1024, val_fraction: float = 0.1, **flow_kwargs) -> tuple[ICFlow, dict]:
    """Maximum likelihood on CG frames (N, n_beads, 3) nm; the last val_fraction (in time) is held out.

    The returned flow is the one of the epoch with the lowest validation NLL.
    """
    torch.manual_seed(seed)
    rng = np.random.default_rng(seed)
    x = torch.as_tensor(np.asarray(positions, np.float64))
    b, a, _ = zmatrix.to_internal(x)
    lin = torch.cat([b, a], -1).numpy()
    loc = lin.mean(0)
    scale = np.abs(lin - loc).max(0) / _WINDOW + 1e-6
    model = ICFlow(zmatrix, loc, scale, **flow_kwargs)
    u, _ = model._features(x)
    u = u.to(torch.float32)
    n_val = max(1, int(len(u) * val_fraction))
    train, val = u[:-n_val], u[-n_val:]
    opt = torch.optim.Adam(model.flow.parameters(), lr=lr)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, epochs)
    history = []
    best = (math.inf, -1, None)  # val NLL, epoch, state: the flow overfits small data sets
    for epoch in range(epochs):
        perm = torch.as_tensor(rng.permutation(len(train)))
        for start in range(0, len(train), batch_size):
            loss = -model.log_prob_features(train[perm[start:start + batch_size]]).mean()
            opt.zero_grad()
            loss.backward()
            opt.step()
        sched.step()
        with torch.no_grad():
            history.append(float(-model.log_prob_features(val).mean()))
        if history[-1] < best[0]:
            best = (history[-1], epoch, {k: v.detach().clone() for k, v in model.state_dict().items()})
    model.load_state_dict(best[2])
    with torch.no_grad():
        train_nll = float(-model.log_prob_features(train).mean())
    return model, {"train_nll": train_nll, "val_nll": best[0], "best_epoch": best[1] + 1,
                   "last_val_nll": history[-1], "epochs": epochs, "seed": seed,
                   "n_train": len(train), "n_val": n_val,
                   "n_parameters": sum(p.numel() for p in model.flow.parameters())}
