"""asv benchmarks of the MD engine: one production chunk of alanine dipeptide in vacuum."""

import json
import shutil
import tempfile
from pathlib import Path


class MDChunkAla2Vacuum:
    """Time one 2 ps production chunk (500 steps of 4 fs), the way ``md run`` does it:
    dihedrals and bias energy every 0.1 ps, unbiased forces every 1 ps."""

    params = ["none", "wtmetad"]
    param_names = ["bias"]
    timeout = 120

    def setup(self, bias):
        from cgbg_bench.md.production import RunSettings, _Engine, _read_checkpoint, run
        from cgbg_bench.md.systems import make_platform

        self.tmp = tempfile.mkdtemp(prefix="cgbg-asv-md-")
        settings = RunSettings("ala2", "vacuum", bias, seed=1, chunk_ps=2.0,
                               equilibration_ps=0.4).resolved()
        run(settings, self.tmp, ns=0.0, threads=1, platform="CPU")  # setup only
        derived = json.loads((Path(self.tmp) / "run.json").read_text())["derived"]
        platform, props = make_platform("CPU", threads=1)
        self.engine = _Engine(settings, Path(self.tmp), derived, platform, props)
        self.engine.restore(_read_checkpoint(Path(self.tmp)))
        self.chunk = 0

    def teardown(self, bias):
        shutil.rmtree(self.tmp, ignore_errors=True)

    def time_chunk(self, bias):
        self.engine.run_chunk(self.chunk)
        self.chunk += 1
