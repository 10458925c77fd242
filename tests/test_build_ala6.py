"""The alanine builder on ala6 end to end (tiny vacuum/implicit runs, ps long, not physics): only
the core-beta tasks are made (ala6 heavy-atom is not a benchmark task), residue 4 is the headline
and the other interior residues follow it, the reference and GB columns in that order, the ala6
noise target (0.02) stored and the task marked provisional."""

import json

import numpy as np
import pytest
import yaml

from cgbg_bench.cg.mappings import get_mapping
from cgbg_bench.reference import combine_reference, combine_runs, load_run_dihedrals
from cgbg_bench.task import load_task
from cgbg_bench.units import kT_kj_per_mol
from tests.toys import tiny_build

# residue 4 first, then the other residues with both phi and psi in core-beta, in sequence order
ORDER = ["ala4", "ala2", "ala3", "ala5"]


@pytest.fixture(scope="module")
def built6(tmp_path_factory):
    base = tmp_path_factory.mktemp("ala6")
    mp = pytest.MonkeyPatch()
    mp.setenv("CGBG_BENCH_CACHE", str(base / "cache"))
    written = tiny_build("ala6", base, seed=17)
    yield base, written
    mp.undo()


@pytest.mark.slow
def test_ala6_builds_core_beta_scored_on_residue_4(built6):
    base, written = built6
    assert sorted(p.name for p in written) == ["ala6-core-beta", "ala6-core-beta-biased"]
    # the metadynamics biased the scored residue by default
    assert json.loads((base / "metad" / "run.json").read_text())["settings"]["bias_residue"] == 4
    task = load_task(base / "repo" / "tasks" / "ala6-core-beta")
    assert [o.name for o in task.observables] == ORDER
    m = get_mapping("ala6", "core-beta")
    assert m.n_beads == 24
    quads = dict(zip(m.residues, zip(m.phi, m.psi)))
    for o in task.observables:
        assert o.indices == quads[int(o.name[3:])]
    # the runs store residues 1..6 in columns 0..5: the reference and GB rows take columns 3, 1, 2, 4
    columns = [int(name[3:]) - 1 for name in ORDER]
    kT = kT_kj_per_mol(300.0)
    runs = [load_run_dihedrals(base / n, kT) for n in ("static", "static-2")]
    blocks, _ = combine_reference(runs, 1.0, columns)
    np.testing.assert_allclose(task.load_reference().block_hist, np.concatenate(blocks), rtol=1e-10)
    with np.load(task.root / "gb-obc2.npz") as z:
        gb = z["block_hist"]
    np.testing.assert_array_equal(gb, combine_runs([load_run_dihedrals(base / "obc2", kT)], 1.0, columns))


@pytest.mark.slow
def test_ala6_baselines_report_every_residue_and_the_task_is_provisional(built6, capsys):
    from cgbg_bench.cli import main

    base, _ = built6
    tasks = base / "repo" / "tasks"
    scores = json.loads((tasks / "ala6-core-beta" / "baseline_scores.json").read_text())
    assert scores["baselines"]
    for row in scores["baselines"].values():
        assert list(row["per_observable"]) == ORDER
        assert row["metrics"]["js"] == row["per_observable"]["ala4"]["js"]
    noise = yaml.safe_load((tasks / "ala6-core-beta" / "task.yaml").read_text())["reference_noise"]
    assert noise["observable"] == "ala4" and noise["target"] == 0.02
    assert load_task(tasks / "ala6-core-beta").provisional
    capsys.readouterr()
    assert main(["info", str(tasks / "ala6-core-beta")]) == 0
    assert "provisional: reference JS(1st half, 2nd half) on ala4" in capsys.readouterr().out
