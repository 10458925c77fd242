"""CPU seconds per 10^6 samples of a PMF_B's forward passes, by batch size (docs/benchmarks.md).

    python docs/scripts/forward_cost.py                       # 50,000 samples, batches 1024..16384
    python docs/scripts/forward_cost.py --samples 100000 --batches 4096 16384

One torch thread; user and system CPU seconds of this process (steadier than wall clock on a
shared machine; system time is mostly page faults of freshly mapped per-batch tensors), one pass
after a two-batch warm-up, ``compute_energies`` on exported programs (what the confined child runs):

- ``ala2-core-beta`` and ``ala2-heavy-atom``: the shipped ``fm-biased.pt2`` on samples of the task's
  flow;
- ``ala6-core-beta`` (before the task ships): a PMF_B-shaped model on samples of an untrained flow of
  the ala6 core-beta mapping (``benchmarks.pmf_b_standin``: 4 networks of one fit, 128 x 128, an
  order-4 (phi, psi) correction), exported twice: with the ensemble's shared features (how
  ``PMFEnsemble`` runs members of one fit) and with every member computing its own (how ensembles
  ran before). Cost only: the model is untrained.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "benchmarks"))


def per_million(module, positions, batch: int) -> tuple[float, float]:
    """(user, system) CPU seconds per 10^6 samples of one pass over ``positions``."""
    import resource

    from cgbg_bench.evaluate import compute_energies

    compute_energies(module, positions[: 2 * batch], batch_size=batch, device="cpu")  # warm-up
    before = resource.getrusage(resource.RUSAGE_SELF)
    compute_energies(module, positions, batch_size=batch, device="cpu")
    after = resource.getrusage(resource.RUSAGE_SELF)
    scale = 1e6 / len(positions)
    return (after.ru_utime - before.ru_utime) * scale, (after.ru_stime - before.ru_stime) * scale


def ala6_models(positions, out: Path) -> dict[str, Path]:
    """The PMF_B-shaped ala6-core-beta model exported with shared and with per-member features."""
    from benchmarks import pmf_b_standin
    from cgbg_bench.cg.mappings import get_mapping
    from cgbg_bench.fm.peptide import export_peptide_pmf

    model = pmf_b_standin(get_mapping("ala6", "core-beta"), positions)
    paths = {"ala6-core-beta stand-in, shared features": export_peptide_pmf(model, positions[:7], out / "shared.pt2")}
    model.base.shared_features = False
    paths["ala6-core-beta stand-in, per-member features"] = export_peptide_pmf(model, positions[:7], out / "own.pt2")
    return paths


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--samples", type=int, default=50_000)
    ap.add_argument("--batches", type=int, nargs="+", default=[1024, 2048, 4096, 8192, 16384])
    args = ap.parse_args(argv)

    import torch

    from benchmarks.bench_proposal import task_flow
    from cgbg_bench.pmf import load_pmf

    torch.set_num_threads(1)
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for task in ("ala2-core-beta", "ala2-heavy-atom"):
            x, _ = task_flow(task).sample_bank(args.samples, seed=0)
            module = load_pmf(ROOT / "baselines" / task / "fm-biased.pt2", "cpu")
            rows.append((f"{task} fm-biased (shipped)", module, x))
        x, _ = task_flow("ala6-core-beta").sample_bank(args.samples, seed=0)
        for name, path in ala6_models(x, Path(tmp)).items():
            rows.append((name, load_pmf(path, "cpu"), x))
        print(f"CPU seconds per 10^6 samples (user + system), one thread, {args.samples} samples")
        print("| model | " + " | ".join(f"batch {b}" for b in args.batches) + " |")
        print("|---|" + "---|" * len(args.batches))
        for name, module, x in rows:
            cells = [per_million(module, x, b) for b in args.batches]
            print(f"| {name} | " + " | ".join(f"{u + s:.1f} ({u:.1f} + {s:.1f})" for u, s in cells) + " |",
                  flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
