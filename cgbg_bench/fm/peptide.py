"""CG peptide PMFs by force matching: the energy model, data loading, training, export.

Model (:class:`PeptidePMF`): U(R) = U_prior(R) + kT * MLP(features(R)), R (B, n_beads, 3)
nm -> (B,) kJ/mol. Features are internal (so U is invariant to rotation and translation
of the input):

- every pair distance r_ij, expanded in ``n_rbf`` Gaussians whose centres span that
  pair's range in the training data (padded by 10% each side; width = centre spacing),
  so stiff and floppy pairs are both resolved and the features vanish far outside
  the data, where the prior takes over;
- cos and sin of every dihedral of the chain's Z-matrix (phi/psi, impropers,
  omegas). Distances alone cannot tell a configuration from its mirror image; the
  signed dihedrals can (chirality).

The MLP uses SiLU (U and the forces are smooth); its last layer starts at zero, so an
untrained model is the prior. The prior (:mod:`cgbg_bench.fm.priors`) is fitted from
the same data and is not trained. The network learns the correction to the prior.

Training glue: :func:`load_training_data` (run directories -> CG positions, unbiased
forces and time-block ids), :func:`train_peptide_pmf` (prior fit, then
:func:`cgbg_bench.fm.train_force_matching`), :func:`export_peptide_pmf` (.pt2 with a
dynamic batch dimension, loaded back and checked before it is put in place).
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
import types
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import torch
from torch import nn

from cgbg_bench.cg.mappings import CGMapping
from cgbg_bench.cg.zmatrix import zmatrix_for
from cgbg_bench.errors import DataError
from cgbg_bench.fm.priors import PeptidePrior, fit_prior
from cgbg_bench.fm.train import FMReport, block_split, force_mse, train_force_matching
from cgbg_bench.units import kT_kj_per_mol

if TYPE_CHECKING:
    from cgbg_bench.fm.pipeline import FMSettings

__all__ = [
    "PeptidePMF",
    "PMFEnsemble",
    "PeptideData",
    "build_peptide_pmf",
    "load_training_data",
    "train_peptide_pmf",
    "export_peptide_pmf",
    "TrainResult",
]


class PeptidePMF(nn.Module):
    """Prior plus a learned correction: (B, n_beads, 3) float32 nm -> (B,) kJ/mol.

    Build it from data with :func:`build_peptide_pmf`. ``rbf_lo``/``rbf_hi`` (n_pairs,)
    are the per-pair centre ranges in nm; ``kT_kj_per_mol`` scales the network output
    (the MLP works in units of kT). ``seed`` initializes the weights from a private RNG.
    """

    def __init__(
        self,
        mapping: CGMapping,
        prior: PeptidePrior | None,
        *,
        rbf_lo,
        rbf_hi,
        n_rbf: int = 16,
        hidden: tuple[int, ...] = (128, 128),
        kT_kj_per_mol: float = kT_kj_per_mol(300.0),
        seed: int = 0,
    ):
        super().__init__()
        if n_rbf < 2:
            raise DataError(f"n_rbf must be >= 2, got {n_rbf}")
        self.mapping = mapping
        self.zmatrix = zmatrix_for(mapping)
        self.prior = prior
        n = mapping.n_beads
        iu = np.triu_indices(n, k=1)
        lo = np.asarray(rbf_lo, dtype=np.float64)
        hi = np.asarray(rbf_hi, dtype=np.float64)
        if lo.shape != (iu[0].size,) or hi.shape != lo.shape or not np.all(hi > lo):
            raise DataError(f"rbf_lo/rbf_hi must be ({iu[0].size},) with hi > lo")
        centres = lo[:, None] + (hi - lo)[:, None] * np.linspace(0.0, 1.0, n_rbf)[None, :]
        width = (hi - lo) / (n_rbf - 1)
        self.register_buffer("pair_i", torch.as_tensor(iu[0].copy()))
        self.register_buffer("pair_j", torch.as_tensor(iu[1].copy()))
        self.register_buffer("rbf_centres", torch.as_tensor(centres, dtype=torch.float32))
        self.register_buffer("rbf_inv_two_var", torch.as_tensor(1.0 / (2.0 * width**2), dtype=torch.float32))
        self.register_buffer("energy_scale", torch.tensor(float(kT_kj_per_mol), dtype=torch.float32))
        self.config = {"n_rbf": int(n_rbf), "hidden": [int(h) for h in hidden], "seed": int(seed)}
        n_in = iu[0].size * n_rbf + 2 * self.zmatrix.n_dihedrals

        def build() -> nn.Sequential:
            layers: list[nn.Module] = []
            width_in = n_in
            for h in hidden:
                layers += [nn.Linear(width_in, h), nn.SiLU()]
                width_in = h
            last = nn.Linear(width_in, 1)
            nn.init.zeros_(last.weight)
            nn.init.zeros_(last.bias)
            return nn.Sequential(*layers, last)

        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(int(seed))
            self.mlp = build()

    def features(self, x: torch.Tensor) -> torch.Tensor:
        """(B, n_beads, 3) -> (B, n_pairs * n_rbf + 2 * n_dihedrals), rotation/translation invariant."""
        r = torch.linalg.vector_norm(x[:, self.pair_i] - x[:, self.pair_j], dim=-1)  # (B, P)
        d = r[:, :, None] - self.rbf_centres[None]
        rbf = torch.exp(-d * d * self.rbf_inv_two_var[None, :, None]).flatten(1)
        _, _, dihedrals = self.zmatrix.to_internal(x)
        return torch.cat([rbf, torch.cos(dihedrals), torch.sin(dihedrals)], dim=-1)

    def correction(self, x: torch.Tensor) -> torch.Tensor:
        """The learned part of U, (B,) kJ/mol."""
        return self.correction_of_features(self.features(x))

    def correction_of_features(self, f: torch.Tensor) -> torch.Tensor:
        """The learned part of U, (B,) kJ/mol, from :meth:`features` already computed."""
        return self.energy_scale * self.mlp(f)[:, 0]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        u = self.correction(x)
        if self.prior is not None:
            u = u + self.prior(x)
        return u


class PMFEnsemble(nn.Module):
    """The mean energy of several PMFs: U(R) = (1/K) sum_k U_k(R), (B, n_beads, 3) -> (B,).

    Force-matched PMFs trained with different seeds differ most in the free-energy offsets
    between basins, which the noisy mapped forces fix only weakly; averaging K of them
    reduces that scatter (docs/force-matching.md has the numbers).

    Members of one fit (:class:`PeptidePMF` with one prior object and equal feature buffers,
    as :func:`train_peptide_pmf` makes them) share their features and prior: the forward pass
    computes them once, U = prior + (1/K) sum_k correction_k (the features are most of a
    member's cost on the larger peptides). Decided when the ensemble is made and again after
    ``load_state_dict``; the members' buffers must not be changed in place otherwise.
    """

    def __init__(self, members):
        super().__init__()
        members = list(members)
        if not members:
            raise DataError("an ensemble needs at least one member PMF")
        self.members = nn.ModuleList(members)
        self.shared_features = _share_features(members)
        # loaded buffers may differ from the constructed ones: decide again after a load
        self.register_load_state_dict_post_hook(_reshare_features)

    @property
    def prior(self):
        """The members' prior (force-matched members of one fit share it), else None."""
        prior = getattr(self.members[0], "prior", None)
        return prior if all(getattr(m, "prior", None) is prior for m in self.members) else None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not self.shared_features:
            return torch.stack([m(x) for m in self.members]).mean(0)
        first = self.members[0]
        f = first.features(x)
        u = torch.stack([m.correction_of_features(f) for m in self.members]).mean(0)
        return u if first.prior is None else u + first.prior(x)


def _reshare_features(module: "PMFEnsemble", incompatible_keys) -> None:
    module.shared_features = _share_features(list(module.members))


def _share_features(members) -> bool:
    """True if every member is a :class:`PeptidePMF` with the first one's prior (the same object)
    and equal feature buffers: their features and prior can be computed once."""
    first = members[0]
    if not all(type(m) is PeptidePMF and m.prior is first.prior and m.mapping == first.mapping for m in members):
        return False
    names = ("pair_i", "pair_j", "rbf_centres", "rbf_inv_two_var", "energy_scale")
    return all(torch.equal(getattr(m, n), getattr(first, n)) for m in members[1:] for n in names)


def build_peptide_pmf(
    positions,
    mapping: CGMapping,
    *,
    prior: PeptidePrior | bool = True,
    n_rbf: int = 16,
    hidden: tuple[int, ...] = (128, 128),
    temperature_kelvin: float = 300.0,
    seed: int = 0,
) -> PeptidePMF:
    """A :class:`PeptidePMF` whose RBF ranges (and, with ``prior=True``, prior) come from ``positions``.

    ``prior``: True fits one with :func:`cgbg_bench.fm.fit_prior`; False: no prior; or pass one.
    """
    x = np.asarray(positions, dtype=np.float64)
    if x.ndim != 3 or x.shape[1:] != (mapping.n_beads, 3):
        raise DataError(f"positions must have shape (N, {mapping.n_beads}, 3) for {mapping.name}, got {x.shape}")
    if prior is True:
        prior = fit_prior(x, mapping, temperature_kelvin=temperature_kelvin)
    elif prior is False:
        prior = None
    iu = np.triu_indices(mapping.n_beads, k=1)
    r = np.linalg.norm(x[:, iu[0]] - x[:, iu[1]], axis=-1)
    r_min, r_max = r.min(0), r.max(0)
    pad = 0.1 * (r_max - r_min) + 1e-3
    return PeptidePMF(mapping, prior, rbf_lo=np.maximum(r_min - pad, 0.0), rbf_hi=r_max + pad,
                      n_rbf=n_rbf, hidden=hidden, kT_kj_per_mol=kT_kj_per_mol(temperature_kelvin), seed=seed)


# ------------------------------------------------------------------------ data ---
@dataclasses.dataclass(frozen=True)
class PeptideData:
    """Force-matching data of one CG representation, from one or more MD run directories.

    positions, forces: (N, n_beads, 3) float32 (nm; kJ/mol/nm, unbiased forces).
    block_ids: (N,) int, time blocks of ``block_ps`` within each run (never shared
    between runs). sources: per run, its directory, system, bias, chunk count, frame
    count and a sha256 over its chunk files (see :func:`load_training_data`).
    """

    mapping: CGMapping
    positions: np.ndarray
    forces: np.ndarray
    block_ids: np.ndarray
    block_ps: float
    temperature_kelvin: float
    sources: tuple[dict, ...]


def _chunks_sha256(paths: list[Path]) -> str:
    """sha256 of the newline-joined "name sha256" lines of the chunk files, in order."""
    import hashlib

    from cgbg_bench._io import sha256_file

    lines = "".join(f"{p.name} {sha256_file(p)}\n" for p in paths)
    return hashlib.sha256(lines.encode()).hexdigest()


def load_training_data(
    dirs, representation: str, *, system: str | None = None, block_ps: float = 100.0,
    max_chunks: dict | None = None,
) -> PeptideData:
    """Load the finished chunks of MD run directories, mapped to ``representation``.

    All runs must be of one system (checked against ``system`` when given) and one
    temperature. Frames are grouped into blocks of ``block_ps`` of simulated time per
    run for the train/validation split. ``max_chunks``: {run dir: n} uses only the first
    n chunks of that run.
    """
    from cgbg_bench.md.production import chunk_paths, load_cg

    if isinstance(dirs, (str, os.PathLike)):
        dirs = [dirs]
    if not dirs:
        raise DataError("give at least one run directory")
    if not block_ps > 0:
        raise DataError(f"block_ps must be > 0, got {block_ps}")
    pos, frc, blocks, sources = [], [], [], []
    mapping = None
    temperature = None
    next_block = 0
    for d in dirs:
        d = Path(d)
        if not (d / "run.json").is_file():
            raise DataError(f"{d}: not an MD run directory (no run.json); make one with cgbg-bench md run")
        settings = json.loads((d / "run.json").read_text())["settings"]
        if system is not None and settings["system"] != system:
            raise DataError(f"{d} is a {settings['system']} run, but --system is {system}")
        if temperature is not None and settings["temperature_kelvin"] != temperature:
            raise DataError(f"{d}: temperature {settings['temperature_kelvin']} K differs from {temperature} K")
        temperature = settings["temperature_kelvin"]
        data = load_cg(d, representation, max_chunks=(max_chunks or {}).get(str(d)))
        if mapping is not None and data["mapping"] != mapping:
            raise DataError(f"{d}: a {data['mapping'].name} run; the other runs are {mapping.name}")
        mapping = data["mapping"]
        t = np.asarray(data["frame_time_ps"], dtype=np.float64)
        b = np.floor((t - t[0]) / block_ps).astype(np.int64)
        blocks.append(next_block + b)
        next_block += int(b.max()) + 1
        pos.append(data["positions_nm"])
        frc.append(data["forces_kj_per_mol_nm"])
        # chunks are append-only, so the first n chunk files are the frames load_cg read
        per_chunk = settings["chunk_ps"] / settings["frame_interval_ps"]
        n_chunks = int(round(t.size / per_chunk))
        if abs(n_chunks * per_chunk - t.size) > 0.5:
            raise DataError(f"{d}: {t.size} frames is not a whole number of {per_chunk:g}-frame chunks")
        paths = chunk_paths(d)[:n_chunks]
        sources.append({
            "dir": str(d), "system": settings["system"], "solvent": settings.get("solvent"),
            "bias": settings.get("bias"), "n_chunks": n_chunks, "n_frames": int(t.size),
            "ns": round(float(n_chunks * settings["chunk_ps"]) / 1000.0, 6),
            "chunks_sha256": _chunks_sha256(paths),
        })
    return PeptideData(
        mapping=mapping, positions=np.concatenate(pos), forces=np.concatenate(frc),
        block_ids=np.concatenate(blocks), block_ps=float(block_ps), temperature_kelvin=float(temperature),
        sources=tuple(sources),
    )


# -------------------------------------------------------------------- training ---
@dataclasses.dataclass(frozen=True)
class TrainResult:
    """What :func:`train_peptide_pmf` returns.

    model: the trained :class:`PeptidePMF`, a :class:`PMFEnsemble` of ``n_models`` of them, or
    the :class:`PeptidePrior` alone (prior_only).
    report: the trainer's FMReport (None for prior_only; of the first member for an ensemble).
    members: the FMReport of every ensemble member (one entry for a single model).
    RMSEs: force RMSE per component in kJ/mol/nm on the same block split: of the model
    and of the prior alone (the improvement over the prior is the figure of merit: the
    mapped forces carry a large irreducible noise). With a dihedral correction, the model's
    are of the corrected model, whose correction was fitted on every frame, validation included
    (``dihedral_correction`` has the held-out measure).
    """

    model: nn.Module
    report: FMReport | None
    train_force_rmse: float
    val_force_rmse: float
    prior_train_force_rmse: float
    prior_val_force_rmse: float
    n_parameters: int
    settings: dict
    members: tuple[FMReport, ...] = ()
    checkpoints: tuple[Path, ...] = ()  # the member checkpoints written or reused (``checkpoint_dir``)
    dihedral_correction: dict | None = None  # the fit's numbers (``dihedral_correction`` > 0)


def _member_checkpoint(checkpoint_dir, data: "PeptideData", settings: dict, member_seed: int) -> Path:
    """Where the trained network of one ensemble member is kept, named by what determines it:
    the data (every run's chunk sha256), the mapping, the training settings and its seed."""
    import hashlib

    key = json.dumps({"format": 1, "mapping": data.mapping.name, "sources": [dict(s) for s in data.sources],
                      "n_frames": len(data.positions), "settings": settings, "member_seed": int(member_seed)},
                     sort_keys=True, default=str)
    return Path(checkpoint_dir) / f"fm-member-{hashlib.sha256(key.encode()).hexdigest()[:24]}.pt"


def _load_member(path: Path, model: nn.Module) -> FMReport | None:
    """Load a member checkpoint into ``model``; None (retrain) if it is missing, unreadable, or
    if anything but the network's weights (the fitted prior, the feature buffers) differs from
    the freshly built ``model``'s, as after a change to the prior fit or the features."""
    if not path.is_file():
        return None
    try:
        blob = torch.load(path, weights_only=True)
        fresh, saved = model.state_dict(), blob["state_dict"]
        if set(saved) != set(fresh) or not all(torch.equal(saved[k], v) for k, v in fresh.items()
                                               if not k.startswith("mlp.")):
            return None
        model.load_state_dict(saved)
        report = dict(blob["report"])
        report["val_blocks"] = tuple(report["val_blocks"])
        report["val_mse_history"] = tuple(report["val_mse_history"])
        return FMReport(**report)
    except Exception:  # noqa: BLE001 - a damaged or foreign file only means: train again
        return None


def training_settings(settings: "FMSettings", *, prior_only: bool, temperature_kelvin: float | None) -> dict:
    """The settings a fit of :func:`train_peptide_pmf` is recorded under: its sidecar's
    ``settings``, part of its member checkpoints' key, and what a build compares to reuse an
    export (:func:`cgbg_bench.fm.pipeline.matching_export`). The network's settings are left
    out of a prior-only fit's; ``temperature_kelvin`` None leaves it out (a caller that has not
    loaded the data). ``dihedral_correction`` is recorded only when > 0, so that what was
    fitted without one keeps its record (and its member checkpoints their names)."""
    s = settings
    out = {"prior_only": bool(prior_only), "seed": int(s.seed), "val_fraction": float(s.val_fraction),
           "block_ps": float(s.block_ps)}
    if temperature_kelvin is not None:
        out["temperature_kelvin"] = float(temperature_kelvin)
    out["repulsion_power"] = int(s.repulsion_power)
    if not prior_only:
        out.update({"lr": float(s.lr), "max_epochs": int(s.max_epochs), "patience": int(s.patience),
                    "batch_size": int(s.batch_size), "weight_decay": float(s.weight_decay),
                    "n_rbf": int(s.n_rbf), "hidden": [int(h) for h in s.hidden],
                    "lr_halve_after": s.lr_halve_after, "n_models": int(s.n_models)})
        if s.dihedral_correction:
            out["dihedral_correction"] = int(s.dihedral_correction)
    return out


def train_peptide_pmf(
    data: PeptideData,
    settings: "FMSettings | None" = None,
    *,
    prior_only: bool = False,
    checkpoint_dir: str | os.PathLike | None = None,
    progress: bool = False,
    **overrides,
) -> TrainResult:
    """Fit the prior, then (unless ``prior_only``) train the correction by force matching.

    ``settings``: the :class:`cgbg_bench.fm.pipeline.FMSettings` of the fit (seed, epochs, widths,
    ...; its defaults are the only ones); keyword ``overrides`` name fields of it to change
    (``train_peptide_pmf(data, seed=4, max_epochs=3)``), an unknown name raises TypeError.
    The split is by ``data.block_ids`` (see :func:`cgbg_bench.fm.block_split`), seeded by
    ``seed``, which also seeds the weights and the minibatch order. ``n_models`` > 1 trains
    that many networks on the same split (weights and minibatch order seeded ``seed``,
    ``seed + 1``, ...) and returns their :class:`PMFEnsemble`; its RMSEs are the ensemble's.
    ``checkpoint_dir``: each trained network is saved there as soon as it is done, and a
    network already saved for the same data, settings and seed is loaded instead of trained,
    so an interrupted ensemble fit resumes at the member it was on (same result: every member
    is seeded on its own). ``dihedral_correction`` K > 0: then add the order-K Fourier series in
    the backbone (phi, psi) fitted by least squares on the force residuals
    (:mod:`cgbg_bench.fm.dihedral_correction`): first on the training blocks alone, to measure
    it on the validation blocks, then on every frame for the model returned. ``progress``: show
    each network's epochs (:mod:`cgbg_bench.progress`: a bar on a terminal, plain lines in a log).
    """
    from cgbg_bench.fm.pipeline import FMSettings

    settings = dataclasses.replace(settings or FMSettings(), **overrides)
    seed, val_fraction, lr, max_epochs = settings.seed, settings.val_fraction, settings.lr, settings.max_epochs
    patience, batch_size, weight_decay = settings.patience, settings.batch_size, settings.weight_decay
    n_rbf, hidden, lr_halve_after = settings.n_rbf, tuple(settings.hidden), settings.lr_halve_after
    n_models, repulsion_power = settings.n_models, settings.repulsion_power
    dihedral_correction = settings.dihedral_correction
    if isinstance(n_models, bool) or int(n_models) != n_models or n_models < 1:
        raise DataError(f"n_models must be a whole number >= 1, got {n_models!r}")
    if not isinstance(repulsion_power, (int, np.integer)) or isinstance(repulsion_power, bool) or repulsion_power < 1:
        raise DataError(f"repulsion_power must be a whole number >= 1, got {repulsion_power!r}")
    prior = fit_prior(data.positions, data.mapping, temperature_kelvin=data.temperature_kelvin,
                      repulsion_power=int(repulsion_power))
    train_idx, val_idx, _ = block_split(len(data.positions), block_ids=data.block_ids,
                                        val_fraction=val_fraction, seed=seed)
    rmse = lambda m, idx: math.sqrt(force_mse(m, data.positions[idx], data.forces[idx]))  # noqa: E731
    prior_train, prior_val = rmse(prior, train_idx), rmse(prior, val_idx)
    # recorded with the data's block length (the split's), whatever ``settings.block_ps`` says
    recorded = training_settings(dataclasses.replace(settings, block_ps=data.block_ps), prior_only=prior_only,
                                 temperature_kelvin=data.temperature_kelvin)
    if dihedral_correction:
        if prior_only:
            raise DataError("a dihedral correction is fitted on a trained network's residuals; not with prior_only")
        from cgbg_bench.fm.dihedral_correction import DihedralCorrection

        DihedralCorrection(data.mapping, dihedral_correction)  # a bad order or mapping fails before any training
    member_settings = {k: v for k, v in recorded.items() if k != "dihedral_correction"}
    if prior_only:
        return TrainResult(model=prior.eval(), report=None, train_force_rmse=prior_train, val_force_rmse=prior_val,
                           prior_train_force_rmse=prior_train, prior_val_force_rmse=prior_val,
                           n_parameters=0, settings=recorded)
    members, reports, checkpoints = [], [], []
    for k in range(int(n_models)):
        model = build_peptide_pmf(data.positions, data.mapping, prior=prior, n_rbf=n_rbf, hidden=hidden,
                                  temperature_kelvin=data.temperature_kelvin, seed=seed + k)
        path = None if checkpoint_dir is None else _member_checkpoint(checkpoint_dir, data, member_settings, seed + k)
        report = None if path is None else _load_member(path, model)
        if report is None:
            from cgbg_bench.progress import progress as progress_display

            desc = "training" if n_models == 1 else f"network {k + 1}/{n_models}"
            with progress_display(max_epochs, desc=desc, unit="epoch", bound=True, every_s=0.0,
                                  enabled=progress) as bar:
                def on_epoch(epoch, val_mse, best_epoch, since_best, bar=bar):
                    bar.update(1, note=f"val force RMSE {math.sqrt(val_mse):.1f}, best at epoch {best_epoch}; "
                                       f"stops after {patience} without a better one ({since_best} so far)")

                model, report = train_force_matching(
                    model, data.positions, data.forces, block_ids=data.block_ids, val_fraction=val_fraction,
                    seed=seed + k, split_seed=seed, lr=lr, max_epochs=max_epochs, patience=patience,
                    batch_size=batch_size, weight_decay=weight_decay, lr_halve_after=lr_halve_after,
                    on_epoch=on_epoch,
                )
            if path is not None:
                from cgbg_bench._io import atomic_path

                path.parent.mkdir(parents=True, exist_ok=True)
                with atomic_path(path) as tmp:
                    torch.save({"state_dict": model.state_dict(), "report": dataclasses.asdict(report)}, tmp)
        if path is not None:
            checkpoints.append(path)
        members.append(model)
        reports.append(report)
    if n_models == 1:
        model, train_rmse, val_rmse = members[0], reports[0].train_force_rmse, reports[0].val_force_rmse
    else:
        model = PMFEnsemble(members).eval()
        train_rmse, val_rmse = rmse(model, train_idx), rmse(model, val_idx)
    correction = None
    if dihedral_correction:
        from cgbg_bench.fm.dihedral_correction import CorrectedPMF, fit_dihedral_correction

        _, held_out = fit_dihedral_correction(model, data.positions, data.forces, data.mapping,
                                              dihedral_correction, fit_idx=train_idx, eval_idx=val_idx)
        fitted, on_all = fit_dihedral_correction(model, data.positions, data.forces, data.mapping,
                                                 dihedral_correction)
        correction = {"order": int(dihedral_correction), "n_coefficients": on_all["n_coefficients"],
                      "network_train_force_rmse": train_rmse, "network_val_force_rmse": val_rmse,
                      "val_force_rmse_fitted_on_train_blocks": math.sqrt(held_out["mse_corrected"]),
                      "condition_number": on_all["condition_number"],
                      "max_abs_kj_per_mol": on_all["max_abs_kj_per_mol"]}
        model = CorrectedPMF(model, fitted).eval()
        train_rmse, val_rmse = rmse(model, train_idx), rmse(model, val_idx)
    return TrainResult(model=model, report=reports[0], train_force_rmse=train_rmse, val_force_rmse=val_rmse,
                       prior_train_force_rmse=prior_train, prior_val_force_rmse=prior_val,
                       n_parameters=sum(p.numel() for p in model.parameters()), settings=recorded,
                       members=tuple(reports), checkpoints=tuple(checkpoints), dihedral_correction=correction)


# ---------------------------------------------------------------------- export ---
def export_peptide_pmf(model: nn.Module, example, path: str | os.PathLike) -> Path:
    """Export ``model`` to ``path`` (.pt2, dynamic batch) and check the written file first.

    ``example``: a few (>= 7) CG configurations (N, n_beads, 3). The check loads the file
    with :func:`cgbg_bench.pmf.load_pmf` and runs :func:`cgbg_bench.pmf.check_pmf`
    (shape (B,), finite, dynamic batch, batch independence) and compares its energies
    with the eager model's; only then is the file renamed into place.
    """
    from cgbg_bench.pmf import check_pmf, export_program, load_pmf

    # contiguous: a strided example is traced into a program that fails on plain inputs
    x = torch.tensor(np.ascontiguousarray(np.asarray(example, dtype=np.float32)[:7]))
    if x.ndim != 3 or x.shape[0] < 7:
        raise DataError(f"example must be (>= 7, n_beads, 3) configurations, got {tuple(x.shape)}")
    model = model.eval()
    with torch.no_grad():
        expected = model(x)
    shape_only = types.SimpleNamespace(input_shape=tuple(x.shape[1:]))

    def validate(tmp: Path) -> None:
        loaded = load_pmf(tmp, device="cpu")
        check_pmf(loaded, shape_only, sample=x.numpy(), device="cpu")
        with torch.no_grad():
            got = loaded(x)
        scale = float(expected.abs().max()) + 1.0
        if float((got - expected).abs().max()) > 1e-5 * scale:
            raise DataError(f"{tmp}: the exported program's energies differ from the model's")

    return export_program(model, x, path, validate=validate)

