"""How well do two proposal flows trained on the same frames agree? The flows' own share of a low ESS.

    python docs/scripts/flow_agreement.py ala2-core-beta ala3-core-beta ala3-core-beta-biased
    python docs/scripts/flow_agreement.py ala3-core-beta-biased --flow hidden=16 transforms=2

For each task, trains two flows with the task's recipe (settings, training runs and pins) and two
other seeds (31, 32), draws a bank of ``--n`` samples from the second and weighs it by the first:
w = q_1 / q_2. Both are estimates of the same distribution, so the spread of log w is the flows'
own training noise: the Kish ESS fraction of w on that bank bounds how well any one flow of this
recipe can stand for the MD distribution, whatever the PMF. ``--flow NAME=VALUE ...`` changes the
recipe's flow settings (cgbg_bench.build.recipe.FlowSettings) for both flows. Identical flows give 1. If the two
flows' errors are independent and alike, each flow is off by half the variance of log w, and an
exact PMF scored on the task's bank would see about that much spread in its log-weights too.
Point estimates; ~1 min per ala3 task and ~2 min per ala2 task on 2 cores.
"""

from __future__ import annotations

import argparse
import dataclasses

import numpy as np
import torch

from cgbg_bench.build.alanine import VARIANTS, train_flow, training_frames
from cgbg_bench.build.recipe import FlowSettings, load_recipe
from cgbg_bench.cg.mappings import get_mapping
from cgbg_bench.cg.zmatrix import zmatrix_for
from cgbg_bench.task import load_task
from cgbg_bench.units import kT_kj_per_mol

SEEDS = (31, 32)


def agreement(task_name: str, n: int, flow: dict | None = None, batch: int = 20_000) -> dict:
    task = load_task(task_name)
    recipe = load_recipe(task.root / "task.yaml")
    recipe = dataclasses.replace(recipe, flow=dataclasses.replace(recipe.flow, **(flow or {})))
    kind = VARIANTS["-biased" if task_name.endswith("-biased") else ""]
    mapping = get_mapping(task.system, task.representation)
    z = zmatrix_for(mapping)
    soft = [z.dihedral_index(q) for q in mapping.phi + mapping.psi]
    frames, log_w = training_frames(recipe, kind, task.representation, kT_kj_per_mol(task.temperature_kelvin))
    flows = [train_flow(z, frames, log_w, soft, dataclasses.replace(recipe, seeds=dataclasses.replace(
        recipe.seeds, flow=seed)))[0] for seed in SEEDS]
    positions, log_q2 = flows[1].sample_bank(n, seed=99)
    with torch.no_grad():
        log_q1 = np.concatenate([flows[0].log_prob(torch.as_tensor(positions[i:i + batch], dtype=torch.float64))
                                 .numpy() for i in range(0, n, batch)])
    lw = log_q1 - log_q2
    w = np.exp(lw - lw.max())
    return {"task": f"{task.name} v{task.version}", "frames": len(frames), "var_log_w": float(lw.var()),
            "ess": float(w.sum() ** 2 / (n * (w**2).sum()))}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("tasks", nargs="+")
    ap.add_argument("--n", type=int, default=200_000, help="bank size (default 200,000)")
    ap.add_argument("--flow", nargs="+", default=[], metavar="NAME=VALUE",
                    help="flow settings to change, e.g. hidden=16 transforms=2")
    args = ap.parse_args()
    types = {f.name: f.type for f in dataclasses.fields(FlowSettings)}
    flow = {}
    for item in args.flow:
        name, _, value = item.partition("=")
        if name not in types or not value:
            raise SystemExit(f"--flow {item!r}: expected NAME=VALUE with NAME one of {sorted(types)}")
        flow[name] = (int if types[name] in (int, "int") else float)(value)
    print("| task | training frames | var log(q_1 / q_2) | ESS of q_1 on q_2's bank |")
    print("|---|---|---|---|")
    for name in args.tasks:
        r = agreement(name, args.n, flow)
        print(f"| {r['task']} | {r['frames']:,} | {r['var_log_w']:.2f} | {r['ess']:.2f} |", flush=True)


if __name__ == "__main__":
    main()
