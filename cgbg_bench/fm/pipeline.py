"""Train a CG peptide PMF by force matching on MD runs and export it with its sidecar.

One function, :func:`train_and_export`, used by ``cgbg-bench train-pmf`` and by the
task builder (baseline PMFs of the alanine tasks). Writes PATH.pt2 and PATH.yaml
(training command, data runs with chunk count and sha256, seed, settings, parameter
count, train/validation force RMSE of the model and of the prior alone, the fitted
prior, versions).
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import math
from dataclasses import dataclass, field
from pathlib import Path

__all__ = ["FMSettings", "train_and_export", "matching_export", "sidecar_path", "FORMAT", "DATA_KINDS",
           "runs_for"]

FORMAT = "cgbg-bench force-matching pmf v1"

# `--data unbiased|biased`: the conventional run folders under data/<system>/
DATA_KINDS = {"unbiased": ("explicit-unbiased",),
              "biased": ("explicit-wtmetad", "explicit-static", "explicit-static-2")}


@dataclass(frozen=True)
class FMSettings:
    seed: int = 0
    max_epochs: int = 200
    patience: int = 20
    lr: float = 1e-3
    batch_size: int = 128
    block_ps: float = 100.0
    val_fraction: float = 0.2
    n_rbf: int = 16
    hidden: tuple[int, ...] = field(default=(128, 128))
    lr_halve_after: int | None = 5  # halve lr after this many epochs without a better val error (None: constant)
    n_models: int = 1  # > 1: the mean of that many networks (seeds seed, seed + 1, ...) on one split
    repulsion_power: int = 6  # the prior's repulsion eps (sigma / r)^power
    weight_decay: float = 0.0  # Adam's (not on the command line)
    dihedral_correction: int = 0  # > 0: order of the (phi, psi) Fourier correction fitted after the networks


def sidecar_path(out) -> Path:
    return Path(out).with_suffix(".yaml")


def _expected_settings(settings: FMSettings, prior_only: bool) -> dict:
    """The sidecar's ``settings`` entries that ``settings`` fixes (all but the data's temperature)."""
    from cgbg_bench.fm.peptide import training_settings

    return training_settings(settings, prior_only=prior_only, temperature_kelvin=None)


def matching_export(out, *, command: str, data_dirs, max_chunks: dict | None = None,
                    settings: FMSettings = FMSettings(), prior_only: bool = False) -> dict | None:
    """The sidecar of the export at ``out`` if ``command`` made it from the same data, else None.

    What lets an interrupted task build resume without retraining the baselines it finished:
    the export and its sidecar exist, the sidecar is of this format and complete, it records
    exactly ``command`` and the training ``settings`` (seed, epochs, widths, ...: the command
    does not spell them all out), the file's sha256 is the one recorded, and every data run's
    chunk count and chunk sha256 (the first ``max_chunks[dir]`` chunks, else all finished ones)
    are those the sidecar records, in the same order. Anything else (a missing or damaged file,
    other data or settings, another command) returns None: the caller retrains. The code is
    not compared: a change to the force-matching code between the two runs is not detected
    (delete the export to retrain it).
    """
    import yaml

    from cgbg_bench._io import sha256_file
    from cgbg_bench.fm.peptide import _chunks_sha256
    from cgbg_bench.md.production import chunk_paths

    out, data_dirs = Path(out), list(data_dirs)
    side_path = sidecar_path(out)
    if not (out.is_file() and side_path.is_file()):
        return None
    try:
        side = yaml.safe_load(side_path.read_text())
    except (yaml.YAMLError, UnicodeDecodeError):
        return None
    if not isinstance(side, dict) or side.get("format") != FORMAT or side.get("command") != command:
        return None
    rmse, model, recorded_settings = (side.get(k) for k in ("force_rmse_kj_per_mol_nm", "model", "settings"))
    if not (isinstance(rmse, dict) and {"val", "prior_val"} <= set(rmse) and isinstance(model, dict)
            and "n_parameters" in model and isinstance(recorded_settings, dict)
            and (prior_only or isinstance(side.get("training"), dict))):
        return None  # incomplete: not what train_and_export writes
    expected = _expected_settings(settings, prior_only)
    if {k: v for k, v in recorded_settings.items() if k != "temperature_kelvin"} != expected:
        return None  # another setting, or one recorded that these settings do not have
    if model.get("sha256") != sha256_file(out):
        return None
    recorded = side.get("data")
    if not isinstance(recorded, list) or len(recorded) != len(data_dirs):
        return None
    for d, rec in zip(data_dirs, recorded):
        n = (max_chunks or {}).get(str(d))
        paths = chunk_paths(Path(d))
        paths = paths if n is None else paths[:n]
        if not isinstance(rec, dict) or (rec.get("dir"), rec.get("n_chunks"), rec.get("chunks_sha256")) != (
                str(d), len(paths), _chunks_sha256(paths)):
            return None
    return side


def runs_for(kind: str, system: str, root: Path) -> list[Path]:
    """The run folders of a data kind ('unbiased' or 'biased') that exist under root/data/system."""
    from cgbg_bench.errors import DataError

    if kind not in DATA_KINDS:
        raise DataError(f"--data {kind!r}: expected run directories or one of {sorted(DATA_KINDS)}")
    dirs = [root / "data" / system / name for name in DATA_KINDS[kind]]
    found = [d for d in dirs if (d / "run.json").exists()]
    if not found:
        raise DataError(f"--data {kind}: none of {', '.join(map(str, dirs))} is a run directory; "
                        "make them with `cgbg-bench md run` (docs/md.md) or pass the directories")
    return found


def train_and_export(system: str, representation: str, data_dirs, out, *, settings: FMSettings = FMSettings(),
                     prior_only: bool = False, command: str, log=print, max_chunks: dict | None = None,
                     checkpoint_dir=None, progress: bool = False) -> dict:
    """Fit the prior and the network on the runs, export ``out`` (.pt2) and its sidecar; return the sidecar.

    ``checkpoint_dir``: keep each ensemble member there as soon as it is trained, so that a
    rerun after an interruption resumes at the member it was on (:func:`train_peptide_pmf`);
    the member files are removed once ``out`` and its sidecar are written. ``progress``: show
    the epochs of each network as they run (:mod:`cgbg_bench.progress`).
    """
    import torch
    import yaml

    import cgbg_bench
    from cgbg_bench._io import atomic_write_text, sha256_file
    from cgbg_bench.errors import DataError
    from cgbg_bench.fm.peptide import export_peptide_pmf, load_training_data, train_peptide_pmf

    out = Path(out)
    if out.suffix != ".pt2":
        raise DataError(f"--out {out}: the model is saved as a torch.export program; use the suffix .pt2")
    data = load_training_data(data_dirs, representation, system=system, block_ps=settings.block_ps,
                              max_chunks=max_chunks)
    log(f"data: {len(data.positions)} frames of {data.mapping.name} from {len(data.sources)} run(s), "
        f"{len(set(data.block_ids.tolist()))} blocks of {settings.block_ps:g} ps")
    for src in data.sources:
        log(f"  {src['dir']}: {src['n_chunks']} chunks, {src['n_frames']} frames ({src['ns']:g} ns, "
            f"bias {src['bias']})")
    # a prior-only fit has no network to correct
    fit = dataclasses.replace(settings, dihedral_correction=0) if prior_only else settings
    result = train_peptide_pmf(data, fit, prior_only=prior_only, checkpoint_dir=checkpoint_dir, progress=progress)
    # a few frames spread over the data as the export example
    example = data.positions[:: max(1, len(data.positions) // 7)][:7]
    out.parent.mkdir(parents=True, exist_ok=True)
    export_peptide_pmf(result.model, example, out)
    rep = result.report
    kind = ("prior" if prior_only else
            "prior + MLP(RBF pair distances, cos/sin Z-matrix dihedrals)" if settings.n_models == 1 else
            f"mean of {settings.n_models} x (prior + MLP(RBF pair distances, cos/sin Z-matrix dihedrals))")
    if result.dihedral_correction:
        kind += f" + order-{settings.dihedral_correction} Fourier series in each residue's (phi, psi)"
    sidecar = {
        "format": FORMAT,
        "created": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
        "command": command,
        "model": {"path": out.name, "sha256": sha256_file(out),
                  "kind": kind,
                  "system": system, "representation": representation,
                  "n_beads": data.mapping.n_beads, "input": "(B, n_beads, 3) float32 nm",
                  "output": "(B,) kJ/mol", "n_parameters": result.n_parameters},
        "data": [dict(s) for s in data.sources],
        "seed": settings.seed,
        "settings": result.settings,
        "force_rmse_kj_per_mol_nm": {
            "train": round(result.train_force_rmse, 4), "val": round(result.val_force_rmse, 4),
            "prior_train": round(result.prior_train_force_rmse, 4),
            "prior_val": round(result.prior_val_force_rmse, 4),
            "note": "RMS per force component on the time-block split; mapped forces carry a large "
                    "irreducible noise, so compare val with prior_val",
        },
        "training": None if rep is None else {
            "epochs": rep.epochs, "best_epoch": rep.best_epoch, "stopped_early": rep.stopped_early,
            "n_train": rep.n_train, "n_val": rep.n_val, "val_blocks": list(rep.val_blocks),
            "final_lr": rep.final_lr,
            "val_force_rmse_per_epoch": [round(math.sqrt(v), 4) for v in rep.val_mse_history],
            **({} if len(result.members) < 2 else {"members": [
                {"seed": m.seed, "epochs": m.epochs, "best_epoch": m.best_epoch, "final_lr": m.final_lr,
                 "val_force_rmse": round(m.val_force_rmse, 4), "train_force_rmse": round(m.train_force_rmse, 4)}
                for m in result.members]})},
        "dihedral_correction": None if result.dihedral_correction is None else {
            **{k: round(v, 4) if isinstance(v, float) else v for k, v in result.dihedral_correction.items()},
            "note": "least squares on the networks' force residuals, on every frame (validation blocks "
                    "included): the val RMSE above is not held out; val_force_rmse_fitted_on_train_blocks "
                    "is, for a correction fitted on the training blocks only"},
        "prior": (result.model if prior_only else result.model.prior).to_dict(),
        "versions": {"cgbg_bench": cgbg_bench.__version__, "torch": str(torch.__version__)},
    }
    atomic_write_text(sidecar_path(out), yaml.safe_dump(sidecar, sort_keys=False))
    for path in result.checkpoints:
        path.unlink(missing_ok=True)
    log(f"force RMSE (kJ/mol/nm): val {result.val_force_rmse:.2f} (prior alone {result.prior_val_force_rmse:.2f}), "
        f"train {result.train_force_rmse:.2f} (prior alone {result.prior_train_force_rmse:.2f})")
    if rep is not None:
        log(f"epochs {rep.epochs} (best {rep.best_epoch}), {result.n_parameters} parameters")
    log(f"wrote {out} and {sidecar_path(out)}")
    return sidecar


