"""Crosscheck (reweighted bank vs CG Langevin) on a toy chain with an exact proposal density.

The toy: the ala2 core-beta chain (6 beads) with U/kT = -log p_ic + log J
(tests.toys.AnalyticChain: normal bonds and angles, von Mises dihedrals), in kJ/mol at
300 K. The proposal draws bonds and angles from the target's distributions and dihedrals
from broader, shifted von Mises; its exact Cartesian log-density is log q_ic - log J.
With that log q the crosscheck must agree; with log q deliberately wrong by a function of phi (moves the
phi > 0 population) or of psi (moves the shape, not the population) it must not.
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml
from scipy.stats import vonmises

from cgbg_bench._io import sha256_file
from cgbg_bench.cg.zmatrix import zmatrix_for
from cgbg_bench.cli import main
from cgbg_bench.crosscheck import CrosscheckError, SimulationDiverged, crosscheck
from cgbg_bench.observables import dihedral
from cgbg_bench.pmf import export_program
from cgbg_bench.task import Proposal, load_task
from cgbg_bench.units import kT_kj_per_mol
from tests.toys import AnalyticChain

pytestmark = pytest.mark.usefixtures("one_torch_thread")

KT = kT_kj_per_mol(300.0)
ZMAT = zmatrix_for(("ala2", "core-beta"))  # dihedrals: 0 = phi (0,1,2,4), 1 = CB improper, 2 = psi (1,2,4,5)
PHI, PSI = (0, 1, 2, 4), (1, 2, 4, 5)
MU_P = np.array([-1.0, 2.0, 0.5])  # target von Mises means (kappa 2): phi > 0 population ~0.12
MU_Q, KAPPA_Q = np.array([-0.7, 2.0, 0.9]), 1.5
N_BANK = 20000
SIM = dict(n_walkers=128, n_frames=40, stride=25, n_discard=8, dt_ps=0.002, friction_per_ps=1.0,
           n_bootstrap=200, device="cpu")  # 2 ps per walker, 0.4 ps discarded


class ToyPMF(torch.nn.Module):
    """kT * AnalyticChain: energies in kJ/mol."""

    def __init__(self):
        super().__init__()
        self.chain = AnalyticChain(ZMAT)
        self.chain.mu = torch.as_tensor(MU_P, dtype=torch.float64)

    def forward(self, x):
        return KT * self.chain(x)


def _bank(seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Positions (float32) and their exact log q (Cartesian, rotation-averaged)."""
    rng = np.random.default_rng(seed)
    b = 0.15 + 0.01 * rng.normal(size=(N_BANK, ZMAT.n_bonds))
    a = 1.95 + 0.1 * rng.normal(size=(N_BANK, ZMAT.n_angles))
    d = rng.vonmises(MU_Q, KAPPA_Q, size=(N_BANK, ZMAT.n_dihedrals))
    x = ZMAT.to_cartesian(*(torch.as_tensor(v) for v in (b, a, d))).numpy().astype(np.float32)
    # log q of the stored float32 positions, from their own internal coordinates
    bb, aa, dd = (v.numpy() for v in ZMAT.to_internal(torch.as_tensor(x, dtype=torch.float64)))
    normal = lambda v, m, s: -0.5 * ((v - m) / s) ** 2 - math.log(s * math.sqrt(2 * math.pi))  # noqa: E731
    log_q_ic = normal(bb, 0.15, 0.01).sum(1) + normal(aa, 1.95, 0.1).sum(1) + vonmises.logpdf(dd, KAPPA_Q,
                                                                                              loc=MU_Q).sum(1)
    log_j = ZMAT.log_jacobian(torch.as_tensor(bb), torch.as_tensor(aa)).numpy()
    return x, log_q_ic - log_j


def _task_yaml(bins: int = 36, clip: float = 99.0) -> dict:
    return {
        "name": "toychain", "version": 1, "description": "toy chain with exact log q", "system": "toy",
        "representation": "core-beta", "n_beads": 6, "input_shape": [6, 3], "energy_unit": "kJ/mol",
        "temperature_kelvin": 300.0, "kT": KT,
        "observables": [{"name": "ala1", "kind": "dihedral_pair", "phi": list(PHI), "psi": list(PSI),
                         "bins": bins}],
        "metrics": {"clip_percentile": clip, "n_bootstrap": 200, "proposal_blocks": 100},
    }


@pytest.fixture(scope="module")
def chain_root(tmp_path_factory) -> Path:
    """A tasks folder with the toy chain task (and its exported PMF, toy.pt2)."""
    root = tmp_path_factory.mktemp("chain")
    task_dir = root / "toychain"
    task_dir.mkdir()
    x, log_q = _bank()
    np.savez(task_dir / "proposal.npz", positions=x, log_q=log_q)
    np.savez(task_dir / "reference.npz", block_hist=np.full((1, 1, 36 * 36), 1.0), exact=True)
    data = _task_yaml()
    data["proposal"] = {"path": "proposal.npz", "sha256": sha256_file(task_dir / "proposal.npz")}
    data["reference"] = {"path": "reference.npz", "sha256": sha256_file(task_dir / "reference.npz")}
    (task_dir / "task.yaml").write_text(yaml.safe_dump(data, sort_keys=False))
    export_program(ToyPMF(), torch.as_tensor(x[:4]), root / "toy.pt2")
    return root


@pytest.fixture(scope="module")
def chain(chain_root):
    task = load_task("toychain", root=chain_root)
    return task, task.load_proposal()


def test_exact_log_q_agrees(chain):
    task, bank = chain
    r = crosscheck(ToyPMF(), task, seed=0, proposal=bank, **SIM)
    o = r.observables["ala1"]
    assert r.agree, (o.js, o.js_floor, o.phi_positive_sim, o.phi_positive_bank)
    # both sides near the exact target population (von Mises(-1, 2): P(phi > 0) = 0.1239)
    assert abs(o.phi_positive_sim.point - 0.1239) < 3 * o.phi_positive_sim.error
    assert 0.5 < r.ess < 1 and r.production_ps == pytest.approx(1.6)


@pytest.mark.parametrize("wrong", ["phi", pytest.param("psi", marks=pytest.mark.slow)])
def test_wrong_log_q_disagrees(chain, wrong):
    """log q + sin(phi): the reweighted phi > 0 population drops ~3x; log q + cos(2 psi): the shape changes."""
    task, bank = chain
    angle = dihedral(bank.positions, PHI if wrong == "phi" else PSI)
    shift = np.sin(angle) if wrong == "phi" else np.cos(2 * angle)
    r = crosscheck(ToyPMF(), task, seed=0, proposal=Proposal(bank.positions, bank.log_q + shift), **SIM)
    o = r.observables["ala1"]
    assert not r.agree
    if wrong == "phi":
        assert o.population_sigma > 4 and not o.population_agrees
    else:
        assert o.js_excess_sigma > 4 and o.population_agrees


def test_divergence_and_bad_inputs_raise(chain):
    task, bank = chain
    with pytest.raises(SimulationDiverged, match="lower the time step"):
        crosscheck(ToyPMF(), task, proposal=bank, n_walkers=8, n_frames=2, stride=5, dt_ps=0.5, device="cpu",
                   n_bootstrap=10)
    with pytest.raises(CrosscheckError, match="n_walkers"):
        crosscheck(ToyPMF(), task, proposal=bank, n_walkers=2, device="cpu")
    with pytest.raises(CrosscheckError, match="start"):
        crosscheck(ToyPMF(), task, proposal=bank, start="middle", device="cpu")


@pytest.fixture
def chain_env(chain_root, monkeypatch):
    monkeypatch.setenv("CGBG_BENCH_TASKS", str(chain_root))
    return chain_root


def test_cli_prints_table_json_and_plot(chain_env, tmp_path, capsys):
    import json

    out_json, out_png = tmp_path / "c.json", tmp_path / "c.png"
    code = main(["crosscheck", str(chain_env / "toy.pt2"), "--task", "toychain", "--walkers", "16",
                 "--ns", "0.001", "--save-fs", "50", "--n-bootstrap", "50", "--device", "cpu",
                 "--json", str(out_json), "--plot", str(out_png)])
    text = capsys.readouterr().out
    assert code == 0, text
    assert "| JS(sim, bank)" in text and "verdict: AGREE" in text
    result = json.loads(out_json.read_text())
    assert result["agree"] is True and result["simulation"]["n_walkers"] == 16
    assert result["simulation"]["production_ps_per_walker"] == pytest.approx(0.9)
    assert out_png.stat().st_size > 1000


@pytest.mark.parametrize("argv, message", [
    (["--walkers", "0"], "--walkers"),
    (["--ns", "-1"], "--ns"),
    (["--save-fs", "3"], "whole multiple"),
    (["--equilibration-ps", "5000"], "--equilibration-ps"),
    (["--clip-percentile", "0"], "--clip-percentile"),  # the library names clip_percentile, the CLI its flag
])
def test_cli_bad_options_exit_2(chain_env, capsys, argv, message):
    assert main(["crosscheck", str(chain_env / "toy.pt2"), "--task", "toychain", *argv]) == 2
    assert message in capsys.readouterr().err


def test_cli_bad_task_and_pmf_exit_2(chain_env, toy_root, tmp_path, capsys, monkeypatch):
    assert main(["crosscheck", str(chain_env / "toy.pt2"), "--task", "toychian"]) == 2
    assert "did you mean toychain" in capsys.readouterr().err
    bad = tmp_path / "model.pt"
    torch.save(torch.nn.Linear(1, 1), bad)
    assert main(["crosscheck", str(bad), "--task", "toychain"]) == 2
    assert "UnsupportedFormat" in capsys.readouterr().err
    monkeypatch.setenv("CGBG_BENCH_TASKS", str(toy_root))  # the 1-D harmonic toy: no dihedrals
    assert main(["crosscheck", str(toy_root / "exact.pt2"), "--task", "toy"]) == 2
    assert "peptide task" in capsys.readouterr().err
