"""Atomistic MD of the capped alanine peptides on OpenMM (docs/md.md).

Nothing here imports OpenMM at import time; the functions do when they run.
"""

from cgbg_bench.md.build import Peptide, build_peptide
from cgbg_bench.md.metadynamics import MetadParams
from cgbg_bench.md.production import RunSettings, load_cg, load_chunks, run, run_status

__all__ = ["Peptide", "build_peptide", "MetadParams", "RunSettings", "run", "run_status",
           "load_chunks", "load_cg"]
