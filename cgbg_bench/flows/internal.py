"""A proposal flow over the internal coordinates of a CG chain, with exact Cartesian log q.

The internal coordinates split in two groups:

- **soft**: the backbone dihedrals with several basins (phi, psi), modelled on the
  torus by a neural circular spline flow (zuko's NCSF), mixed with a uniform density
  on the torus (weight ``uniform``; defensive importance sampling: every (phi, psi)
  keeps at least ``uniform / (2 pi)^k`` density, so no PMF finds a region the proposal
  cannot reach) and with the flow's own mirror image s -> -s (weight ``mirror``: the
  Ramachandran distribution of the opposite chirality (only the soft dihedrals flip), which puts the alpha_R basin's
  density on the left-handed alpha_L basin that unbiased MD rarely visits; without it the
  few bank samples there carry weights above the clip and are discarded);
- **stiff**: bonds, angles and the single-basin dihedrals (CB and O placement, the
  peptide bond), each centred on its training mean (the circular mean for a dihedral,
  which is then unwrapped to (-pi, pi]) and scaled by its standard deviation, modelled
  by a neural spline flow with a Gaussian base conditioned on Fourier features of the
  soft dihedrals (coupling layers by default: sampling costs two network passes per
  transform instead of one per coordinate).

Stiff coordinates are narrow, near-Gaussian peaks that a circular spline on [-pi, pi)
fits poorly from a few thousand frames (the v2 flows made bonds ~30% too broad and
put 1.5% of the mass at the mirror-image CB), while a Gaussian-based flow starts right.

    log q_cart(R) = log q_soft(s) + log q_stiff(z | s) - sum log scale - log J(ic(R))

with log J the Z-matrix volume factor (cgbg_bench.cg.zmatrix), so that
log w = -U(R)/kT - log q_cart(R) holds with the PMF's Cartesian input. Bank samples
are given a uniformly random rotation (which leaves q_cart unchanged up to the constant
8 pi^2 that the weight normalization removes) and are centred. Raw samples outside the
coordinates' domain (a bond <= 0, an angle outside (0, pi), a stiff dihedral more than
pi from its centre) are redrawn: the bank samples q restricted to that domain, whose
normalization constant the self-normalized weights remove.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Sequence

import numpy as np
import torch
import zuko

from cgbg_bench.cg.zmatrix import ZMatrix
from cgbg_bench.errors import TaskError, UsageError

__all__ = ["ICFlow", "train_ic_flow", "frame_weights", "random_rotations", "soft_dihedrals"]

#: default: a dihedral whose circular standard deviation in the data exceeds this is soft
SOFT_CIRCULAR_SD = 0.5


def soft_dihedrals(dihedrals: np.ndarray, threshold: float = SOFT_CIRCULAR_SD) -> list[int]:
    """Columns of (N, n_dihedrals) whose circular standard deviation exceeds ``threshold`` rad."""
    r = np.abs(np.exp(1j * np.asarray(dihedrals)).mean(0))
    return [int(j) for j in np.flatnonzero(np.sqrt(-2.0 * np.log(np.maximum(r, 1e-300))) > threshold)]


def _wrap(x: torch.Tensor) -> torch.Tensor:
    """Into [-pi, pi)."""
    return torch.remainder(x + math.pi, 2 * math.pi) - math.pi


def _deviation(lin: torch.Tensor, loc: torch.Tensor, n_lin: int) -> torch.Tensor:
    """Stiff coordinates (bonds, angles, then dihedrals) minus their centres; dihedral parts wrapped."""
    delta = lin - loc
    return torch.cat([delta[:, :n_lin], _wrap(delta[:, n_lin:])], -1)


def _check_mixture(uniform: float, mirror: float) -> None:
    if not 0.0 <= uniform < 1.0:
        raise UsageError(f"uniform must be in [0, 1), got {uniform}")
    if not (0.0 <= mirror and uniform + mirror < 1.0):
        raise UsageError(f"mirror must be >= 0 with uniform + mirror < 1, got mirror {mirror}, uniform {uniform}")


class ICFlow(torch.nn.Module):
    def __init__(self, zmatrix: ZMatrix, loc, scale, soft: Sequence[int], *, transforms: int = 4,
                 bins: int = 16, hidden: int = 32, uniform: float = 0.05, fourier: int = 2, coupling: bool = True,
                 mirror: float = 0.0):
        super().__init__()
        self.zmatrix = zmatrix
        soft = sorted(int(j) for j in soft)
        if len(soft) < 1 or len(set(soft)) != len(soft) or not all(0 <= j < zmatrix.n_dihedrals for j in soft):
            raise UsageError(f"soft dihedrals must be distinct indices in [0, {zmatrix.n_dihedrals}), got {soft}")
        _check_mixture(uniform, mirror)
        stiff = [j for j in range(zmatrix.n_dihedrals) if j not in soft]
        self.config = {"transforms": transforms, "bins": bins, "hidden": hidden, "uniform": uniform,
                       "fourier": fourier, "coupling": coupling, "soft": soft, "mirror": mirror}
        self.n_lin = zmatrix.n_bonds + zmatrix.n_angles  # stiff features: bonds, angles, then dihedrals
        n_stiff = self.n_lin + len(stiff)
        self.register_buffer("loc", torch.as_tensor(np.asarray(loc, np.float64)).reshape(n_stiff))
        self.register_buffer("scale", torch.as_tensor(np.asarray(scale, np.float64)).reshape(n_stiff))
        self.register_buffer("soft_index", torch.as_tensor(soft, dtype=torch.long))
        self.register_buffer("stiff_index", torch.as_tensor(stiff, dtype=torch.long))
        # conditional linear-Gaussian whitening of the stiff features (fitted in closed form by
        # train_ic_flow; identity here): z_white = L^-1 (z - [1, context] A)
        n_context = 2 * fourier * len(soft)
        self.register_buffer("regression", torch.zeros(1 + n_context, n_stiff, dtype=torch.float64))
        self.register_buffer("cholesky", torch.eye(n_stiff, dtype=torch.float64))
        self.soft = zuko.flows.NCSF(features=len(soft), transforms=transforms, bins=bins,
                                    hidden_features=[hidden, hidden], passes=2 if len(soft) > 1 else None)
        self.stiff = zuko.flows.NSF(features=n_stiff, context=n_context, transforms=transforms,
                                    bins=bins, hidden_features=[hidden, hidden],
                                    passes=2 if coupling and n_stiff > 1 else None)

    # -- coordinate maps ---------------------------------------------------------------
    def _features(self, positions: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """positions (B, n, 3) -> (soft (B, k) in [-pi, pi), stiff z (B, m), log J (B,))."""
        b, a, d = self.zmatrix.to_internal(positions)
        lin = torch.cat([b, a, d[:, self.stiff_index]], -1)
        delta = _deviation(lin, self.loc.to(lin.dtype), self.n_lin)
        return _wrap(d[:, self.soft_index]), delta / self.scale.to(lin.dtype), self.zmatrix.log_jacobian(b, a)

    def _positions(self, soft: torch.Tensor, z: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Inverse of _features; also the mask of raw samples inside the coordinates' domain."""
        zm, nb, na = self.zmatrix, self.zmatrix.n_bonds, self.zmatrix.n_angles
        delta = z * self.scale.to(z.dtype)
        lin = delta + self.loc.to(z.dtype)
        b, a = lin[:, :nb], lin[:, nb:nb + na]
        d = torch.empty(len(z), zm.n_dihedrals, dtype=z.dtype)
        d[:, self.soft_index] = soft
        d[:, self.stiff_index] = lin[:, self.n_lin:]
        ok = (b > 0).all(-1) & (a > 0).all(-1) & (a < math.pi).all(-1) & (delta[:, self.n_lin:].abs() < math.pi).all(-1)
        return zm.to_cartesian(b, a, d), ok

    def _context(self, soft: torch.Tensor) -> torch.Tensor:
        k = torch.arange(1, self.config["fourier"] + 1, dtype=soft.dtype)
        angles = (soft[:, :, None] * k).flatten(1)
        return torch.cat([torch.cos(angles), torch.sin(angles)], -1)

    def _log_scale(self, dtype) -> torch.Tensor:
        return torch.log(self.scale.to(dtype)).sum()

    def _dtype(self):
        return next(self.stiff.parameters()).dtype

    def _mean(self, context: torch.Tensor) -> torch.Tensor:
        a = self.regression.to(context.dtype)
        return a[0] + context @ a[1:]

    def _whiten(self, z: torch.Tensor, context: torch.Tensor) -> torch.Tensor:
        lower = self.cholesky.to(z.dtype)
        r = (z - self._mean(context)).T
        return torch.linalg.solve_triangular(lower, r, upper=False).T

    def _log_det_cholesky(self) -> torch.Tensor:
        return torch.log(torch.diagonal(self.cholesky)).sum()

    def set_mirror(self, share: float) -> None:
        """Change the mirror part's weight of a trained flow (the mixture stays exact)."""
        _check_mixture(self.config["uniform"], share)
        self.config["mirror"] = share

    def log_prob_parts(self, soft: torch.Tensor, z: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(log density of the soft flow alone, without the uniform and mirror parts; log q_stiff(z | soft))."""
        soft, z = soft.to(self._dtype()), z.to(self._dtype())
        context = self._context(soft)
        lp_stiff = self.stiff(context).log_prob(self._whiten(z, context)) - self._log_det_cholesky().to(z.dtype)
        return self.soft().log_prob(soft), lp_stiff

    def log_prob_features(self, soft: torch.Tensor, z: torch.Tensor) -> torch.Tensor:
        """log q of (soft, stiff features): the soft flow mixed with its mirror image and the uniform."""
        lp_soft, lp_stiff = self.log_prob_parts(soft, z)
        eps, mirror = self.config["uniform"], self.config["mirror"]
        terms = [lp_soft + math.log1p(-eps - mirror)]
        if mirror > 0:
            terms.append(self.soft().log_prob(_wrap(-soft.to(torch.float64)).to(self._dtype())) + math.log(mirror))
        if eps > 0:
            terms.append(torch.full_like(lp_soft, math.log(eps) - soft.shape[1] * math.log(2 * math.pi)))
        if len(terms) == 2:  # logaddexp, as before the mirror part: the same bits for older flows
            lp_soft = torch.logaddexp(*terms)
        elif len(terms) == 3:
            lp_soft = torch.logsumexp(torch.stack(terms), 0)
        return lp_soft + lp_stiff

    def log_prob(self, positions: torch.Tensor) -> torch.Tensor:
        """Exact log q_cart of Cartesian positions (B, n, 3); any rotation and translation."""
        soft, z, log_j = self._features(positions)
        return self.log_prob_features(soft, z).to(positions.dtype) - self._log_scale(positions.dtype) - log_j

    @torch.no_grad()
    def sample_bank(self, n: int, seed: int, batch_size: int = 2048) -> tuple[np.ndarray, np.ndarray]:
        """n samples: positions (n, n_beads, 3) float32 (randomly rotated, centred) and log q (float64).

        log q is recomputed in float64 from the stored float32 positions, so it is exact
        for the very configurations the bank holds. Raw samples outside the coordinates'
        domain (see the module docstring) are dropped and drawn again.
        """
        gen = torch.Generator().manual_seed(seed)
        torch.manual_seed(seed)
        out_x = np.empty((n, self.zmatrix.n_beads, 3), np.float32)
        out_lq = np.empty(n, np.float64)
        filled = 0
        eps, mirror = self.config["uniform"], self.config["mirror"]
        while filled < n:
            m = min(batch_size, n - filled)
            soft = self.soft().sample((m,)).to(torch.float64)
            u = torch.rand(m, generator=gen, dtype=torch.float64)  # which part of the mixture draws
            uniform = (torch.rand(m, soft.shape[1], generator=gen, dtype=torch.float64) * 2 - 1) * math.pi
            if mirror > 0:  # (mirror 0 keeps the random stream, hence the banks, of earlier flows)
                soft = torch.where(((u >= eps) & (u < eps + mirror))[:, None], _wrap(-soft), soft)
            soft = torch.where((u < eps)[:, None], uniform, soft)
            context = self._context(soft.to(self._dtype()))
            white = self.stiff(context).sample().to(torch.float64)
            z = white @ self.cholesky.T + self._mean(context.to(torch.float64))
            x, ok = self._positions(soft, z)
            x = x - x.mean(1, keepdim=True)
            x = x @ random_rotations(m, gen).transpose(1, 2)
            x32 = x.to(torch.float32)
            lq = self.log_prob(x32.to(torch.float64))
            ok = ok & torch.isfinite(lq)
            k = int(ok.sum())
            out_x[filled:filled + k] = x32[ok].numpy()
            out_lq[filled:filled + k] = lq[ok].numpy()
            filled += k
        return out_x, out_lq

    # -- persistence -----------------------------------------------------------------
    def save(self, path: str | Path) -> None:
        from cgbg_bench._io import atomic_path

        z = self.zmatrix
        blob = {"format": "cgbg-bench ic-flow 2",
                "zmatrix": {"n_beads": z.n_beads, "order": list(z.order), "refs": [list(r) for r in z.refs]},
                "config": self.config, "state_dict": self.state_dict()}
        with atomic_path(path) as tmp:
            torch.save(blob, tmp)

    @classmethod
    def load(cls, path: str | Path) -> "ICFlow":
        blob = torch.load(path, weights_only=True)
        if blob.get("format") != "cgbg-bench ic-flow 2":
            raise TaskError(f"{path}: not an IC flow of format 2 (a flow saved before v3 of the ala2 tasks?); "
                             "rebuild the task with `cgbg-bench make-task`")
        zd = blob["zmatrix"]
        z = ZMatrix(n_beads=zd["n_beads"], order=tuple(zd["order"]), refs=tuple(tuple(r) for r in zd["refs"]))
        sd = blob["state_dict"]
        config = dict(blob["config"])
        soft = config.pop("soft")
        model = cls(z, sd["loc"].numpy(), sd["scale"].numpy(), soft, **config)
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


def _fit_linear_gaussian(model: ICFlow, soft: torch.Tensor, z: torch.Tensor, ridge: float = 1e-3) -> None:
    """Least-squares mean of the stiff features on [1, Fourier(soft)] and the Cholesky factor of
    the residual covariance, into the model's whitening buffers (float64, closed form)."""
    context = model._context(soft.to(torch.float64))
    design = torch.cat([torch.ones(len(z), 1, dtype=torch.float64), context], -1)
    gram = design.T @ design + ridge * len(z) * torch.eye(design.shape[1], dtype=torch.float64)
    coef = torch.linalg.solve(gram, design.T @ z.to(torch.float64))
    resid = z.to(torch.float64) - design @ coef
    cov = resid.T @ resid / len(z) + 1e-6 * torch.eye(z.shape[1], dtype=torch.float64)
    model.regression.copy_(coef)
    model.cholesky.copy_(torch.linalg.cholesky(cov))


def frame_weights(log_weights: np.ndarray | None, n: int) -> torch.Tensor | None:
    """Training weights from per-frame log weights: exp(log w - max), float64, mean 1; None for None.

    Raises UsageError on a wrong length or a value that is not finite.
    """
    if log_weights is None:
        return None
    lw = np.asarray(log_weights, np.float64)
    if lw.shape != (n,):
        raise UsageError(f"log_weights of shape {lw.shape}: give one value per frame, ({n},)")
    if not np.isfinite(lw).all():
        raise UsageError(f"log_weights: {int((~np.isfinite(lw)).sum())} values are not finite")
    w = np.exp(lw - lw.max())
    return torch.as_tensor(w / w.mean())


def _weighted_mean(values: torch.Tensor, weights: torch.Tensor | None) -> torch.Tensor:
    if weights is None:
        return values.mean()
    w = weights.to(values.dtype)
    return (w * values).sum() / w.sum()


def _kish_fraction(weights: torch.Tensor | None) -> float:
    """Kish effective sample size over the number of frames (1 without weights)."""
    if weights is None or len(weights) == 0:
        return 1.0
    return float(weights.sum() ** 2 / (weights ** 2).sum() / len(weights))


def train_ic_flow(zmatrix: ZMatrix, positions: np.ndarray, *, seed: int, soft: Sequence[int] | None = None,
                  epochs: int = 100, lr: float = 1e-3, batch_size: int = 256, val_fraction: float = 0.1,
                  log_weights: np.ndarray | None = None, **flow_kwargs) -> tuple[ICFlow, dict]:
    """Maximum likelihood on CG frames (N, n_beads, 3) nm; the last val_fraction (in time) is held out.

    ``soft``: the multi-basin dihedrals (indices into the Z-matrix's dihedrals); default:
    those whose circular standard deviation in the data exceeds ``SOFT_CIRCULAR_SD``.
    The soft and the stiff flow are trained together (the NLL is their sum) and each
    is returned at the epoch of its own lowest validation NLL.

    ``log_weights`` (N,): weighted maximum likelihood, each frame's NLL counted with weight
    exp(log_weights) in the training loss and in the validation NLL that picks the epochs (e.g.
    exp(V/kT) of a frozen bias V, so that biased frames train a flow of the unbiased
    distribution). The proposal's log q stays exact whatever the weights; they change only
    how well it matches a target.
    """
    torch.manual_seed(seed)
    rng = np.random.default_rng(seed)
    x = torch.as_tensor(np.asarray(positions, np.float64))
    weights = frame_weights(log_weights, len(x))
    b, a, d = zmatrix.to_internal(x)
    soft = soft_dihedrals(d.numpy()) if soft is None else list(soft)
    stiff = [j for j in range(zmatrix.n_dihedrals) if j not in soft]
    centre = torch.angle(torch.exp(1j * d[:, stiff]).mean(0)) if stiff else d.new_zeros(0)
    n_lin = zmatrix.n_bonds + zmatrix.n_angles
    lin = torch.cat([b, a, d[:, stiff]], -1)
    loc = torch.cat([lin[:, :n_lin].mean(0), centre])
    scale = _deviation(lin, loc, n_lin).std(0) + 1e-6
    model = ICFlow(zmatrix, loc.numpy(), scale.numpy(), soft, **flow_kwargs)
    s_all, z_all, _ = model._features(x)
    n_val = max(1, int(len(x) * val_fraction))
    _fit_linear_gaussian(model, s_all[: len(x) - n_val], z_all[: len(x) - n_val])
    s_all, z_all = s_all.to(torch.float32), z_all.to(torch.float32)
    train, val = slice(0, len(x) - n_val), slice(len(x) - n_val, len(x))
    n_train = len(x) - n_val
    w_train = None if weights is None else weights[train]
    w_val = None if weights is None else weights[val]
    for part, w in (("training", w_train), ("validation", w_val)):
        if w is not None and not float(w.sum()) > 0:
            raise UsageError(f"log_weights: every {part} frame's weight underflows next to the largest "
                             "(log-weights that differ by more than ~700): give log-weights on a common scale")
    opt = torch.optim.Adam(model.parameters(), lr=lr)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, epochs)
    best = {part: (math.inf, -1, None) for part in ("soft", "stiff")}  # the flows overfit small data sets
    history = []
    with torch.no_grad():  # epoch 0: the linear-Gaussian stiff model alone may generalize best
        lp_soft, lp_stiff = model.log_prob_parts(s_all[val], z_all[val])
    best["stiff"] = (float(-_weighted_mean(lp_stiff, w_val)), -1,
                     {k: v.detach().clone() for k, v in model.stiff.state_dict().items()})
    for epoch in range(epochs):
        perm = torch.as_tensor(rng.permutation(n_train))
        for start in range(0, n_train, batch_size):
            idx = perm[start:start + batch_size]
            lp_soft, lp_stiff = model.log_prob_parts(s_all[train][idx], z_all[train][idx])
            loss = -_weighted_mean(lp_soft + lp_stiff, None if w_train is None else w_train[idx])
            opt.zero_grad()
            loss.backward()
            opt.step()
        sched.step()
        with torch.no_grad():
            lp_soft, lp_stiff = model.log_prob_parts(s_all[val], z_all[val])
        nll = {"soft": float(-_weighted_mean(lp_soft, w_val)), "stiff": float(-_weighted_mean(lp_stiff, w_val))}
        history.append(nll)
        for part, value in nll.items():
            if value < best[part][0]:
                module = getattr(model, part)
                best[part] = (value, epoch, {k: v.detach().clone() for k, v in module.state_dict().items()})
    for part in ("soft", "stiff"):
        getattr(model, part).load_state_dict(best[part][2])
    with torch.no_grad():
        lp_soft, lp_stiff = model.log_prob_parts(s_all[train], z_all[train])
        val_full = float(-_weighted_mean(model.log_prob_features(s_all[val], z_all[val]), w_val))
    report = {} if weights is None else {"weights": {"kish_fraction": {"train": _kish_fraction(w_train),
                                                                       "val": _kish_fraction(w_val)}}}
    return model, {**report, "train_nll": float(-_weighted_mean(lp_soft + lp_stiff, w_train)),
                   "val_nll": best["soft"][0] + best["stiff"][0], "val_nll_mixture": val_full,
                   "best_epoch": {part: best[part][1] + 1 for part in best},
                   "last_val_nll": history[-1]["soft"] + history[-1]["stiff"], "epochs": epochs, "seed": seed,
                   "soft_dihedrals": list(model.config["soft"]), "n_train": n_train, "n_val": n_val,
                   "mixture": {"uniform": model.config["uniform"], "mirror": model.config["mirror"]},
                   # frames with each soft dihedral > 0 on either side of the time split: a rare
                   # basin (phi > 0) the training part never saw is only the uniform floor's
                   "soft_positive_frames": {part: [int(v) for v in (d[sl][:, soft] > 0).sum(0)]
                                            for part, sl in (("train", train), ("val", val))},
                   "n_parameters": sum(p.numel() for p in model.parameters())}
