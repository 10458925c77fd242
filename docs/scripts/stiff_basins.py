"""Do a PMF's stiff coordinates fluctuate as in MD, basin by basin? A diagnostic of basin balance.

    python docs/scripts/stiff_basins.py ala2-heavy-atom baselines/ala2-heavy-atom/fm-biased.pt2 \
        data/ala2/explicit-static data/ala2/explicit-static-2

The (phi, psi) basin populations of a PMF depend on more than its (phi, psi) landscape: the
volume its stiff coordinates (bonds, angles, single-basin dihedrals of the CG Z-matrix) can
explore in each basin adds -kT log(volume) to that basin's free energy. In the Gaussian
approximation the volume is sqrt(det C) with C the covariance of the stiff coordinates within the
basin, so 0.5 [log det C(alpha_R) - log det C(beta/PPII)] is the stiff coordinates' share of the
log-odds of alpha_R against beta/PPII. This script computes it for the MD data (static-bias runs,
exact weights exp(+V/kT), CG frames every 1 ps) and for the PMF (the task's bank reweighted as the
benchmark does, with the task's weighting), and the per-coordinate terms 0.5 log(var_alpha / var_beta) whose
differences add most. Compare the difference with the PMF's error in log-odds, log[(P_alpha /
P_beta)_PMF / (P_alpha / P_beta)_MD] (both printed). Point estimates; numbers in docs/proposals.md.
C is each basin's whole covariance, not the covariance at fixed (phi, psi), so it also carries how
the stiff coordinates' means drift with (phi, psi) within the basin; differences in their mean
energy between basins count as the (phi, psi) landscape.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
import torch

from cgbg_bench.cg.zmatrix import zmatrix_for
from cgbg_bench.evaluate import evaluate, observable_index
from cgbg_bench.md.production import load_cg
from cgbg_bench.reference import basin_masks
from cgbg_bench.task import load_task
from cgbg_bench.units import kT_kj_per_mol

BASINS = ("alpha_R", "beta/PPII")


def internal(positions: np.ndarray, mapping):
    b, a, d = zmatrix_for(mapping).to_internal(torch.as_tensor(positions, dtype=torch.float64))
    return b.numpy(), a.numpy(), d.numpy()


def stiff_coordinates(ic, stiff: list[int], centre: np.ndarray) -> np.ndarray:
    """Bonds, angles and the stiff dihedrals (unwrapped around ``centre``) of every sample."""
    b, a, d = ic
    return np.concatenate([b, a, np.angle(np.exp(1j * (d[:, stiff] - centre)))], 1)


def basin_of(task, positions: np.ndarray) -> dict[str, np.ndarray]:
    index = observable_index(task, positions)[0]
    masks = basin_masks(*task.observables[0].bins)
    return {k: masks[k][np.clip(index, 0, None)] & (index >= 0) for k in BASINS}


def weighted_cov(x: np.ndarray, w: np.ndarray) -> np.ndarray:
    w = w / w.sum()
    mu = w @ x
    xc = x - mu
    return (xc * w[:, None]).T @ xc


def summary(x: np.ndarray, w: np.ndarray, basins: dict[str, np.ndarray]) -> dict:
    out = {"pop": {k: w[m].sum() / w.sum() for k, m in basins.items()}}
    covs = {k: weighted_cov(x[m], w[m]) for k, m in basins.items()}
    out["half_logdet"] = {k: 0.5 * np.linalg.slogdet(c)[1] for k, c in covs.items()}
    out["half_logvar"] = {k: 0.5 * np.log(np.diag(c)) for k, c in covs.items()}
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("task")
    ap.add_argument("pmf")
    ap.add_argument("runs", nargs="+", help="static-bias run directories (the MD side)")
    args = ap.parse_args()
    task = load_task(args.task)
    proposal = task.load_proposal()
    _, log_w = evaluate(args.pmf, task, n_bootstrap=2, proposal=proposal)
    w_pmf = task.metrics.bank_weights(log_w).weights  # the task's weighting
    pos, w_md = [], []
    kT = kT_kj_per_mol(task.temperature_kelvin)
    mapping, bias_sha = None, set()
    for run in args.runs:
        settings = json.loads((Path(run) / "run.json").read_text())["settings"]
        if settings["bias"] != "static":
            raise SystemExit(f"{run}: bias {settings['bias']!r}; this script pools static-bias runs only")
        bias_sha.add(settings["static_bias_sha256"])
        data = load_cg(run, task.representation)
        mapping = data["mapping"]
        at = np.searchsorted(data["time_ps"], data["frame_time_ps"] - 1e-6)
        assert np.array_equal(data["time_ps"][at], data["frame_time_ps"]), "frames and bias samples misaligned"
        pos.append(data["positions_nm"])
        w_md.append(data["bias_energy_kj_per_mol"][at].astype(np.float64) / kT)
    if len(bias_sha) != 1:
        raise SystemExit("the runs have different frozen biases; their weights cannot be pooled as they are")
    log_w_md = np.concatenate(w_md)
    w_md = np.exp(log_w_md - log_w_md.max())
    pos = np.concatenate(pos)
    ic_md = internal(pos, mapping)
    spread = 1 - np.abs(np.exp(1j * ic_md[2]).mean(0))  # circular variance: phi and psi spread most
    stiff = [j for j in range(ic_md[2].shape[1]) if j not in np.argsort(spread)[-2:]]
    centre = np.angle(np.exp(1j * ic_md[2][:, stiff]).mean(0))  # chosen on the MD data, used for both
    names = ([f"bond {k}" for k in range(ic_md[0].shape[1])] + [f"angle {k}" for k in range(ic_md[1].shape[1])]
             + [f"dihedral {j}" for j in stiff])
    x_md = stiff_coordinates(ic_md, stiff, centre)
    x_pmf = stiff_coordinates(internal(proposal.positions, mapping), stiff, centre)
    md = summary(x_md, w_md, basin_of(task, pos))
    pmf = summary(x_pmf, w_pmf, basin_of(task, proposal.positions))
    a, b = BASINS
    odds = lambda s: np.log(s["pop"][a] / s["pop"][b])  # noqa: E731
    volume = lambda s: s["half_logdet"][a] - s["half_logdet"][b]  # noqa: E731
    print(f"{task.name} v{task.version}, {args.pmf}; MD: {', '.join(args.runs)} ({len(x_md)} frames)")
    print("point estimates; C is each basin's whole covariance, so it also holds how the stiff means drift "
          "with (phi, psi)")
    print(f"P(alpha_R), P(beta/PPII): MD {md['pop'][a]:.4f} {md['pop'][b]:.4f}; PMF {pmf['pop'][a]:.4f} "
          f"{pmf['pop'][b]:.4f}")
    print(f"log-odds alpha_R : beta/PPII: MD {odds(md):+.3f}, PMF {odds(pmf):+.3f}, "
          f"PMF - MD {odds(pmf) - odds(md):+.3f}")
    print(f"stiff volume term 0.5 [log det C_alpha - log det C_beta] ({len(names)} coordinates): "
          f"MD {volume(md):+.3f}, PMF {volume(pmf):+.3f}, PMF - MD {volume(pmf) - volume(md):+.3f}")
    diag = lambda s: s["half_logvar"][a] - s["half_logvar"][b]  # noqa: E731
    delta = diag(pmf) - diag(md)
    print(f"sum of the per-coordinate terms 0.5 log(var_alpha/var_beta), PMF - MD: {delta.sum():+.3f}")
    order = np.argsort(-np.abs(delta))
    print(f"{'coordinate':>12s} {'MD':>8s} {'PMF':>8s} {'PMF-MD':>8s}")
    for k in order[:10]:
        print(f"{names[k]:>12s} {diag(md)[k]:+8.3f} {diag(pmf)[k]:+8.3f} {delta[k]:+8.3f}")


if __name__ == "__main__":
    main()
