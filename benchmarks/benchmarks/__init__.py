"""asv benchmarks of cgbg-bench, and the inputs they share.

Everything here runs in a benchmark's ``setup`` (never at import time), so no
timing includes it. Two kinds of input:

- the shipped tasks (``tasks/*``), scored with one of their force-matched MLP
  baselines (an MLP is what a submission usually is; the exact Mueller-Brown PMF
  is a 1001-point quadrature per sample and would time the quadrature);
- a **synthetic stand-in for ala2-core-beta** (6 beads x 3 coordinates, one
  (phi, psi) dihedral_pair observable with 100 x 100 bins, a block-histogram
  reference, an exported MLP PMF on the 15 pairwise distances), written once per
  bank size under a cache folder. It has the real task's shapes and settings, not
  its data: use it for cost, never for scores. Replace it by the real task when
  ``tasks/ala2-core-beta`` ships.

``CGBG_ASV_QUICK=1`` (set by benchmarks/gate_speed.py) shrinks the parameter
lists to the quick set that the CI speed gate times.
"""

from __future__ import annotations

import math
import os
import shutil
import tempfile
import time
import timeit
from pathlib import Path

import torch

__all__ = ["QUICK", "TIMER", "quick", "gate_mode", "shipped_tasks", "cache_dir", "DistanceMLP",
           "synthetic_ala2", "synthetic_peptide", "pmf_b_standin", "mlp_baseline"]

#: True in the CI speed gate's run: parameter lists keep only their quick values.
QUICK = os.environ.get("CGBG_ASV_QUICK", "") not in ("", "0")

#: The speed gate times CPU seconds of this process (one torch thread): on a shared,
#: loaded machine they move far less than wall-clock seconds. Full runs time wall-clock.
TIMER = time.process_time if QUICK else timeit.default_timer

#: Bump when the synthetic task's recipe changes, so stale caches are not reused.
SYNTHETIC_VERSION = 1


def quick(full: list, fast: list) -> list:
    """``fast`` in the speed gate's quick run, else ``full``."""
    return fast if QUICK else full


def shipped_tasks() -> list[str]:
    """Names of the tasks under tasks/ (a directory listing, cheap enough for import time)."""
    from cgbg_bench.task import list_tasks

    return list_tasks()


def cache_dir() -> Path:
    """Where synthetic inputs are kept between benchmark processes ($CGBG_ASV_CACHE overrides)."""
    env = os.environ.get("CGBG_ASV_CACHE")
    return Path(env) if env else Path(tempfile.gettempdir()) / "cgbg-bench-asv"


def gate_mode() -> None:
    """In the quick run, one torch thread: the gate times code, not the scheduler of a shared machine."""
    if QUICK:
        torch.set_num_threads(1)


def mlp_baseline(task) -> Path:
    """The task's first force-matched (``fm-*``) PMF baseline, else its first PMF baseline."""
    pmfs = [b for b in task.baselines if b.kind == "pmf"]
    if not pmfs:
        raise LookupError(f"task {task.name} has no PMF baseline to score")
    fm = [b for b in pmfs if b.name.startswith("fm-")]
    return (fm or pmfs)[0].file.verify()


class DistanceMLP(torch.nn.Module):
    """PMF on the 15 pairwise distances of 6 beads: distances -> SiLU MLP (128, 128) -> energy."""

    def __init__(self, n_beads: int = 6, hidden: tuple[int, ...] = (128, 128), seed: int = 0):
        super().__init__()
        i, j = torch.triu_indices(n_beads, n_beads, offset=1)
        self.register_buffer("i", i)
        self.register_buffer("j", j)
        layers, n_in = [], len(i)
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            for h in hidden:
                layers += [torch.nn.Linear(n_in, h), torch.nn.SiLU()]
                n_in = h
            layers.append(torch.nn.Linear(n_in, 1))
            self.mlp = torch.nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        d = torch.linalg.vector_norm(x[:, self.i] - x[:, self.j], dim=-1)
        return self.mlp(d)[:, 0]


def _chain(rng, n: int, n_beads: int = 6, bond_nm: float = 0.15):
    """Random bead chains: fixed bond length, bond angle near 110 degrees, uniform torsions."""
    import numpy as np

    x = np.zeros((n, n_beads, 3))
    x[:, 1, 0] = bond_nm
    x[:, 2] = x[:, 1] + bond_nm * np.array([math.cos(math.radians(70)), math.sin(math.radians(70)), 0.0])
    for k in range(3, n_beads):
        b1 = x[:, k - 1] - x[:, k - 2]
        b0 = x[:, k - 2] - x[:, k - 3]
        e1 = b1 / np.linalg.norm(b1, axis=1, keepdims=True)
        nrm = np.cross(b0, e1)
        nrm /= np.linalg.norm(nrm, axis=1, keepdims=True)
        m = np.cross(nrm, e1)
        theta = math.radians(110.0) + 0.1 * rng.standard_normal(n)
        tors = rng.uniform(-math.pi, math.pi, n)
        step = (-np.cos(theta)[:, None] * e1 + (np.sin(theta) * np.cos(tors))[:, None] * m
                + (np.sin(theta) * np.sin(tors))[:, None] * nrm)
        x[:, k] = x[:, k - 1] + bond_nm * step
    x += 0.005 * rng.standard_normal(x.shape)
    return x.astype(np.float32)


def _built_task(final: Path, make) -> Path:
    """``final``, a synthetic task folder built once by ``make(tmp)`` into a temporary folder renamed
    into place, so concurrent benchmark processes never see half a task."""
    if not (final / "task.yaml").is_file():
        final.parent.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(prefix=f".{final.name}.", dir=final.parent))
        try:
            make(tmp)
            try:
                os.rename(tmp, final)
            except OSError:  # another process won the race: use its copy
                pass
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
    return final


def _write_synthetic(tmp: Path, *, rng, positions, observables: list[dict], model, pmf_file: str,
                     n_ref_blocks: int, **fields) -> None:
    """A synthetic task in ``tmp``: the bank ``positions`` with random log q, an MD-like block-histogram
    reference (``n_ref_blocks`` blocks of 5000 frames per observable) and ``model`` exported as its one
    PMF baseline; ``fields``: the task.yaml name, description, system and representation."""
    import numpy as np
    import yaml

    from cgbg_bench._io import atomic_savez, sha256_file
    from cgbg_bench.pmf import export_program

    n, n_beads = positions.shape[:2]
    atomic_savez(tmp / "proposal.npz", positions=positions, log_q=rng.normal(0.0, 1.0, n) - 20.0)
    bins = max(o["bins"] for o in observables) ** 2  # 2-D observables: the reference's widest row
    centre = rng.dirichlet(np.full(bins, 0.05))
    block_hist = rng.multinomial(5000, centre, size=(n_ref_blocks, len(observables))).astype(np.float64)
    atomic_savez(tmp / "reference.npz", block_hist=block_hist, exact=False)
    export_program(model.eval(), torch.as_tensor(positions[:7]), tmp / pmf_file)
    data = {
        **fields, "version": SYNTHETIC_VERSION, "n_beads": int(n_beads), "input_shape": [int(n_beads), 3],
        "energy_unit": "kJ/mol", "temperature_kelvin": 300.0, "kT": 2.494339, "observables": observables,
        "metrics": {"clip_percentile": 99.0, "n_bootstrap": 500, "proposal_blocks": 100},
        "proposal": {"path": "proposal.npz", "sha256": sha256_file(tmp / "proposal.npz")},
        "reference": {"path": "reference.npz", "sha256": sha256_file(tmp / "reference.npz")},
        "baselines": [{"name": Path(pmf_file).stem, "kind": "pmf", "path": pmf_file,
                       "sha256": sha256_file(tmp / pmf_file)}],
    }
    (tmp / "task.yaml").write_text(yaml.safe_dump(data, sort_keys=False))


def synthetic_ala2(n: int, *, n_ref_blocks: int = 100, seed: int = 0):
    """The synthetic ala2-core-beta stand-in with an n-sample bank: (Task, path of its MLP PMF).

    Built once under :func:`cache_dir`, then loaded.
    """
    import numpy as np

    from cgbg_bench.task import load_task

    def make(tmp: Path) -> None:
        rng = np.random.default_rng(seed)
        positions = np.concatenate([_chain(rng, min(200_000, n - s)) for s in range(0, n, 200_000)])
        _write_synthetic(
            tmp, rng=rng, positions=positions, model=DistanceMLP(), pmf_file="mlp.pt2", n_ref_blocks=n_ref_blocks,
            observables=[{"name": "phi_psi", "kind": "dihedral_pair", "phi": [0, 1, 2, 3], "psi": [1, 2, 3, 4],
                          "bins": 100}],
            name="ala2-core-beta-synthetic", system="synthetic", representation="core-beta",
            description="SYNTHETIC stand-in for ala2-core-beta (random chains; cost only, not scores)")

    final = _built_task(cache_dir() / f"ala2-core-beta-synthetic-v{SYNTHETIC_VERSION}-n{n}", make)
    return load_task(final / "task.yaml"), final / "mlp.pt2"


def pmf_b_standin(mapping, positions, *, seed: int = 0) -> torch.nn.Module:
    """A model with the shape of a shipped PMF_B of ``mapping`` (cost only, untrained): the mean of 4
    force-matched networks of one fit (prior fitted on ``positions[:2000]``, RBF pair distances and
    Z-matrix dihedrals, MLP 128 x 128, a small random last layer) plus an order-4 (phi, psi)
    correction. ``model.base`` is the :class:`~cgbg_bench.fm.peptide.PMFEnsemble`."""
    import numpy as np

    from cgbg_bench.fm.dihedral_correction import CorrectedPMF, DihedralCorrection
    from cgbg_bench.fm.peptide import PMFEnsemble, build_peptide_pmf
    from cgbg_bench.fm.priors import fit_prior

    fit = np.asarray(positions[:2000], dtype=np.float64)
    prior = fit_prior(fit, mapping)
    members = []
    for k in range(4):
        member = build_peptide_pmf(fit, mapping, prior=prior, seed=seed + k)
        with torch.no_grad():  # the untrained last layer is zero: give the network a say
            member.mlp[-1].weight.normal_(0.0, 0.01, generator=torch.Generator().manual_seed(seed + k))
        members.append(member)
    return CorrectedPMF(PMFEnsemble(members), DihedralCorrection(mapping, 4)).eval()


def _code_key(*parts) -> str:
    """A short hash of ``parts``, the torch version and the source of the model and flow code, so a
    cached stand-in is rebuilt when any of them changes."""
    import hashlib

    import cgbg_bench

    h = hashlib.sha256(repr((parts, torch.__version__)).encode())
    src = Path(cgbg_bench.__file__).parent
    for rel in ("fm/peptide.py", "fm/priors.py", "fm/dihedral_correction.py", "flows/internal.py",
                "cg/zmatrix.py", "cg/mappings.py"):
        h.update((src / rel).read_bytes())
    return h.hexdigest()[:12]


def synthetic_peptide(task: str, n: int, *, n_distinct: int = 50_000, n_ref_blocks: int = 100, seed: int = 0):
    """A stand-in for a peptide task that has not shipped yet (e.g. "ala6-core-beta") with an n-sample
    bank: (Task, path of its PMF_B-shaped PMF, :func:`pmf_b_standin`).

    The bank: ``n_distinct`` samples of an untrained internal-coordinate flow of the task's mapping
    (:func:`benchmarks.bench_proposal.task_flow`'s), repeated up to n (the cost per sample of a real
    bank). The task's observables are the real task's. Cost only, never scores. Built once under
    :func:`cache_dir` (rebuilt when the arguments or the model code change), then loaded.
    """
    import numpy as np

    from cgbg_bench.build.observables import task_observables
    from cgbg_bench.cg.mappings import get_mapping
    from cgbg_bench.task import load_task

    system, representation = task.split("-", 1)
    mapping = get_mapping(system, representation)

    def make(tmp: Path) -> None:
        from benchmarks.bench_proposal import task_flow

        rng = np.random.default_rng(seed)
        distinct, _ = task_flow(task).sample_bank(min(n, n_distinct), seed=seed)
        positions = np.ascontiguousarray(np.tile(distinct, (-(-n // len(distinct)), 1, 1))[:n], dtype=np.float32)
        _write_synthetic(tmp, rng=rng, positions=positions, model=pmf_b_standin(mapping, distinct, seed=seed),
                         pmf_file="fm-biased.pt2", n_ref_blocks=n_ref_blocks, observables=task_observables(mapping),
                         name=f"{task}-synthetic", system=system, representation=representation,
                         description=f"SYNTHETIC stand-in for {task} (untrained flow, random PMF_B-shaped "
                                     "model; cost only, not scores)")

    key = _code_key(n_distinct, n_ref_blocks, seed)
    final = _built_task(cache_dir() / f"{task}-synthetic-v{SYNTHETIC_VERSION}-n{n}-{key}", make)
    return load_task(final / "task.yaml"), final / "fm-biased.pt2"
