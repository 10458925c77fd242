"""Throughput (ns/day) of the MD engine, measured with the production code path.

``ns_per_day`` divides by wall time (what a user waits); ``ns_per_cpu_day`` by the
process's CPU time, which a busy shared machine distorts much less (with one thread it
is the rate the run would have with a core to itself).

Each measurement sets up a short run in a temporary directory (short
equilibration), runs two production chunks, and reports the second chunk's rate
(the first one is discarded as warm-up). Chunk wall time includes everything a
production run does: stepping, dihedrals and bias energy every 0.1 ps, unbiased
forces every 1 ps, hill deposition.
"""

from __future__ import annotations

import platform as _platform
import tempfile

import numpy as np

from cgbg_bench.md.production import RunSettings, chunk_paths, run

__all__ = ["measure_ns_per_day", "default_chunk_ps"]

#: Chunk lengths (ps) of ~5-30 s on a 2-core CPU.
_CHUNK_PS = {"explicit": {"ala2": 10.0, "ala3": 4.0, "ala6": 2.0},
             "obc1": {"ala2": 100.0, "ala3": 50.0, "ala6": 25.0},
             "obc2": {"ala2": 100.0, "ala3": 50.0, "ala6": 25.0},
             "vacuum": {"ala2": 200.0, "ala3": 100.0, "ala6": 50.0}}


def default_chunk_ps(system: str, solvent: str) -> float:
    return _CHUNK_PS[solvent][system]


def measure_ns_per_day(system: str, solvent: str, bias: str = "none", threads: int = 1,
                       platform: str = "auto", chunk_ps: float | None = None, **box) -> dict:
    """Run two chunks of a fresh short run; the rate of the second one, in ns/day.

    ``box``: ``box_shape`` and ``image_distance_nm`` of :class:`RunSettings` (explicit solvent;
    ignored otherwise)."""
    chunk_ps = chunk_ps or default_chunk_ps(system, solvent)
    settings = RunSettings(system, solvent, bias, seed=1, chunk_ps=chunk_ps,
                           equilibration_ps=1.0, **(box if solvent == "explicit" else {}))
    with tempfile.TemporaryDirectory(prefix="cgbg-md-bench-") as tmp:
        run(settings, tmp, ns=2 * chunk_ps / 1000.0, threads=threads, platform=platform)
        with np.load(chunk_paths(tmp)[-1]) as z:
            wall, cpu = float(z["wall_seconds"]), float(z["cpu_seconds"])
        import json
        from pathlib import Path

        sidecar = json.loads((Path(tmp) / "run.json").read_text())
    return {"system": system, "solvent": solvent, "bias": bias, "threads": threads,
            "platform": sidecar["sessions"][-1]["platform"],
            "n_atoms": sidecar["derived"]["n_atoms"],
            "chunk_ps": chunk_ps, "wall_seconds": wall, "cpu_seconds": cpu,
            "ns_per_day": chunk_ps / 1000.0 / wall * 86400.0,
            "ns_per_cpu_day": chunk_ps / 1000.0 / cpu * 86400.0, "machine": _platform.machine()}
