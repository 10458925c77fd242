"""Generic force matching: fit U_eta so that -grad U_eta matches mapped forces.

Loss: mean over frames of ||F_i - (-grad_R U(R_i))||^2 (squared norm over all
coordinates of a frame). The train/validation split is by contiguous blocks of
frames (time-correlated MD frames must not leak between the two); early
stopping watches the validation force MSE and restores the best weights.
"""

from __future__ import annotations

import copy
import dataclasses
import math

import numpy as np
import torch
from torch import nn

from cgbg_bench.errors import DataError

__all__ = ["FMReport", "block_split", "force_mse", "train_force_matching"]


@dataclasses.dataclass(frozen=True)
class FMReport:
    """Outcome of :func:`train_force_matching`.

    RMSEs are root mean squared force errors per component (for 1-D data: per
    frame), in the force unit of the data, with the best (restored) weights.
    ``epochs`` is the number of epochs run, ``best_epoch`` the one restored
    (1-based). ``val_blocks`` are the block ids held out. ``val_mse_history`` is the
    validation force MSE after every epoch; ``final_lr`` the learning rate the optimizer
    had at the end (``lr`` halved by ``lr_halve_after``, if set).
    """

    train_force_rmse: float
    val_force_rmse: float
    epochs: int
    best_epoch: int
    n_parameters: int
    seed: int
    n_train: int
    n_val: int
    val_blocks: tuple[int, ...]
    lr: float
    batch_size: int
    stopped_early: bool
    val_mse_history: tuple[float, ...] = ()
    final_lr: float = float("nan")


def block_split(
    n: int,
    *,
    block_ids: np.ndarray | None = None,
    n_blocks: int | None = None,
    val_fraction: float = 0.2,
    seed: int = 0,
) -> tuple[np.ndarray, np.ndarray, tuple[int, ...]]:
    """Split frame indices 0..n-1 into (train_idx, val_idx, val_blocks) by blocks.

    Give ``block_ids`` (one integer label per frame, e.g. chain x time window)
    or ``n_blocks`` (frames cut, in their given order, into that many contiguous
    blocks of near-equal size); with neither, ``n_blocks = 10``. A seeded random
    choice of round(val_fraction * #blocks) blocks (at least 1, at most all but
    one) is the validation set.
    """
    if block_ids is not None and n_blocks is not None:
        raise DataError("give block_ids or n_blocks, not both")
    if not 0.0 < val_fraction < 1.0:
        raise DataError(f"val_fraction must be in (0, 1), got {val_fraction}")
    if block_ids is None:
        n_blocks = 10 if n_blocks is None else int(n_blocks)
        if not 2 <= n_blocks <= n:
            raise DataError(f"n_blocks must be in [2, n_frames={n}], got {n_blocks}")
        block_ids = (np.arange(n) * n_blocks) // n
    else:
        block_ids = np.asarray(block_ids)
        if block_ids.shape != (n,):
            raise DataError(f"block_ids must have shape ({n},), got {block_ids.shape}")
    blocks = np.unique(block_ids)
    if blocks.size < 2:
        raise DataError("need at least 2 distinct blocks for a train/validation split")
    n_val = min(max(1, int(round(val_fraction * blocks.size))), blocks.size - 1)
    rng = np.random.default_rng(seed)
    val_blocks = np.sort(rng.choice(blocks, size=n_val, replace=False))
    is_val = np.isin(block_ids, val_blocks)
    return np.flatnonzero(~is_val), np.flatnonzero(is_val), tuple(int(v) for v in val_blocks)


def _as_tensor(a, name: str) -> torch.Tensor:
    t = torch.as_tensor(np.asarray(a) if not isinstance(a, torch.Tensor) else a).to(torch.float32)
    if not torch.isfinite(t).all():
        raise DataError(f"{name} has non-finite values")
    return t


def _predicted_forces(model: nn.Module, r: torch.Tensor, create_graph: bool) -> torch.Tensor:
    r = r.detach().requires_grad_(True)
    u = model(r)
    if u.shape != r.shape[:1]:
        raise DataError(f"model must map (B, ...) -> (B,), got output shape {tuple(u.shape)} for input {tuple(r.shape)}")
    (g,) = torch.autograd.grad(u.sum(), r, create_graph=create_graph)
    return -g


def force_mse(model: nn.Module, positions, forces, *, batch_size: int = 8192) -> float:
    """Mean squared force error per component, -grad U vs ``forces`` (no training)."""
    r = _as_tensor(positions, "positions")
    f = _as_tensor(forces, "forces")
    total = 0.0
    for s in range(0, r.shape[0], batch_size):
        pred = _predicted_forces(model, r[s : s + batch_size], create_graph=False)
        total += float(((pred - f[s : s + batch_size]) ** 2).sum())
    return total / f.numel()


def train_force_matching(
    model: nn.Module,
    positions,
    forces,
    *,
    block_ids: np.ndarray | None = None,
    n_blocks: int | None = None,
    val_fraction: float = 0.2,
    seed: int = 0,
    lr: float = 3e-3,
    max_epochs: int = 200,
    patience: int = 20,
    batch_size: int = 512,
    weight_decay: float = 0.0,
    lr_halve_after: int | None = None,
    split_seed: int | None = None,
    on_epoch=None,
) -> tuple[nn.Module, FMReport]:
    """Train ``model`` by force matching; returns (model with best weights, report).

    Args:
        model: maps (B, *input_shape) float32 -> (B,) energies; trained in place.
            Seed its initialization yourself (e.g. ``RBFMLP(seed=...)``).
        positions, forces: arrays or tensors of shape (N, *input_shape); forces
            are -dU/dR of the target (the mapped, unbiased forces).
        block_ids / n_blocks: how frames are grouped for the train/validation
            split (see :func:`block_split`); keep time-correlated frames in one
            block, e.g. ``LangevinTrajectory.training_data()`` block ids.
        val_fraction: share of blocks held out for validation.
        seed: seeds the split and the minibatch order (private generators; the
            global RNGs are not touched). On CPU the run is deterministic.
        lr, weight_decay: Adam settings. max_epochs: upper bound on epochs.
        patience: stop after this many epochs without a lower validation MSE.
        batch_size: frames per minibatch.
        lr_halve_after: halve the learning rate after this many epochs without a lower
            validation MSE (and again after as many more); None keeps it constant.
        split_seed: seeds the split alone (default: ``seed``), so that models with
            different ``seed`` can share one validation set.
        on_epoch: called after every epoch as ``on_epoch(epoch, val_mse, best_epoch,
            since_best)`` (progress display; not called for the final evaluation).

    The loss is the mean over frames of the squared force-error norm; early
    stopping compares validation force MSE after every epoch and the best
    weights are loaded back before returning.
    """
    r = _as_tensor(positions, "positions")
    f = _as_tensor(forces, "forces")
    if r.shape != f.shape or r.ndim < 2:
        raise DataError(f"positions and forces must both have shape (N, ...), got {tuple(r.shape)} and {tuple(f.shape)}")
    if max_epochs < 1 or patience < 1 or batch_size < 1:
        raise DataError(f"max_epochs, patience, batch_size must be >= 1, got {max_epochs}, {patience}, {batch_size}")
    if lr_halve_after is not None and (isinstance(lr_halve_after, bool) or int(lr_halve_after) != lr_halve_after
                                       or lr_halve_after < 1):
        raise DataError(f"lr_halve_after must be a whole number of epochs >= 1 or None, got {lr_halve_after!r}")
    n = r.shape[0]
    split_seed = seed if split_seed is None else split_seed
    train_idx, val_idx, val_blocks = block_split(
        n, block_ids=block_ids, n_blocks=n_blocks, val_fraction=val_fraction, seed=split_seed
    )
    r_tr, f_tr = r[train_idx], f[train_idx]
    r_va, f_va = r[val_idx], f[val_idx]
    per_frame = int(np.prod(r.shape[1:]))

    gen = torch.Generator().manual_seed(int(seed))
    opt = torch.optim.Adam(model.parameters(), lr=lr, weight_decay=weight_decay)
    best_val = math.inf
    best_state = copy.deepcopy(model.state_dict())
    best_epoch = 0
    since_best = 0
    epoch = 0
    history: list[float] = []
    model.train()
    for epoch in range(1, max_epochs + 1):
        perm = torch.randperm(r_tr.shape[0], generator=gen)
        for s in range(0, perm.numel(), batch_size):
            idx = perm[s : s + batch_size]
            pred = _predicted_forces(model, r_tr[idx], create_graph=True)
            loss = ((pred - f_tr[idx]) ** 2).sum() / idx.numel()
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
        val = force_mse(model, r_va, f_va)
        history.append(val)
        if not math.isfinite(val):
            raise DataError(f"validation force MSE became {val} at epoch {epoch}; lower lr")
        if val < best_val:
            best_val, best_epoch, since_best = val, epoch, 0
            best_state = copy.deepcopy(model.state_dict())
        else:
            since_best += 1
        if on_epoch is not None:
            on_epoch(epoch, val, best_epoch, since_best)
        if since_best:
            if since_best >= patience:
                break
            if lr_halve_after is not None and since_best % lr_halve_after == 0:
                for group in opt.param_groups:
                    group["lr"] *= 0.5
    model.load_state_dict(best_state)
    model.eval()
    report = FMReport(
        train_force_rmse=math.sqrt(force_mse(model, r_tr, f_tr)),
        val_force_rmse=math.sqrt(best_val),
        epochs=epoch,
        best_epoch=best_epoch,
        n_parameters=sum(p.numel() for p in model.parameters()),
        seed=int(seed),
        n_train=int(train_idx.size),
        n_val=int(val_idx.size),
        val_blocks=val_blocks,
        lr=float(lr),
        batch_size=int(batch_size),
        stopped_early=epoch < max_epochs,
        val_mse_history=tuple(history),
        final_lr=float(opt.param_groups[0]["lr"]),
    )
    return model, report
