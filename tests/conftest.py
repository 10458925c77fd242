"""Shared fixtures: a small synthetic 1-D task with a known answer, built in a temp folder.

The toy: proposal q = N(0, SIGMA_Q^2) with exact log q; the "true" PMF is harmonic,
U = x^2 / 2 (kT = 1), so the target is N(0, 1) and the reference histogram is exact.
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml
from scipy.special import ndtr

from cgbg_bench._io import sha256_file
from cgbg_bench.pmf import export_program

SIGMA_Q = 2.0
BINS, LO, HI = 40, -4.0, 4.0


class Harmonic(torch.nn.Module):
    def __init__(self, k: float = 1.0, x0: float = 0.0):
        super().__init__()
        self.k, self.x0 = k, x0

    def forward(self, x):
        return 0.5 * self.k * (x[:, 0] - self.x0) ** 2


def analytic_ess(sigma_q: float = SIGMA_Q) -> float:
    """Kish ESS fraction for target N(0,1) and proposal N(0, sigma_q^2): 1 / E_q[(p/q)^2]."""
    return math.sqrt(2.0 - 1.0 / sigma_q**2) / sigma_q


def exact_bins() -> np.ndarray:
    edges = np.linspace(LO, HI, BINS + 1)
    p = np.diff(ndtr(edges))
    return p / p.sum()


def write_toy_task(root: Path, *, n: int = 20000, seed: int = 0, clip: float = 100.0, name: str = "toy",
                   n_bootstrap: int = 200, extra: dict | None = None) -> Path:
    rng = np.random.default_rng(seed)
    task_dir = root / name
    task_dir.mkdir(parents=True, exist_ok=True)
    x = (rng.normal(size=(n, 1)) * SIGMA_Q).astype(np.float32)
    xd = x[:, 0].astype(np.float64)
    log_q = -0.5 * (xd / SIGMA_Q) ** 2 - math.log(SIGMA_Q * math.sqrt(2 * math.pi))
    np.savez_compressed(task_dir / "proposal.npz", positions=x, log_q=log_q)
    np.savez_compressed(task_dir / "reference.npz", block_hist=exact_bins().reshape(1, 1, BINS), exact=True)
    example = torch.zeros(4, 1)
    export_program(Harmonic(), example, root / "exact.pt2")
    export_program(Harmonic(k=1.0, x0=0.7), example, root / "shifted.pt2")
    data = {
        "name": name, "version": 3, "description": "harmonic toy", "system": "toy", "representation": "x",
        "n_beads": 1, "input_shape": [1], "energy_unit": "kT", "temperature_kelvin": None, "kT": 1.0,
        "observables": [{"name": "x", "kind": "coordinate", "index": [0], "bins": BINS, "range": [LO, HI]}],
        "metrics": {"clip_percentile": clip, "n_bootstrap": n_bootstrap, "proposal_blocks": 100},
        "proposal": {"path": "proposal.npz", "sha256": sha256_file(task_dir / "proposal.npz"),
                     "provenance": {"command": "tests/conftest.py", "seed": seed}},
        "reference": {"path": "reference.npz", "sha256": sha256_file(task_dir / "reference.npz")},
        "baselines": [{"name": "exact", "kind": "pmf", "path": "../exact.pt2",
                       "sha256": sha256_file(root / "exact.pt2")}],
    }
    data.update(extra or {})
    (task_dir / "task.yaml").write_text(yaml.safe_dump(data, sort_keys=False))
    return task_dir


@pytest.fixture(scope="session")
def toy_root(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("tasks")
    write_toy_task(root)
    return root


@pytest.fixture(scope="module")
def toy_recorded(toy_root, tmp_path_factory):
    """An entry recorded from a real evaluation of the toy task, placeholders filled in."""
    from cgbg_bench.evaluate import evaluate
    from cgbg_bench.leaderboard import record_result
    from cgbg_bench.task import load_task

    task = load_task("toy", root=toy_root)
    result, _ = evaluate(toy_root / "exact.pt2", task, device="cpu")
    path = tmp_path_factory.mktemp("submissions") / "toy-pmf.yaml"
    record_result(path, result, task, model_path=toy_root / "exact.pt2", root=toy_root)
    from cgbg_bench.leaderboard import load_entry

    fresh = load_entry(path)
    data = yaml.safe_load(path.read_text())
    data.update(authors=["A. Person"], description="harmonic", license="MIT",
                model={"name": "toy-pmf", "version": "1.0"},
                method={"approach": "analytic", "architecture": "x^2/2", "training_data": "none",
                        "n_parameters": 0})
    return fresh, data


@pytest.fixture
def toy_task(toy_root):
    from cgbg_bench.task import load_task

    return load_task("toy", root=toy_root)


@pytest.fixture
def one_torch_thread():
    """Run a test with one torch thread (heavy tests on the 2-core CI machine), then restore."""
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


def assert_export_round_trip(module, sizes, make_input, tmp_path):
    """Export with cgbg_bench's exporter, reload with its loader: outputs bit-identical."""
    from cgbg_bench.pmf import load_pmf

    path = export_program(module, make_input(4), tmp_path / "module.pt2")
    loaded = load_pmf(path, "cpu")
    for n in sizes:
        x = make_input(n)
        with torch.no_grad():
            torch.testing.assert_close(loaded(x), module(x), rtol=0, atol=0)


@pytest.fixture(autouse=True)
def _seeded():
    torch.manual_seed(0)
    np.random.seed(0)
    yield
