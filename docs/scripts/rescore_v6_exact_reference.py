"""Re-score the v6 ala2 baselines against the exactly reweighted reference (docs/md.md).

The v6 tasks' reference.npz scaled every 200 ps block to its own Kish effective size
(cgbg_bench.reference up to the v6 tasks), which drops the blocks' total weights
and biases a static-bias reference. This rebuilds the reference from the same pinned chunks
with today's code and scores every shipped baseline of the unbiased-flow tasks against it,
beside the stored scores. It reproduces the README's numbers only on a checkout of the v6
tasks (commit d81e4e7; later commits ship v7 tasks with the exact reference). From the
repository root:

    python docs/scripts/rescore_v6_exact_reference.py
"""

import json

import numpy as np

from cgbg_bench.evaluate import evaluate_baseline
from cgbg_bench.reference import combine_runs, load_run_dihedrals
from cgbg_bench.report import format_value_error
from cgbg_bench.task import Reference, load_task

PINS = {"data/ala2/explicit-static": 48, "data/ala2/explicit-static-2": 11}  # the v6 --max-chunks

for name in ("ala2-core-beta", "ala2-heavy-atom"):
    task = load_task(name)
    runs = [load_run_dihedrals(d, task.kT, max_chunks=n) for d, n in PINS.items()]
    exact = Reference(combine_runs(runs, 200.0), exact=False)
    with open(f"tasks/{name}/baseline_scores.json") as f:
        stored = json.load(f)["baselines"]
    print(f"{name} v{task.version}: stored (per-block scaled reference) -> exact reference")
    for b in ("fm-unbiased", "fm-biased", "prior-only", "gb-obc1", "gb-obc2"):
        new = evaluate_baseline(task, b, reference=exact).scores
        cells = []
        for m in ("js", "pmf_error", "js_floor"):
            old = stored[b]["metrics"][m]
            cells.append(f"{m} {format_value_error(old['value'], old['error'])} -> "
                         f"{format_value_error(new.metrics[m].value, new.metrics[m].error)}")
        print(f"  {b:12s} " + "; ".join(cells), flush=True)
