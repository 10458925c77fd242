"""The quality report of the MD data: ns per run, reference noise, halves, phi > 0, basins, GB rows.

    cgbg-bench md report --reference DIR... [--check DIR...] [--gb obc2=DIR ...]

Pure assembly over :mod:`cgbg_bench.reference`; printing is in the CLI.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np

from cgbg_bench.errors import DataError, UsageError
from cgbg_bench.md.production import run_status
from cgbg_bench.reference import (combine_reference, combine_runs, compare_basins, load_run_dihedrals, merge_blocks,
                                  quality_report, run_halves)

__all__ = ["data_report", "POOLED_CHECKS"]


def data_report(reference_dirs: list[Path], gb: dict[str, list[Path]], *, kT: float, block_ps: float = 1000.0,
                discard_ps: float = 0.0, n_bootstrap: int = 500, seed: int = 0,
                max_chunks: dict[str, int] | None = None, check_dirs: Sequence[Path] = (),
                basin_block_ps: float = 1000.0) -> dict:
    """Report on a reference made of unbiased/static runs, with implicit-solvent runs scored against it.

    Runs whose bias evolves (wtmetad) are listed with their ns but enter nothing else.
    ``max_chunks``: {run dir: N} reads only a run's first N chunks (a task's snapshot).
    ``check_dirs``: unbiased/static runs that stay out of the reference but are compared with
    it basin by basin (``basins``: every run's beta/PPII, alpha_R and phi > 0 populations with
    errors from blocks of ``basin_block_ps``, and how many combined standard errors each run
    lies from the reference runs other than itself; with several check runs of one kind, also
    those pooled as one sample, named ``POOLED_CHECKS``). Unbiased and static-bias runs combine
    by :func:`cgbg_bench.reference.combine_reference` (``groups``: each kind's runs and share).
    """
    max_chunks = {str(Path(k)): v for k, v in (max_chunks or {}).items()}

    def load(d):
        return load_run_dihedrals(d, kT, discard_ps=discard_ps, max_chunks=max_chunks.get(str(Path(d))))

    def ns(d) -> float:
        st = run_status(d)
        n = max_chunks.get(str(Path(d)))
        return st["ns_done"] if n is None else min(n, st["chunks_done"]) * st["ns_done"] / max(st["chunks_done"], 1)

    runs, other = [], []
    for d in reference_dirs:
        try:
            runs.append(load(d))
        except DataError:  # an evolving bias (wtmetad): listed, not used
            other.append(Path(d))
    if not runs:
        raise UsageError("reference_dirs has no unbiased or static-bias run")
    n_res = runs[0].phi.shape[1]
    ref_dirs = [d for d in reference_dirs if Path(d) not in other]
    blocks, groups = combine_reference(runs, block_ps, basin_block_ps=basin_block_ps, n_bootstrap=n_bootstrap,
                                       seed=seed)
    if all(len(b) < 2 for b in blocks):  # every run split in time: a 1-block run adds to the second half only
        raise DataError(f"{', '.join(map(str, ref_dirs))}: fewer than 2 blocks of {block_ps:g} ps, so no halves to "
                        "compare; pass a smaller block_ps or let the run grow")
    ref = np.concatenate(blocks)
    gb_hist = {name: combine_runs([load(d) for d in dirs], block_ps)
               for name, dirs in gb.items()}
    scored = _scored_residue(n_res)
    rep = quality_report(ref, n_bootstrap=n_bootstrap, seed=seed, baselines=gb_hist,
                         first_half=run_halves([len(b) for b in blocks]), headline_column=scored - 1)
    rep["runs"] = [{"dir": str(d), "ns": ns(d), "blocks": len(b), "role": "reference"}
                   for d, b in zip(ref_dirs, blocks)]
    rep["runs"] += [{"dir": str(d), "ns": ns(d), "blocks": 0, "role": "evolving bias (not used)"}
                    for d in other]
    for name, dirs in gb.items():
        rep["runs"] += [{"dir": str(d), "ns": ns(d), "blocks": None, "role": f"baseline {name}"}
                        for d in dirs]
    checks = [load(d) for d in check_dirs]
    rep["runs"] += [{"dir": str(d), "ns": ns(d), "blocks": None, "role": "check (not in the reference)"}
                    for d in check_dirs]
    group = max(1, int(round(basin_block_ps / block_ps)))
    check_blocks = [combine_runs([c], block_ps) for c in checks]
    merged = [merge_blocks(b, group) for b in [*blocks, *check_blocks]]
    names = [str(d) for d in [*ref_dirs, *check_dirs]]
    if len(checks) > 1 and len({c.group for c in checks}) == 1:
        # the checked runs as one sample, as a reference pools runs of one kind (each run's blocks
        # scaled to its effective size: stacking them is combine_runs); no block spans two runs
        merged.append(np.concatenate(merged[len(blocks):]))
        names.append(POOLED_CHECKS)
    rep["basins"] = compare_basins(names, merged, len(blocks), n_bootstrap=n_bootstrap, seed=seed)
    rep["basins"]["block_ps"] = block_ps * group
    rep["groups"] = groups
    rep["kish_ess_fraction"] = [float(_kish(r.log_weight)) for r in runs]
    rep["n_residues"] = n_res
    rep["scored_residue"] = scored
    rep["block_ps"] = block_ps
    return rep


#: the name of the basin row of the --check runs pooled (when there are several)
POOLED_CHECKS = "checked runs pooled"


def _scored_residue(n_res: int) -> int:
    """The headline residue (cgbg_bench.cg.mappings.SCORED_RESIDUE) of the system with ``n_res`` alanines."""
    from cgbg_bench.cg.mappings import SCORED_RESIDUE, SYSTEMS

    system = next((s for s, n in SYSTEMS.items() if n == n_res), None)
    return 1 if system is None else SCORED_RESIDUE[system]


def _kish(log_w: np.ndarray) -> float:
    w = np.exp(log_w - log_w.max())
    return w.sum() ** 2 / (len(w) * (w**2).sum())
