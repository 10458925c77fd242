"""A backbone (phi, psi) correction fitted by linear force matching after the networks.

E_c(R) = sum_r sum_m [a_rm cos(k_m phi_r + l_m psi_r) + b_rm sin(k_m phi_r + l_m psi_r)]: a
two-dimensional Fourier series of order K (0 <= k <= K, -K <= l <= K, (k, l) > (0, 0)) in each
residue's backbone dihedrals (the mapping's phi/psi quadruples), added to a trained PMF. Its force
is linear in the coefficients, so minimizing the force-matching loss of PMF + E_c over them is a
linear least-squares problem on the PMF's force residuals, solved in closed form
(:func:`fit_dihedral_correction`).

Why: the networks are stopped early on a noisy validation force error, long before the small,
smooth part of the mean force along phi and psi (tenths of a kT between the C5 and PPII regions)
stops improving; and they never see the validation blocks. The closed-form fit removes what is
left of the force residual in the span of the series, on every frame (docs/force-matching.md has
the measurements). The series is periodic and bounded, but not small where the data are: with
(phi, psi) sampled over part of the torus only (an unbiased run that rarely crosses phi = 0), the
normal equations are ill-conditioned and the fitted series can take large values in the unsampled
part. The fit therefore reports the condition number and the series' range on a grid over the
whole torus (``condition_number``, ``max_abs_kj_per_mol``); check them before trusting a
correction fitted on such data.
"""

from __future__ import annotations

import numpy as np
import torch
from torch import nn

from cgbg_bench.cg.mappings import CGMapping
from cgbg_bench.cg.zmatrix import _dihedral
from cgbg_bench.errors import DataError

__all__ = ["DihedralCorrection", "CorrectedPMF", "fourier_modes", "fit_dihedral_correction"]


def fourier_modes(order: int) -> np.ndarray:
    """(M, 2) int wave vectors (k, l) of the order-``order`` series: k in 0..K, l in -K..K, (k, l) > (0, 0)."""
    if isinstance(order, bool) or int(order) != order or order < 1:
        raise DataError(f"the dihedral correction's order must be a whole number >= 1, got {order!r}")
    K = int(order)
    return np.array([(k, l) for k in range(K + 1) for l in range(-K, K + 1) if k > 0 or l > 0], dtype=np.int64)


def _cos_sin(phi: np.ndarray, psi: np.ndarray, modes: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """cos and sin of k phi + l psi for every wave vector (k, l) of ``modes``: (..., M) each."""
    arg = phi[..., None] * modes[:, 0] + psi[..., None] * modes[:, 1]
    return np.cos(arg), np.sin(arg)


def _dihedrals(x: torch.Tensor, quads: torch.Tensor) -> torch.Tensor:
    """(B, n, 3), (R, 4) -> (B, R) radians in (-pi, pi], mdtraj's sign convention (the Z-matrix's)."""
    a, b, c, d = (x[:, quads[:, i]].reshape(-1, 3) for i in range(4))
    return _dihedral(a, b, c, d).reshape(x.shape[0], quads.shape[0])


class DihedralCorrection(nn.Module):
    """(B, n_beads, 3) nm -> (B,) kJ/mol: the Fourier series in each residue's (phi, psi).

    ``coefficients`` (R, 2M) kJ/mol: cosine terms first, then sine terms, in the order of
    :func:`fourier_modes`; zeros if None.
    """

    def __init__(self, mapping: CGMapping, order: int, coefficients=None):
        super().__init__()
        modes = fourier_modes(order)
        n_res = len(mapping.phi)
        if n_res == 0 or len(mapping.psi) != n_res:
            raise DataError(f"{mapping.name}: no residue with both phi and psi to correct")
        shape = (n_res, 2 * len(modes))
        c = np.zeros(shape) if coefficients is None else np.asarray(coefficients, dtype=np.float64)
        if c.shape != shape or not np.all(np.isfinite(c)):
            raise DataError(f"coefficients must be finite with shape {shape}, got {c.shape}")
        self.order = int(order)
        self.register_buffer("phi_quads", torch.as_tensor(np.asarray(mapping.phi, dtype=np.int64)))
        self.register_buffer("psi_quads", torch.as_tensor(np.asarray(mapping.psi, dtype=np.int64)))
        self.register_buffer("mode_k", torch.as_tensor(modes[:, 0], dtype=torch.float32))
        self.register_buffer("mode_l", torch.as_tensor(modes[:, 1], dtype=torch.float32))
        self.register_buffer("coefficients", torch.as_tensor(c, dtype=torch.float32))

    def basis(self, x: torch.Tensor) -> torch.Tensor:
        """(B, R, 2M): cos then sin of k phi_r + l psi_r."""
        phi, psi = _dihedrals(x, self.phi_quads), _dihedrals(x, self.psi_quads)
        k, l = self.mode_k.to(x.dtype), self.mode_l.to(x.dtype)
        arg = phi[:, :, None] * k + psi[:, :, None] * l
        return torch.cat([torch.cos(arg), torch.sin(arg)], dim=-1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return (self.basis(x) * self.coefficients.to(x.dtype)).sum((1, 2))


class CorrectedPMF(nn.Module):
    """A PMF plus a :class:`DihedralCorrection`: U(R) = U_base(R) + E_c(R)."""

    def __init__(self, base: nn.Module, correction: DihedralCorrection):
        super().__init__()
        self.base = base
        self.dihedral_correction = correction

    @property
    def prior(self):
        """The base PMF's fitted prior (None if it has none)."""
        return getattr(self.base, "prior", None)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.base(x) + self.dihedral_correction(x)


def fit_dihedral_correction(base: nn.Module, positions, forces, mapping: CGMapping, order: int, *,
                            fit_idx=None, eval_idx=None, batch_size: int = 2048,
                            ridge: float = 1e-8) -> tuple[DihedralCorrection, dict]:
    """Least-squares coefficients of the correction to ``base`` on the frames ``fit_idx`` (default all).

    Minimizes sum over those frames of ||F - (F_base + F_c)||^2, F the mapped forces (N, n, 3)
    kJ/mol/nm and F_c = -grad E_c, which is linear in the coefficients: the normal equations are
    accumulated in float64 over batches and solved with a ridge of ``ridge`` x the mean diagonal
    (only to keep the system regular; 1e-8 does not bias it measurably). Returns the correction and
    a dict: the mean squared force error per component of ``base`` and of ``base`` + correction on
    the frames ``eval_idx`` (default: the fitted frames), and the coefficients' standard errors
    (``coefficient_se``, the shape of the coefficients; ordinary least squares with one noise
    variance for all components and independent frames, so optimistic for time-correlated MD
    frames and only a guide where the beads' force noise differs); the normal equations'
    condition number and the largest |E_c| on a 72 x 72 (phi, psi) grid per residue
    (``condition_number``, ``max_abs_kj_per_mol``), large where the data cover (phi, psi) only in part.
    """
    x_all = np.asarray(positions, dtype=np.float32)
    f_all = np.asarray(forces, dtype=np.float64)
    if x_all.ndim != 3 or x_all.shape[1:] != (mapping.n_beads, 3) or f_all.shape != x_all.shape:
        raise DataError(f"positions and forces must both be (N, {mapping.n_beads}, 3), "
                        f"got {x_all.shape} and {f_all.shape}")
    fit_idx = np.arange(len(x_all)) if fit_idx is None else np.asarray(fit_idx)
    eval_idx = fit_idx if eval_idx is None else np.asarray(eval_idx)
    if len(fit_idx) == 0:
        raise DataError("no frames to fit the dihedral correction on")
    corr = DihedralCorrection(mapping, order)
    modes = fourier_modes(order).astype(np.float64)
    n_par = corr.coefficients.numel()
    device = next((b.device for b in base.buffers()), torch.device("cpu"))

    def design(idx):
        """Per batch: the correction's force basis J (B, 3n, P) and the base's residual (B, 3n)."""
        for s in range(0, len(idx), batch_size):
            sel = idx[s:s + batch_size]
            xb = torch.tensor(x_all[sel], device=device, requires_grad=True)
            g, = torch.autograd.grad(base(xb).sum(), xb)
            resid = f_all[sel] + g.detach().double().cpu().numpy()  # F - F_base, F_base = -grad U
            x64 = torch.tensor(x_all[sel], dtype=torch.float64, requires_grad=True)
            angles = torch.cat([_dihedrals(x64, corr.phi_quads), _dihedrals(x64, corr.psi_quads)], dim=1)
            n_res = angles.shape[1] // 2
            grads = np.stack([torch.autograd.grad(angles[:, j].sum(), x64, retain_graph=j < 2 * n_res - 1)[0].numpy()
                              for j in range(2 * n_res)], axis=1).reshape(len(sel), 2 * n_res, -1)  # (B, 2R, 3n)
            ang = angles.detach().numpy()
            c, s_ = _cos_sin(ang[:, :n_res], ang[:, n_res:], modes)  # (B, R, M)
            d_phi = np.concatenate([-s_ * modes[:, 0], c * modes[:, 0]], axis=-1)  # (B, R, 2M)
            d_psi = np.concatenate([-s_ * modes[:, 1], c * modes[:, 1]], axis=-1)
            # F_c = -sum_r (dE/dphi_r grad phi_r + dE/dpsi_r grad psi_r), linear in the coefficients
            jac = -(np.einsum("brp,bri->birp", d_phi, grads[:, :n_res])
                    + np.einsum("brp,bri->birp", d_psi, grads[:, n_res:]))
            yield jac.reshape(len(sel), -1, n_par), resid.reshape(len(sel), -1)

    a = np.zeros((n_par, n_par))
    b = np.zeros(n_par)
    rr, n_fit_comp = 0.0, 0
    for jac, resid in design(fit_idx):
        a += np.einsum("bip,biq->pq", jac, jac)
        b += np.einsum("bip,bi->p", jac, resid)
        rr += float((resid**2).sum())
        n_fit_comp += resid.size
    if not np.all(np.isfinite(a)) or not np.all(np.isfinite(b)):
        raise DataError("non-finite forces or positions in the dihedral-correction fit")
    a_reg = a + ridge * np.trace(a) / n_par * np.eye(n_par)
    coef = np.linalg.solve(a_reg, b)
    # standard errors, as for ordinary least squares with one noise variance for every component
    sigma2 = max(rr - 2.0 * coef @ b + coef @ a @ coef, 0.0) / max(n_fit_comp - n_par, 1)
    se = np.sqrt(sigma2 * np.clip(np.diag(np.linalg.inv(a_reg)), 0.0, None))
    with torch.no_grad():
        corr.coefficients.copy_(torch.as_tensor(coef.reshape(corr.coefficients.shape), dtype=torch.float32))
    if eval_idx is fit_idx:  # the fitted frames: their errors follow from the normal equations
        sse_base, sse_corr, n_comp = rr, rr - 2.0 * coef @ b + coef @ a @ coef, n_fit_comp
    else:
        sse_base = sse_corr = 0.0
        n_comp = 0
        for jac, resid in design(eval_idx):
            sse_base += float((resid**2).sum())
            sse_corr += float(((resid - jac @ coef) ** 2).sum())
            n_comp += resid.size
    grid = np.linspace(-np.pi, np.pi, 72, endpoint=False)
    g_phi, g_psi = np.meshgrid(grid, grid, indexing="ij")
    e_grid = np.concatenate(_cos_sin(g_phi.ravel(), g_psi.ravel(), modes), axis=1) @ coef.reshape(
        corr.coefficients.shape).T  # (G, R)
    stats = {"order": int(order), "condition_number": float(np.linalg.cond(a_reg)),
             "max_abs_kj_per_mol": float(np.abs(e_grid - e_grid.mean(0)).max()),
             "n_coefficients": int(n_par), "n_fit_frames": int(len(fit_idx)),
             "mse_base": sse_base / n_comp, "mse_corrected": sse_corr / n_comp,
             "coefficient_se": se.reshape(corr.coefficients.shape)}
    return corr, stats
