"""Force matching: fit a PMF U so that -grad U matches mapped MD forces."""

from cgbg_bench.fm.models import RBFMLP
from cgbg_bench.fm.train import FMReport, block_split, force_mse, train_force_matching

__all__ = ["RBFMLP", "FMReport", "block_split", "force_mse", "train_force_matching"]
