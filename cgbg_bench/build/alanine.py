"""Build the alanine-peptide tasks from MD runs: reference, GB rows, IC flows, generated banks.

    cgbg-bench make-task ala2 --unbiased DIR... --static DIR... --metad DIR... \
        [--gb obc1=DIR] [--gb obc2=DIR]
    cgbg-bench make-task --recipe tasks/ala2-core-beta/task.yaml     # rebuild from a recorded recipe

What is built, from which runs (pinned to their chunks) and with which settings is one
:class:`cgbg_bench.build.recipe.BuildRecipe`; every task.yaml written stores it (``recipe:``).

For each CG representation of the system (ala2: heavy-atom and core-beta) and each
proposal variant, it writes ``tasks/<system>-<representation>[-biased]/`` with:
- ``reference.npz``: per-block (phi, psi) histograms of every residue with both angles,
  from the unbiased runs and the exactly reweighted static-bias runs, each kind weighted by
  the inverse variance of its basin populations (cgbg_bench.reference.combine_reference; the
  shares are in the reference's provenance);
- ``gb-<name>.npz``: the implicit-solvent runs' block histograms (unbiased runs as sampled,
  static-bias runs reweighted exactly; baseline rows scored without ESS);
- ``baselines/<system>-<representation>/``: force-matched PMFs on the unbiased runs
  (``fm-unbiased``, PMF_U) and on the biased runs, metadynamics and static-bias
  (``fm-biased``, PMF_B), and the fitted prior alone (``prior-only``, the lower bar), each
  a .pt2 with its training sidecar (.yaml) and an entry in ``baselines.yaml``; shared by
  the plain and the -biased task of that representation;
- ``flow.pt``: an internal-coordinate flow trained on the CG frames of the unbiased runs
  (plain variant) or of the metadynamics and static-bias runs (``-biased``), and in task.yaml the spec and
  fingerprint of the bank generated from it on first use (cgbg_bench.bank);
- ``task.yaml`` with hashes, provenance and the recipe, and ``baseline_scores.json``.
Runs with an evolving bias never enter the reference. Every step is seeded.
"""

from __future__ import annotations

import dataclasses
import logging
from pathlib import Path

import numpy as np
import yaml

from cgbg_bench._io import atomic_savez
from cgbg_bench.bank import bank_cache_path, bank_fingerprint, cache_dir
from cgbg_bench.build.provenance import file_entry, provenance, write_task_yaml
from cgbg_bench.build.observables import reference_columns, task_observables
from cgbg_bench.build.recipe import BuildRecipe, FlowSettings
from cgbg_bench.build.scores import rescore_baselines, with_current_weighting
from cgbg_bench.cg.mappings import BENCHMARK_REPRESENTATIONS, get_mapping
from cgbg_bench.cg.zmatrix import zmatrix_for
from cgbg_bench.errors import UsageError
from cgbg_bench.flows.internal import train_ic_flow
from cgbg_bench.paths import SOURCE_ROOT
from cgbg_bench.provisional import reference_noise
from cgbg_bench.reference import combine_reference, combine_runs, frame_log_weights, load_run_dihedrals
from cgbg_bench.task import ReferenceNoise
from cgbg_bench.units import kT_kj_per_mol
from cgbg_bench.weighting import WEIGHTINGS

log = logging.getLogger(__name__)

__all__ = ["BuildRecipe", "FlowSettings", "build", "refresh_baselines", "refresh_proposals", "refresh_reference",
           "train_flow", "training_frames", "VARIANTS", "FM_BASELINES"]

TEMPERATURE_K = 300.0

# name -> (description, data kind); the data kind picks the runs (see _training_runs)
FM_BASELINES = {
    "fm-unbiased": ("force-matched PMF_U: prior + MLP on the unbiased explicit-solvent runs", "unbiased"),
    "fm-biased": ("force-matched PMF_B: prior + MLP on the metadynamics and static-bias runs "
                  "(forces of the unbiased Hamiltonian)", "biased"),
    "prior-only": ("the fitted prior alone (harmonic bonds/angles, improper, repulsion): the lower bar",
                   "unbiased"),
}


def _repo_root() -> Path:
    """Where a build writes tasks/ and baselines/ by default (run directories are relative to the working directory)."""
    return SOURCE_ROOT


def training_frames(recipe: BuildRecipe, kind: str, representation: str, kT: float) -> tuple[np.ndarray, np.ndarray]:
    """The CG frames (F, n_beads, 3) nm that train a proposal flow of ``kind`` ("unbiased": the
    unbiased runs; "biased": the metadynamics and static-bias runs), each run read up to its pin,
    and their bias log-weights V/kT (:func:`cgbg_bench.reference.frame_log_weights`; zeros for
    unbiased runs). The flow's weighted likelihood takes ``recipe.flow.bias_weight_power`` times
    these."""
    from cgbg_bench.md.production import load_cg

    pins = recipe.pins()
    dirs = _training_runs(recipe, kind)
    frames = [load_cg(d, representation, pins.get(str(d)))["positions_nm"] for d in dirs]
    log_w = [frame_log_weights(d, kT, max_chunks=pins.get(str(d))) for d in dirs]
    for d, f, w in zip(dirs, frames, log_w):
        if len(f) != len(w):
            raise UsageError(f"run {d}: {len(f)} frames but {len(w)} bias energies at frame times")
    return np.concatenate(frames), np.concatenate(log_w)


def train_flow(z, frames: np.ndarray, log_w: np.ndarray, soft, recipe: BuildRecipe):
    """The proposal flow of a task on its training frames, with the recipe's flow settings and
    seed; each frame's likelihood weighted by exp(log_w)^bias_weight_power (none when every
    frame is unbiased or the power is 0: plain maximum likelihood, as up to ala2 v12)."""
    flow = recipe.flow
    weighted = flow.bias_weight_power != 0 and np.any(log_w)
    return train_ic_flow(z, frames, seed=recipe.seeds.flow, soft=soft, epochs=flow.epochs,
                         transforms=flow.transforms, bins=flow.bins, hidden=flow.hidden,
                         batch_size=flow.batch_size, lr=flow.lr, uniform=flow.uniform, mirror=flow.mirror,
                         log_weights=flow.bias_weight_power * log_w if weighted else None)


def _representations(system: str, representations) -> list[str]:
    known = [rep for sys_name, rep in BENCHMARK_REPRESENTATIONS if sys_name == system]
    if representations is not None and (not representations or set(representations) - set(known)):
        raise UsageError(f"representations {list(representations)}: {system} has {known}")
    return [rep for rep in known if representations is None or rep in representations]


def _check_reference_sources(recipe: BuildRecipe) -> None:
    if recipe.reference == "static" and not recipe.static:
        raise UsageError("--reference static needs at least one --static run")
    if not (recipe.unbiased or recipe.static):
        raise UsageError("the reference needs at least one unbiased or static-bias run (--unbiased/--static)")


def _check_new_version(root: Path, recipe: BuildRecipe, rep: str) -> None:
    """Refuse to overwrite a task (plain or -biased) with a version that is not above its current one.

    Except a task of this very version written by this very (pinned) recipe (an earlier run of
    this build that was interrupted after writing it): a rerun of the same recipe rebuilds it.
    """
    for suffix in ("", "-biased"):
        path = root / "tasks" / f"{recipe.system}-{rep}{suffix}" / "task.yaml"
        if path.is_file():
            task = yaml.safe_load(path.read_text())
            current = task.get("version")
            same_build = current == recipe.version and task.get("recipe") == recipe.to_dict()
            if isinstance(current, int) and recipe.version <= current and not same_build:
                raise UsageError(f"{path.parent.name} is version {current}: give --version above it")


def _load_reference_runs(recipe: BuildRecipe):
    """Dihedrals and weights of the (pinned) reference runs and of the implicit-solvent runs."""
    kT, pins = kT_kj_per_mol(TEMPERATURE_K), recipe.pins()
    ref_dirs = recipe.dirs("static") if recipe.reference == "static" else (*recipe.dirs("unbiased"),
                                                                            *recipe.dirs("static"))

    def load(d):
        return load_run_dihedrals(d, kT, discard_ps=recipe.discard_ps, max_chunks=pins[str(d)])

    return [load(d) for d in ref_dirs], {name: [load(Path(r.dir)) for r in runs] for name, runs in recipe.gb.items()}


def _histograms(system: str, rep: str, ref_runs, gb_runs, block_ps: float, basin_block_ps: float):
    """One representation's reference block histograms (with the kinds' shares), GB block histograms,
    and the reference's blocks per run; residues in the task's observable order (scored first)."""
    columns = reference_columns(get_mapping(system, rep))
    ref_blocks, ref_groups = combine_reference(ref_runs, block_ps, columns, basin_block_ps=basin_block_ps)
    log.info("%s-%s: reference kinds %s", system, rep,
             "; ".join(f"{g}: {', '.join(v['runs'])} share {v['share']:.3f}" for g, v in ref_groups.items()))
    gb_hists = {name: combine_runs(runs, block_ps, columns) for name, runs in gb_runs.items()}
    return np.concatenate(ref_blocks), ref_groups, gb_hists, [len(b) for b in ref_blocks]


def _reference_entry(task_dir: Path, command: str, ref_groups) -> dict:
    return file_entry(task_dir / "reference.npz", task_dir, provenance(
        command, None, run_kinds={g: {"runs": v["runs"], "share": round(v["share"], 6)}
                                  for g, v in ref_groups.items()}))


def _gb_description(gb: str, runs) -> str:
    """How a GB row's histogram was made: its runs unweighted, or static-bias runs reweighted."""
    unbiased = [r.group == "unbiased" for r in runs]
    how = ("unbiased runs, unweighted" if all(unbiased) else "static-bias runs reweighted exactly" if not any(unbiased)
           else "unbiased and static-bias runs, the latter reweighted exactly")
    return f"implicit solvent GB {gb.upper()} MD, {how}"


def _write_gb_rows(task_dir: Path, gb_hists, gb_runs, command: str) -> list[dict]:
    """Write the implicit-solvent rows' histograms; returns their task.yaml baseline entries."""
    rows = []
    for gb, hist in gb_hists.items():
        atomic_savez(task_dir / f"gb-{gb}.npz", block_hist=hist)
        rows.append({"name": f"gb-{gb}", "kind": "md-histogram",
                     **file_entry(task_dir / f"gb-{gb}.npz", task_dir, provenance(command, None)),
                     "description": _gb_description(gb, gb_runs[gb])})
    return rows


def _training_runs(recipe: BuildRecipe, kind: str) -> tuple[Path, ...]:
    return recipe.dirs("unbiased") if kind == "unbiased" else (*recipe.dirs("metad"), *recipe.dirs("static"))


def train_fm_baselines(recipe: BuildRecipe, rep: str, out_dir: Path, command: str,
                       names: tuple[str, ...] | None = None) -> list[tuple]:
    """Train and export the force-matching baselines of one representation (``recipe.fm``, the
    pinned runs of ``recipe``); returns (name, description, path) of each.

    ``names``: train only these (a --baselines-only refresh); the others are kept as
    ``out_dir/baselines.yaml`` records them (their files must be there).
    """
    from cgbg_bench._io import atomic_write_text
    from cgbg_bench.fm.pipeline import matching_export, train_and_export

    system, fm, pins = recipe.system, recipe.fm, recipe.pins()
    out_dir.mkdir(parents=True, exist_ok=True)
    kept = {} if names is None else yaml.safe_load((out_dir / "baselines.yaml").read_text())
    meta, entries = {}, []
    for name, (description, kind) in FM_BASELINES.items():
        path = out_dir / f"{name}.pt2"
        if names is not None and name not in names:
            meta[name] = kept[name]
            entries.append((name, kept[name]["description"], path))
            continue
        runs = _training_runs(recipe, kind)
        # the (phi, psi) correction only where the data cover the torus: on the unbiased run, which
        # has crossed phi = 0 once, its normal equations are ill-conditioned and the fitted series
        # blows up at phi > 0 (docs/force-matching.md)
        settings = fm if name == "fm-biased" else dataclasses.replace(fm, dihedral_correction=0)
        side = matching_export(path, command=command, data_dirs=runs, max_chunks=pins,
                               settings=settings, prior_only=name == "prior-only")
        if side is not None:
            log.info("%s-%s: reusing baseline %s: %s was made by this command from the same data "
                     "(an earlier, interrupted run of this build)", system, rep, name, path)
        else:
            log.info("%s-%s: training baseline %s on %d run(s)", system, rep, name, len(runs))
            side = train_and_export(system, rep, runs, path, settings=settings, prior_only=name == "prior-only",
                                    command=command, log=log.info, max_chunks=pins,
                                    checkpoint_dir=cache_dir() / "fm-members")
        rmse = side["force_rmse_kj_per_mol_nm"]
        if name != "prior-only" and fm.n_models > 1:
            description = description.replace("prior + MLP", f"mean of {fm.n_models} x (prior + MLP)", 1)
        if settings.dihedral_correction:
            description = description.replace(
                " on the ", f" + order-{settings.dihedral_correction} (phi, psi) Fourier correction on the ", 1)
        meta[name] = {"file": path.name, "description": description, "command": command,
                      "training": {"data_kind": kind, "data": [str(d) for d in runs], "seed": fm.seed,
                                   "sidecar": f"{name}.yaml", "val_force_rmse": rmse["val"],
                                   "prior_val_force_rmse": rmse["prior_val"],
                                   "n_parameters": side["model"]["n_parameters"],
                                   "n_models": side["settings"].get("n_models", 1),
                                   **({"dihedral_correction": settings.dihedral_correction}
                                      if settings.dihedral_correction else {}),
                                   **({} if side["training"] is None else
                                      {"epochs": side["training"]["epochs"],
                                       "best_epoch": side["training"]["best_epoch"]})}}
        entries.append((name, description, path))
    atomic_write_text(out_dir / "baselines.yaml", yaml.safe_dump(meta, sort_keys=False))
    return entries


def build(recipe: BuildRecipe, *, root: Path | None = None) -> list[Path]:
    """Build every task of ``recipe.system`` (or only those of ``recipe.representations``); returns
    the task folders written.

    ``root``: where tasks/ and baselines/ are written (default: the repository). Every run of the
    recipe that is not pinned is pinned to the chunks finished now (runs may go on while the build
    reads them); the pinned recipe is stored in each task.yaml (``recipe:``). ``recipe.reference``:
    "all" (unbiased and static-bias runs, each kind weighted by the inverse variance of its basin
    populations over ``recipe.basin_block_ps`` blocks, :func:`cgbg_bench.reference.combine_reference`;
    up to task version 7 they were pooled by Kish effective size, which let an unbiased run that had
    hardly crossed to the rare basins dominate) or "static" (static-bias runs only, as in version 7).
    """
    _check_reference_sources(recipe)
    if not recipe.unbiased or not recipe.metad:
        raise UsageError("both proposal variants need training data: --unbiased and --metad runs")
    system = recipe.system
    root = root or _repo_root()
    reps = _representations(system, recipe.representations)  # an unknown representation is refused first
    recipe = recipe.pinned_now()
    command = recipe.command()
    for rep in reps:
        _check_new_version(root, recipe, rep)
    log.info("build command (make-task --recipe with a task.yaml it wrote resumes an interrupted build): %s",
             command)
    ref_runs, gb_runs = _load_reference_runs(recipe)
    written = []
    for rep in reps:
        mapping = get_mapping(system, rep)
        reference, ref_groups, gb_hists, ref_runs_blocks = _histograms(system, rep, ref_runs, gb_runs,
                                                                       recipe.block_ps, recipe.basin_block_ps)
        observables = task_observables(mapping)
        noise = reference_noise(system, observables[0]["name"], reference, ref_runs_blocks)
        log.info("%s-%s: %s", system, rep, ReferenceNoise(**noise).describe())
        fm_entries = train_fm_baselines(recipe, rep, root / "baselines" / f"{system}-{rep}", command)
        for suffix, data_kind in VARIANTS.items():
            kind = "unbiased" if data_kind == "unbiased" else "biased (metadynamics and static-bias)"
            name = f"{system}-{rep}{suffix}"
            task_dir = root / "tasks" / name
            task_dir.mkdir(parents=True, exist_ok=True)
            atomic_savez(task_dir / "reference.npz", block_hist=reference, exact=np.array(False))
            baselines = [{"name": name, "kind": "pmf",
                          **file_entry(path, task_dir, provenance(command, recipe.fm.seed)),
                          "description": description} for name, description, path in fm_entries]
            baselines += _write_gb_rows(task_dir, gb_hists, gb_runs, command)
            report, train_dirs, fingerprint, positions, log_q = _train_and_sample(task_dir, recipe, rep,
                                                                                  data_kind, name)
            data = _task_yaml(name, recipe, rep, mapping, task_dir, command, kind, report, fingerprint, baselines,
                              train_dirs, ref_groups, noise)
            write_task_yaml(task_dir, data)
            _prime_cache(task_dir, positions, log_q)
            if baselines:
                rescore_baselines(task_dir, command=command)
            written.append(task_dir)
    return written


def _intact_task(task_dir: Path, version: int, refresh_flag: str):
    """The task in ``task_dir``, for a refresh to ``version``: it exists, is below that version and
    every file it lists passes its hash check (a mismatch raises and names the file)."""
    from cgbg_bench.task import load_task

    if not (task_dir / "task.yaml").is_file():
        raise UsageError(f"{task_dir}: no task.yaml; build the task first (make-task without {refresh_flag})")
    task = load_task(task_dir / "task.yaml")
    if version <= task.version:
        raise UsageError(f"{task.name} is version {task.version}: give --version above it")
    for f in (task.proposal, task.reference, *(b.file for b in task.baselines)):
        f.verify()
    return task


def _refresh_base(task_dir: Path, recipe: BuildRecipe, flag: str, own: tuple[str, ...], what: str):
    """(task, its stored recipe) for a ``flag`` refresh of ``task_dir`` to ``recipe``: the task is
    intact and below ``recipe.version`` (:func:`_intact_task`), records a recipe, and that recipe has
    ``recipe``'s runs and pins and differs from it only in the fields ``own`` (``what``, in words),
    the version and the representations; otherwise a UsageError says what to do."""
    task = _intact_task(task_dir, recipe.version, flag)
    data = yaml.safe_load((task_dir / "task.yaml").read_text())
    if data.get("recipe") is None:
        raise UsageError(f"{task.name} records no recipe: rebuild it (make-task without {flag})")
    old = BuildRecipe.from_dict(data["recipe"], where=f"{task_dir / 'task.yaml'}: recipe")
    if old.all_runs() != recipe.all_runs():
        raise UsageError(f"{task.name}: {flag} keeps the task's data; its runs and pins are "
                         f"{[(r.dir, r.chunks) for r in old.all_runs()]}, this recipe's "
                         f"{[(r.dir, r.chunks) for r in recipe.all_runs()]} (build from "
                         f"--recipe {task_dir / 'task.yaml'})")
    kept = old.to_dict()
    given = dataclasses.replace(recipe, version=old.version, representations=old.representations,
                                **{name: getattr(old, name) for name in own}).to_dict()
    ignored = sorted(k for k in kept if kept[k] != given[k])
    if ignored:
        raise UsageError(f"{task.name}: {flag} changes only {what}; this recipe also changes "
                         f"{', '.join(ignored)} (build without {flag})")
    return task, old


def refresh_reference(recipe: BuildRecipe, *, root: Path | None = None) -> list[Path]:
    """New task version (``recipe.version``) with only the reference and the GB rows rebuilt (from
    more MD, the recipe's unbiased, static-bias and GB runs); returns the folders.

    The proposal flow and the force-matched baselines stay as they are (their provenance still
    names the command that trained them; the recipe's metadynamics runs and training settings are
    not read); the reference and GB entries record this refresh's command, and every baseline is
    rescored against the new reference. Each task's stored recipe gets the refreshed reference's
    runs, pins and settings (so ``make-task --recipe`` of it rebuilds the whole task, flows and
    baselines trained anew on those runs). Refuses, before writing anything, a version that is not
    above each task's current one, a task folder that is missing or fails its hash checks, GB rows
    other than the task's, and a bank that does not reproduce its fingerprint (each bank is
    generated, or found in the cache, first). Interrupted while writing, a task can be left
    half-refreshed (a new reference.npz whose hash task.yaml does not record yet): restore the task
    folders from git (``git checkout tasks/``) and run it again.
    """
    from cgbg_bench.bank import generated_bank

    _check_reference_sources(recipe)
    system = recipe.system
    reps = _representations(system, recipe.representations)
    root = root or _repo_root()
    tasks = {}
    for rep in reps:
        for suffix in ("", "-biased"):
            task_dir = root / "tasks" / f"{system}-{rep}{suffix}"
            task = _intact_task(task_dir, recipe.version, "--reference-only")
            order = [o["name"] for o in task_observables(get_mapping(system, rep))]
            if [o.name for o in task.observables] != order:
                raise UsageError(f"{task.name} has observables {[o.name for o in task.observables]}, this build "
                                 f"orders them {order} (scored residue first): rebuild it (make-task without "
                                 "--reference-only)")
            gb = sorted(b.name for b in task.baselines if b.kind == "md-histogram")
            if gb != sorted(f"gb-{name}" for name in recipe.gb):
                raise UsageError(f"{task.name} has GB rows {gb}; give exactly these with --gb "
                                 f"(got {sorted(recipe.gb)})")
            tasks[task_dir] = rep
            generated_bank(task)  # the rescoring needs every bank: generate (or load) them before writing
    # the metadynamics runs are not read: they keep the pins (or not) they have
    recipe = recipe.with_reference_of(dataclasses.replace(recipe, metad=()).pinned_now())
    command = recipe.command(reference_only=True)
    ref_runs, gb_runs = _load_reference_runs(recipe)
    hists = {rep: _histograms(system, rep, ref_runs, gb_runs, recipe.block_ps, recipe.basin_block_ps)
             for rep in reps}
    for task_dir, rep in tasks.items():
        reference, ref_groups, gb_hists, ref_runs_blocks = hists[rep]
        data = yaml.safe_load((task_dir / "task.yaml").read_text())
        atomic_savez(task_dir / "reference.npz", block_hist=reference, exact=np.array(False))
        gb_rows = {row["name"]: row for row in _write_gb_rows(task_dir, gb_hists, gb_runs, command)}
        data["version"] = recipe.version
        data["metrics"] = with_current_weighting(data["metrics"])  # a refresh takes up the current weighting
        data["reference"] = _reference_entry(task_dir, command, ref_groups)
        data["reference_noise"] = reference_noise(system, data["observables"][0]["name"], reference, ref_runs_blocks)
        data["baselines"] = [gb_rows.get(b["name"], b) for b in data["baselines"]]
        data.pop("baseline_scores", None)  # rescored below against the new reference
        if data.get("recipe") is not None:
            old = BuildRecipe.from_dict(data["recipe"], where=f"{task_dir / 'task.yaml'}: recipe")
            data["recipe"] = old.with_reference_of(recipe).to_dict()
        write_task_yaml(task_dir, data)
        log.info("%s: reference refreshed to version %d; rescoring its baselines", task_dir.name, recipe.version)
        rescore_baselines(task_dir, command=command)
    return list(tasks)


def _proposal_entry(task_dir: Path, recipe: BuildRecipe, command: str, report: dict, train_dirs,
                    fingerprint: dict) -> dict:
    return {
        **file_entry(task_dir / "flow.pt", task_dir, provenance(
            command, recipe.seeds.flow, flow_training={k: v for k, v in report.items() if k != "seed"},
            training_data=[str(d) for d in train_dirs])),
        "generate": {"generator": "ic-flow", "n_samples": recipe.bank_size, "seed": recipe.seeds.bank,
                     "fingerprint": fingerprint, "rtol": 1e-5},
    }


def _train_and_sample(task_dir: Path, recipe: BuildRecipe, rep: str, data_kind: str, name: str):
    """Train a task's flow (saved to flow.pt) and draw its bank: (report, train_dirs, fingerprint,
    positions, log q)."""
    mapping = get_mapping(recipe.system, rep)
    z = zmatrix_for(mapping)
    soft = [z.dihedral_index(q) for q in mapping.phi + mapping.psi]  # the flows' multi-basin dihedrals
    train_dirs = _training_runs(recipe, data_kind)
    frames, log_w = training_frames(recipe, data_kind, rep, kT_kj_per_mol(TEMPERATURE_K))
    log.info("%s: training the IC flow on %d %s frames", name, len(frames), data_kind)
    model, report = train_flow(z, frames, log_w, soft, recipe)
    n_phi = len(mapping.phi)  # soft = phi of every residue, then psi
    log.info("%s: frames with phi > 0 per residue, flow training / validation part: %s / %s", name,
             report["soft_positive_frames"]["train"][:n_phi], report["soft_positive_frames"]["val"][:n_phi])
    log.info("%s: generating the %d-sample bank for its fingerprint", name, recipe.bank_size)
    positions, log_q = model.sample_bank(recipe.bank_size, seed=recipe.seeds.bank)
    model.save(task_dir / "flow.pt")  # only now: an interrupted training or sampling leaves the old flow
    return report, train_dirs, bank_fingerprint(positions, log_q), positions, log_q


#: proposal variants: task-name suffix -> the data that train its flow
VARIANTS = {"": "unbiased", "-biased": "biased"}


def refresh_proposals(recipe: BuildRecipe, *, variants: tuple[str, ...] = ("unbiased", "biased"),
                      root: Path | None = None) -> list[Path]:
    """New task version (``recipe.version``) with only the proposal flows retrained, with the
    recipe's flow settings, seeds and bank size, on the training runs the task recorded; returns
    the folders.

    ``variants``: which proposals ("unbiased": the plain tasks, "biased": the -biased tasks).
    The reference, the GB rows and the force-matched baselines stay as they are; every baseline
    is rescored on the new bank and the resolution measured again. Each task's stored recipe takes
    the new flow settings, seeds and bank size (so ``make-task --recipe`` of it rebuilds the whole
    task as it now is). Refuses, before writing anything, a version that is not above each task's
    current one, a task folder that is missing, fails its hash checks or records no recipe, and a
    recipe whose runs or pins are not the task's. Interrupted while writing, a task can be left
    half-refreshed: restore the task folders from git (``git checkout tasks/``) and run it again.
    """

    unknown = sorted(set(variants) - set(VARIANTS.values()))
    if unknown or not variants:
        raise UsageError(f"proposal variants {list(variants)}: choose from {list(VARIANTS.values())}")
    system = recipe.system
    reps = _representations(system, recipe.representations)
    root = root or _repo_root()
    tasks = {}
    for rep in reps:
        for suffix, data_kind in VARIANTS.items():
            if data_kind not in variants:
                continue
            task_dir = root / "tasks" / f"{system}-{rep}{suffix}"
            _, old = _refresh_base(task_dir, recipe, "--proposal-only", ("flow", "seeds", "bank_size"),
                                   "the flows, seeds and bank size")
            tasks[task_dir] = (rep, data_kind, old)
    written = []
    for task_dir, (rep, data_kind, old) in tasks.items():
        new = old.with_proposal_of(recipe)
        command = new.command(proposal_only=True)
        report, train_dirs, fingerprint, positions, log_q = _train_and_sample(task_dir, new, rep, data_kind,
                                                                              task_dir.name)
        try:
            data = yaml.safe_load((task_dir / "task.yaml").read_text())
            data["version"] = recipe.version
            data["metrics"] = with_current_weighting(data["metrics"])
            data["proposal"] = _proposal_entry(task_dir, new, command, report, train_dirs, fingerprint)
            data.pop("baseline_scores", None)  # rescored below on the new bank
            data["recipe"] = new.to_dict()
            write_task_yaml(task_dir, data)
            _prime_cache(task_dir, positions, log_q)
            log.info("%s: proposal retrained for version %d; rescoring its baselines", task_dir.name,
                     recipe.version)
            rescore_baselines(task_dir, command=command)
        except BaseException:
            log.error("%s is left half-refreshed (a new flow.pt without its scores): restore it with "
                      "`git checkout -- %s` and run the refresh again", task_dir.name, task_dir)
            raise
        written.append(task_dir)
    return written


def refresh_baselines(recipe: BuildRecipe, *, names: tuple[str, ...] = (), root: Path | None = None) -> list[Path]:
    """New task version (``recipe.version``) with only the force-matched baselines retrained, with
    the recipe's force-matching settings, on the runs and chunks the task recorded; returns the
    folders.

    ``names``: the baselines to retrain (of :data:`FM_BASELINES`; empty: all). A representation's
    baselines are shared by its plain and -biased task, so both get the new version. Proposal
    flows, banks, reference and GB rows stay as they are; every baseline is rescored. The runs are
    the recipe's as the task stores it: after a --reference-only refresh these are the reference's
    pins, which may hold more chunks than the kept baselines were trained on. Each task's stored
    recipe takes the new force-matching settings whole (so ``make-task --recipe`` of it rebuilds
    the whole task with them, every baseline included); a baseline that is kept keeps its own
    provenance (its sidecar's command, settings and data), which may then differ from the recipe.
    Build from the refreshed representation's own task.yaml: its force-matching settings are the
    ones changed. The proposal settings (flow, seeds, bank size) of ``recipe`` are not read, each
    variant keeps its own. Refuses, before training anything, an unknown baseline, a version
    that is not above each task's current one, a task folder that is missing, fails its hash
    checks or records no recipe, a recipe whose runs or pins are not the task's, and a recipe
    that changes more than the force-matching settings. Interrupted while writing, a
    representation can be left half-refreshed (new baseline files that its task.yaml files do not
    record yet): restore them from git (the error names the folders) and run it again.
    """
    from cgbg_bench.bank import generated_bank

    unknown = sorted(set(names) - set(FM_BASELINES))
    if unknown:
        raise UsageError(f"baselines {unknown}: the force-matched ones are {list(FM_BASELINES)}")
    retrained = names or tuple(FM_BASELINES)
    kept = set(FM_BASELINES) - set(retrained)
    system = recipe.system
    reps = _representations(system, recipe.representations)
    root = root or _repo_root()
    plan = {}
    for rep in reps:
        olds = []
        for suffix in VARIANTS:
            task_dir = root / "tasks" / f"{system}-{rep}{suffix}"
            # the proposal settings are each variant's own (the -biased flow weighs its frames) and not read
            task, old = _refresh_base(task_dir, recipe, "--baselines-only", ("fm", "flow", "seeds", "bank_size"),
                                      "the force-matching settings")
            olds.append((task_dir, old))
            generated_bank(task)  # the rescoring needs every bank: generate (or load) them before training
        out_dir = root / "baselines" / f"{system}-{rep}"
        listed = yaml.safe_load((out_dir / "baselines.yaml").read_text()) if (out_dir / "baselines.yaml").is_file() \
            else None
        missing = sorted(n for n in kept if n not in (listed or {}) or not (out_dir / f"{n}.pt2").is_file())
        if missing:
            raise UsageError(f"{out_dir}: no baselines.yaml entry or file for the kept baselines {missing}; "
                             "retrain them too (--baseline) or rebuild the task")
        plan[rep] = olds
    written = []
    for rep, olds in plan.items():
        out_dir = root / "baselines" / f"{system}-{rep}"
        new = olds[0][1].with_baselines_of(recipe)
        command = new.command(baselines_only=names)
        entries = {name: (description, path) for name, description, path in
                   train_fm_baselines(new, rep, out_dir, command, names=retrained)}
        for task_dir, old in olds:
            try:
                data = yaml.safe_load((task_dir / "task.yaml").read_text())
                data["version"] = recipe.version
                data["metrics"] = with_current_weighting(data["metrics"])
                for i, b in enumerate(data["baselines"]):
                    if b["name"] in retrained:
                        description, path = entries[b["name"]]
                        data["baselines"][i] = {"name": b["name"], "kind": "pmf",
                                                **file_entry(path, task_dir, provenance(command, new.fm.seed)),
                                                "description": description}
                data.pop("baseline_scores", None)  # rescored below, with the resolution
                data.pop("resolution", None)
                data["recipe"] = old.with_baselines_of(recipe).to_dict()
                write_task_yaml(task_dir, data)
                log.info("%s: baselines %s retrained for version %d; rescoring its baselines", task_dir.name,
                         ", ".join(retrained), recipe.version)
                rescore_baselines(task_dir, command=command)
            except BaseException:
                folders = " ".join(str(p) for p in (*(d for d, _ in olds), out_dir))
                log.error("%s is left half-refreshed: restore the baselines and both tasks that share them with "
                          "`git checkout -- %s` and run the refresh again", task_dir.name, folders)
                raise
            written.append(task_dir)
    return written


def _prime_cache(task_dir: Path, positions, log_q) -> None:
    """Put the bank just generated into the cache so the first evaluation does not redo it."""
    from cgbg_bench.task import load_task

    task = load_task(task_dir / "task.yaml")
    atomic_savez(bank_cache_path(task), compressed=False, positions=positions, log_q=log_q)


def _task_yaml(name, recipe: BuildRecipe, rep, mapping, task_dir, command, kind, report, fingerprint,
               baselines, train_dirs, ref_groups, noise) -> dict:
    n, system = mapping.n_beads, recipe.system
    return {
        "name": name,
        "version": recipe.version,
        "description": f"{system} {rep} CG ({n} beads), explicit-solvent reference; proposal flow trained on "
                       f"{kind} MD.",
        "system": system,
        "representation": rep,
        "n_beads": n,
        "input_shape": [n, 3],
        "energy_unit": "kJ/mol",
        "temperature_kelvin": TEMPERATURE_K,
        "kT": kT_kj_per_mol(TEMPERATURE_K),
        "observables": task_observables(mapping),  # the scored residue first: the headline
        "metrics": {"weighting": WEIGHTINGS[0], "n_bootstrap": 500, "proposal_blocks": 200},
        "proposal": _proposal_entry(task_dir, recipe, command, report, train_dirs, fingerprint),
        "reference": _reference_entry(task_dir, command, ref_groups),
        "reference_noise": noise,
        "baselines": baselines,
        "recipe": recipe.to_dict(),
    }
