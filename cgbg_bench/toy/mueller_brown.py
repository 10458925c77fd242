"""The Mueller-Brown toy task: potential, Langevin sampler, exact PMF.

Everything here is dimensionless with kT = 1 (docs/spec.md section 2). The
potential is the scaled Mueller-Brown surface of docs/spec.md section 3,

    V(x, y) = sum_i A_i exp(a_i (x-x0_i)^2 + b_i (x-x0_i)(y-y0_i) + c_i (y-y0_i)^2),

on the domain [0, 50]^2. The coarse-grained coordinate is x; its exact PMF is

    F(x) = -ln  integral_0^50 exp(-V(x, y)) dy,

computed by trapezoid quadrature on a fine y grid (in log space).

Public API
----------
- constants ``A, a, b, c, X0, Y0`` (the parameter table), ``DOMAIN``, and the
  protocol defaults ``DT, FRICTION, MASS, STRIDE, N_CHAINS, N_FRAMES``;
- numpy: :func:`potential`, :func:`gradient`, :func:`gaussian_bias`,
  :func:`gaussian_bias_derivative`, :func:`langevin`, :func:`exact_free_energy`,
  :func:`exact_histogram`;
- torch: :func:`potential_torch`, :func:`gradient_torch`, and the exportable PMF
  modules :class:`ExactPMF` and :class:`PotentialMinimumPMF` ((B, 1) -> (B,)).
"""

from __future__ import annotations

import dataclasses
import math
from typing import Callable, Union

import numpy as np
import torch
from torch import nn

from cgbg_bench.errors import DataError

__all__ = [
    "A",
    "a",
    "b",
    "c",
    "X0",
    "Y0",
    "DOMAIN",
    "DT",
    "FRICTION",
    "MASS",
    "STRIDE",
    "N_CHAINS",
    "N_FRAMES",
    "HIST_BINS",
    "HIST_RANGE",
    "BIAS_HEIGHT",
    "BIAS_CENTER",
    "BIAS_WIDTH",
    "potential",
    "gradient",
    "potential_torch",
    "gradient_torch",
    "gaussian_bias",
    "gaussian_bias_derivative",
    "Bias",
    "GAUSSIAN_BIAS",
    "LangevinTrajectory",
    "langevin",
    "exact_free_energy",
    "exact_histogram",
    "ExactPMF",
    "PotentialMinimumPMF",
]

# --- parameter table (docs/spec.md section 3) ---------------------------------
A = (-17.3, -8.7, -14.7, 1.3)
a = (-0.0039, -0.0039, -0.0254, 0.00273)
b = (0.0, 0.0, 0.043, 0.0023)
c = (-0.0391, -0.0391, -0.0254, 0.00273)
X0 = (48.0, 32.0, 24.0, 16.0)
Y0 = (8.0, 16.0, 32.0, 24.0)

DOMAIN = (0.0, 50.0)  # both x and y

# --- Langevin protocol (docs/spec.md section 3) --------------------------------
DT = 0.1
FRICTION = 0.1
MASS = 1.0
STRIDE = 100
N_CHAINS = 10
#: frames per chain of the training data (5000 frames x 100 steps = 5e5 steps
#: per chain, 10 chains); the task builder uses this number.
N_FRAMES = 5000

# --- reference histogram (docs/spec.md section 4) -----------------------------
HIST_BINS = 100
HIST_RANGE = (10.0, 50.0)

# --- the biased variant: B(x) = -4 exp(-(x-32)^2 / (2 * 5^2)) -----------------
BIAS_HEIGHT = -4.0
BIAS_CENTER = 32.0
BIAS_WIDTH = 5.0

_A = np.asarray(A)
_a = np.asarray(a)
_b = np.asarray(b)
_c = np.asarray(c)
_X0 = np.asarray(X0)
_Y0 = np.asarray(Y0)


# ------------------------------------------------------------------ numpy ---
def potential(x, y) -> np.ndarray:
    """V(x, y) in kT; ``x`` and ``y`` broadcast against each other (float64)."""
    x = np.asarray(x, dtype=np.float64)
    y = np.asarray(y, dtype=np.float64)
    out = np.zeros(np.broadcast_shapes(x.shape, y.shape))
    for i in range(4):
        dx = x - X0[i]
        dy = y - Y0[i]
        out = out + A[i] * np.exp(a[i] * dx * dx + b[i] * dx * dy + c[i] * dy * dy)
    return out


def gradient(x, y) -> tuple[np.ndarray, np.ndarray]:
    """(dV/dx, dV/dy) in kT per length unit; broadcasts like :func:`potential`."""
    x = np.asarray(x, dtype=np.float64)
    y = np.asarray(y, dtype=np.float64)
    shape = np.broadcast_shapes(x.shape, y.shape)
    gx = np.zeros(shape)
    gy = np.zeros(shape)
    for i in range(4):
        dx = x - X0[i]
        dy = y - Y0[i]
        e = A[i] * np.exp(a[i] * dx * dx + b[i] * dx * dy + c[i] * dy * dy)
        gx = gx + e * (2.0 * a[i] * dx + b[i] * dy)
        gy = gy + e * (b[i] * dx + 2.0 * c[i] * dy)
    return gx, gy


def gaussian_bias(x) -> np.ndarray:
    """The biased variant's bias on x: B(x) = -4 exp(-(x-32)^2 / (2 * 5^2)), in kT."""
    x = np.asarray(x, dtype=np.float64)
    return BIAS_HEIGHT * np.exp(-((x - BIAS_CENTER) ** 2) / (2.0 * BIAS_WIDTH**2))


def gaussian_bias_derivative(x) -> np.ndarray:
    """dB/dx of :func:`gaussian_bias`."""
    x = np.asarray(x, dtype=np.float64)
    return gaussian_bias(x) * (-(x - BIAS_CENTER) / BIAS_WIDTH**2)


# ------------------------------------------------------------------ torch ---
def potential_torch(x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """V(x, y) for tensors (broadcasting, differentiable, dtype of the inputs)."""
    out = torch.zeros((), dtype=x.dtype, device=x.device)
    for i in range(4):
        dx = x - X0[i]
        dy = y - Y0[i]
        out = out + A[i] * torch.exp(a[i] * dx * dx + b[i] * dx * dy + c[i] * dy * dy)
    return out


def gradient_torch(x: torch.Tensor, y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Analytic (dV/dx, dV/dy) for tensors."""
    gx = torch.zeros((), dtype=x.dtype, device=x.device)
    gy = torch.zeros((), dtype=x.dtype, device=x.device)
    for i in range(4):
        dx = x - X0[i]
        dy = y - Y0[i]
        e = A[i] * torch.exp(a[i] * dx * dx + b[i] * dx * dy + c[i] * dy * dy)
        gx = gx + e * (2.0 * a[i] * dx + b[i] * dy)
        gy = gy + e * (b[i] * dx + 2.0 * c[i] * dy)
    return gx, gy


# --------------------------------------------------------------- Langevin ---
@dataclasses.dataclass(frozen=True)
class Bias:
    """A bias potential on x: ``energy(x)`` and its ``derivative(x)`` (numpy, kT)."""

    name: str
    energy: Callable[[np.ndarray], np.ndarray]
    derivative: Callable[[np.ndarray], np.ndarray]


GAUSSIAN_BIAS = Bias("gaussian", gaussian_bias, gaussian_bias_derivative)

BiasLike = Union[None, str, Bias]
GradientFn = Callable[[np.ndarray, np.ndarray], "tuple[np.ndarray, np.ndarray]"]


@dataclasses.dataclass(frozen=True)
class LangevinTrajectory:
    """Frames of a :func:`langevin` run; arrays are read-only, shape (n_chains, n_frames).

    ``force_x``/``force_y`` are the forces of the UNBIASED potential
    (-dV/dx, -dV/dy) at the stored positions, also in a biased run;
    ``bias_energy`` is B(x) at each frame (zeros without a bias), for
    reweighting with exp(+B). ``time`` has shape (n_frames,).
    """

    x: np.ndarray
    y: np.ndarray
    force_x: np.ndarray
    force_y: np.ndarray
    bias_energy: np.ndarray
    time: np.ndarray
    seed: int
    bias: str  # "none" or the Bias name
    dt: float
    friction: float
    mass: float
    stride: int

    @property
    def n_chains(self) -> int:
        return self.x.shape[0]

    @property
    def n_frames(self) -> int:
        """Frames per chain."""
        return self.x.shape[1]

    @property
    def n_frames_total(self) -> int:
        """All frames of all chains: the number of force-matching samples."""
        return self.x.size

    def training_data(self, block_frames: int = 500) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Flatten to force-matching input: positions (N, 1), forces (N, 1), block_ids (N,).

        Frames are ordered chain by chain, in time. Each block is ``block_frames``
        consecutive frames of one chain (the last block of a chain may be
        shorter), so a split by block never separates correlated neighbours
        except at block edges. N = n_chains * n_frames.
        """
        if block_frames < 1:
            raise DataError(f"block_frames must be >= 1, got {block_frames}")
        positions = self.x.reshape(-1, 1).astype(np.float32)
        forces = self.force_x.reshape(-1, 1).astype(np.float32)
        n_per_chain = -(-self.n_frames // block_frames)
        frame_block = np.arange(self.n_frames) // block_frames
        block_ids = (np.arange(self.n_chains)[:, None] * n_per_chain + frame_block[None, :]).reshape(-1)
        return positions, forces, block_ids


def _resolve_bias(bias: BiasLike) -> Bias | None:
    if bias is None:
        return None
    if isinstance(bias, Bias):
        return bias
    if isinstance(bias, str):
        if bias == "gaussian":
            return GAUSSIAN_BIAS
        if bias == "none":
            return None
        raise DataError(f"unknown bias {bias!r}; use None, 'gaussian', or a Bias(name, energy, derivative)")
    raise DataError(f"bias must be None, 'gaussian' or a Bias, got {type(bias).__name__}")


def _mb_gradient_2xn(pos: np.ndarray) -> np.ndarray:
    """Fast MB gradient for the integrator: pos (2, n) -> grad (2, n)."""
    dx = pos[0] - _X0[:, None]  # (4, n)
    dy = pos[1] - _Y0[:, None]
    e = _A[:, None] * np.exp(_a[:, None] * dx * dx + _b[:, None] * dx * dy + _c[:, None] * dy * dy)
    g = np.empty_like(pos)
    g[0] = (e * (2.0 * _a[:, None] * dx + _b[:, None] * dy)).sum(0)
    g[1] = (e * (_b[:, None] * dx + 2.0 * _c[:, None] * dy)).sum(0)
    return g


def langevin(
    n_frames: int,
    *,
    seed: int,
    n_chains: int = N_CHAINS,
    dt: float = DT,
    friction: float = FRICTION,
    mass: float = MASS,
    stride: int = STRIDE,
    bias: BiasLike = None,
    domain: tuple[float, float] = DOMAIN,
    gradient_fn: GradientFn | None = None,
    init_range: tuple[float, float] = (10.0, 50.0),
) -> LangevinTrajectory:
    """Underdamped Langevin dynamics on Mueller-Brown at kT = 1 (BAOAB splitting).

    All ``n_chains`` chains are integrated together (numpy arrays of shape
    (2, n_chains)); one Python loop runs over steps. Chains start at positions
    drawn uniformly in ``init_range``^2 and velocities drawn from the Maxwell
    distribution, both from ``np.random.default_rng(seed)``. One frame is stored
    every ``stride`` steps, the first after ``stride`` steps (no frame at t = 0);
    there is no burn-in removal: discard early frames yourself if needed.

    Integrator, per step (BAOAB, Leimkuhler & Matthews 2013):
    v += dt/2 F/m; q += dt/2 v; v = e^{-gamma dt} v + sqrt((1-e^{-2 gamma dt}) kT/m) xi;
    q += dt/2 v; [walls]; F = F(q); v += dt/2 F/m, with F = -grad(V + B).

    Walls: the square ``domain``^2 has reflecting walls. After the position
    update, a coordinate that left [lo, hi] is mirrored back (q -> 2 lo - q or
    2 hi - q) and its velocity is negated. Specular reflection keeps the
    Boltzmann distribution restricted to the square stationary, which is what
    :func:`exact_free_energy` integrates over (y in [0, 50]).

    Args:
        n_frames: frames stored per chain.
        seed: RNG seed; the same seed gives bitwise identical output.
        bias: None, ``"gaussian"`` (:data:`GAUSSIAN_BIAS`, the biased variant of
            docs/spec.md section 3) or a :class:`Bias` acting on x. The bias drives the
            dynamics only: stored forces are those of V alone.
        init_range: starting positions are uniform in init_range^2 (inside domain).
        gradient_fn: replaces the Mueller-Brown gradient, ``(x, y) ->
            (dV/dx, dV/dy)`` on arrays of shape (n_chains,); for testing the
            integrator on potentials with a known answer.

    Returns:
        :class:`LangevinTrajectory` with x, y, force_x, force_y, bias_energy of
        shape (n_chains, n_frames) and time of shape (n_frames,).
    """
    if n_frames < 1 or n_chains < 1 or stride < 1:
        raise DataError(f"n_frames, n_chains, stride must be >= 1, got {n_frames}, {n_chains}, {stride}")
    if not (dt > 0 and friction >= 0 and mass > 0):
        raise DataError(f"need dt > 0, friction >= 0, mass > 0; got {dt}, {friction}, {mass}")
    lo, hi = float(domain[0]), float(domain[1])
    if not hi > lo:
        raise DataError(f"domain must be (lo, hi) with hi > lo, got {domain}")
    if not lo <= init_range[0] < init_range[1] <= hi:
        raise DataError(f"init_range {init_range} must lie inside domain {domain}")
    bias_obj = _resolve_bias(bias)

    if gradient_fn is None:
        grad_v = _mb_gradient_2xn
    else:

        def grad_v(pos: np.ndarray) -> np.ndarray:
            gx, gy = gradient_fn(pos[0], pos[1])
            return np.stack([np.broadcast_to(gx, pos[0].shape), np.broadcast_to(gy, pos[1].shape)])

    if bias_obj is None:
        grad_total = grad_v
    else:
        bias_deriv = bias_obj.derivative

        def grad_total(pos: np.ndarray) -> np.ndarray:
            g = grad_v(pos)
            g[0] += bias_deriv(pos[0])
            return g

    rng = np.random.default_rng(seed)
    pos = rng.uniform(init_range[0], init_range[1], size=(2, n_chains))
    vel = rng.standard_normal((2, n_chains)) * math.sqrt(1.0 / mass)

    half_dt_over_m = 0.5 * dt / mass
    half_dt = 0.5 * dt
    c1 = math.exp(-friction * dt)
    c2 = math.sqrt((1.0 - c1 * c1) / mass)

    xs = np.empty((n_frames, n_chains))
    ys = np.empty((n_frames, n_chains))
    fx = np.empty((n_frames, n_chains))
    fy = np.empty((n_frames, n_chains))

    g = grad_total(pos)
    for frame in range(n_frames):
        noise = rng.standard_normal((stride, 2, n_chains))
        noise *= c2
        for step in range(stride):
            vel -= half_dt_over_m * g  # B
            pos += half_dt * vel  # A
            vel *= c1  # O
            vel += noise[step]
            pos += half_dt * vel  # A
            if pos.min() < lo or pos.max() > hi:  # walls (rare)
                below = pos < lo
                above = pos > hi
                pos[below] = 2.0 * lo - pos[below]
                pos[above] = 2.0 * hi - pos[above]
                vel[below | above] *= -1.0
            g = grad_total(pos)
            vel -= half_dt_over_m * g  # B
        xs[frame] = pos[0]
        ys[frame] = pos[1]
        gv = g if bias_obj is None else grad_v(pos)
        fx[frame] = -gv[0]
        fy[frame] = -gv[1]

    x = np.ascontiguousarray(xs.T)
    y = np.ascontiguousarray(ys.T)
    bias_energy = bias_obj.energy(x) if bias_obj is not None else np.zeros_like(x)
    arrays = dict(
        x=x,
        y=y,
        force_x=np.ascontiguousarray(fx.T),
        force_y=np.ascontiguousarray(fy.T),
        bias_energy=np.asarray(bias_energy, dtype=np.float64),
        time=(np.arange(1, n_frames + 1) * stride * dt).astype(np.float64),
    )
    for arr in arrays.values():
        arr.setflags(write=False)
    return LangevinTrajectory(
        **arrays,
        seed=int(seed),
        bias="none" if bias_obj is None else bias_obj.name,
        dt=float(dt),
        friction=float(friction),
        mass=float(mass),
        stride=int(stride),
    )


# -------------------------------------------------------------- exact PMF ---
def _log_trapezoid_weights(n: int, lo: float, hi: float) -> np.ndarray:
    h = (hi - lo) / (n - 1)
    w = np.full(n, h)
    w[0] = w[-1] = 0.5 * h
    return np.log(w)


def _logsumexp(z: np.ndarray, axis: int) -> np.ndarray:
    m = np.max(z, axis=axis, keepdims=True)
    return np.squeeze(m, axis=axis) + np.log(np.sum(np.exp(z - m), axis=axis))


def exact_free_energy(x, *, n_y: int = 4001, y_range: tuple[float, float] = DOMAIN, chunk: int = 2048) -> np.ndarray:
    """Exact PMF F(x) = -ln integral exp(-V(x, y)) dy, in kT (absolute, not shifted).

    Trapezoid rule on ``n_y`` equally spaced y points over ``y_range``, evaluated
    as a log-sum-exp. The default grid (spacing 0.0125) converges F to ~1e-10 kT.
    Accepts any array shape of x; returns float64 of the same shape.
    """
    x = np.asarray(x, dtype=np.float64)
    if n_y < 2:
        raise DataError(f"n_y must be >= 2, got {n_y}")
    yg = np.linspace(y_range[0], y_range[1], n_y)
    logw = _log_trapezoid_weights(n_y, y_range[0], y_range[1])
    flat = x.reshape(-1)
    out = np.empty(flat.shape)
    for s in range(0, flat.size, chunk):
        xs = flat[s : s + chunk, None]
        out[s : s + chunk] = -_logsumexp(-potential(xs, yg[None, :]) + logw[None, :], axis=1)
    return out.reshape(x.shape)


def exact_histogram(
    bins: int = HIST_BINS,
    range: tuple[float, float] = HIST_RANGE,  # noqa: A002 (numpy's name)
    *,
    n_sub: int = 20,
    n_y: int = 4001,
) -> np.ndarray:
    """Exact bin probabilities of the marginal p(x) ∝ exp(-F(x)) on ``bins`` equal bins.

    Each bin's mass is the composite Simpson integral of exp(-F) over ``n_sub``
    (even) sub-intervals of the bin, F from :func:`exact_free_energy`; the
    result is normalized to sum to 1 over ``range`` (the marginal conditioned
    on x in ``range``). The defaults are converged to a relative 1e-8.
    Returns float64 of shape (bins,).
    """
    if bins < 1 or n_sub < 2 or n_sub % 2:
        raise DataError(f"need bins >= 1 and an even n_sub >= 2, got {bins}, {n_sub}")
    lo, hi = float(range[0]), float(range[1])
    if not hi > lo:
        raise DataError(f"range must be (lo, hi) with hi > lo, got {range}")
    xg = np.linspace(lo, hi, bins * n_sub + 1)
    f = exact_free_energy(xg, n_y=n_y)
    p = np.exp(-(f - f.min()))
    h = xg[1] - xg[0]
    # Simpson on each pair of sub-intervals: h/3 (p0 + 4 p1 + p2)
    pairs = h / 3.0 * (p[:-2:2] + 4.0 * p[1:-1:2] + p[2::2])
    mass = pairs.reshape(bins, n_sub // 2).sum(1)
    return mass / mass.sum()


# ------------------------------------------------------- exportable PMFs ---
class _GridPMF(nn.Module):
    """Shared part: V(x, y_j) on a fixed y grid (buffer) for x of shape (B, 1)."""

    def __init__(self, n_y: int, y_range: tuple[float, float]):
        super().__init__()
        if n_y < 2:
            raise DataError(f"n_y must be >= 2, got {n_y}")
        yg = np.linspace(y_range[0], y_range[1], n_y)
        self.register_buffer("y_grid", torch.tensor(yg, dtype=torch.float32))
        logw = _log_trapezoid_weights(n_y, y_range[0], y_range[1])
        self.register_buffer("log_weights", torch.tensor(logw, dtype=torch.float32))

    def _v_grid(self, x: torch.Tensor) -> torch.Tensor:
        return potential_torch(x[:, 0:1], self.y_grid[None, :])  # (B, n_y)


class ExactPMF(_GridPMF):
    """Exact Mueller-Brown PMF F(x) = -logsumexp_j(-V(x, y_j) + ln w_j), kT.

    forward: x (B, 1) float32 -> (B,) float32. Trapezoid quadrature on ``n_y``
    y points (a buffer); matches :func:`exact_free_energy` to float32 precision.
    Memory: a few B x n_y float32 temporaries, so call it in batches of
    ~1e4-1e5 rows. Exportable with torch.export (dynamic batch).
    """

    def __init__(self, n_y: int = 1001, y_range: tuple[float, float] = DOMAIN):
        super().__init__(n_y, y_range)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return -torch.logsumexp(-self._v_grid(x) + self.log_weights, dim=1)


class PotentialMinimumPMF(_GridPMF):
    """A deliberately wrong PMF: min_y V(x, y) on the y grid (energy, not free energy).

    forward: x (B, 1) float32 -> (B,) float32; a sanity row that ignores the
    entropy of y. Exportable with torch.export (dynamic batch).
    """

    def __init__(self, n_y: int = 1001, y_range: tuple[float, float] = DOMAIN):
        super().__init__(n_y, y_range)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self._v_grid(x).amin(dim=1)
