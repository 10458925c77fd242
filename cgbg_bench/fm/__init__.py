"""Force matching: fit a PMF U so that -grad U matches mapped MD forces."""

from cgbg_bench.fm.dihedral_correction import CorrectedPMF, DihedralCorrection, fit_dihedral_correction
from cgbg_bench.fm.models import RBFMLP
from cgbg_bench.fm.peptide import (
    PeptideData,
    PeptidePMF,
    PMFEnsemble,
    TrainResult,
    build_peptide_pmf,
    export_peptide_pmf,
    load_training_data,
    train_peptide_pmf,
)
from cgbg_bench.fm.priors import PeptidePrior, fit_prior
from cgbg_bench.fm.train import FMReport, block_split, force_mse, train_force_matching

__all__ = [
    "RBFMLP",
    "FMReport",
    "block_split",
    "force_mse",
    "train_force_matching",
    "PeptidePMF",
    "PMFEnsemble",
    "PeptidePrior",
    "PeptideData",
    "TrainResult",
    "fit_prior",
    "build_peptide_pmf",
    "load_training_data",
    "train_peptide_pmf",
    "export_peptide_pmf",
    "DihedralCorrection",
    "CorrectedPMF",
    "fit_dihedral_correction",
]
