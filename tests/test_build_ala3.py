"""The alanine builder on ala3 end to end (tiny vacuum/implicit runs, ps long, not physics):
the scored residue first in the observables, the reference and GB columns in that order, the
reference noise stored and the task marked provisional."""

import json

import numpy as np
import pytest
import yaml

from cgbg_bench.cg.mappings import get_mapping
from cgbg_bench.reference import combine_reference, combine_runs, load_run_dihedrals
from cgbg_bench.task import load_task
from cgbg_bench.units import kT_kj_per_mol
from tests.toys import tiny_build


# About a CPU-minute (four ala3 tasks): every test of this fixture is marked slow.
@pytest.fixture(scope="module")
def built3(tmp_path_factory):
    base = tmp_path_factory.mktemp("ala3")
    mp = pytest.MonkeyPatch()
    mp.setenv("CGBG_BENCH_CACHE", str(base / "cache"))
    written = tiny_build("ala3", base, seed=11)
    yield base, written
    mp.undo()


@pytest.mark.slow
def test_ala3_tasks_score_residue_2_first(built3):
    base, written = built3
    assert sorted(p.name for p in written) == ["ala3-core-beta", "ala3-core-beta-biased", "ala3-heavy-atom",
                                               "ala3-heavy-atom-biased"]
    # the metadynamics biased the scored residue by default
    assert json.loads((base / "metad" / "run.json").read_text())["settings"]["bias_residue"] == 2
    ha, cb = (load_task(base / "repo" / "tasks" / f"ala3-{rep}") for rep in ("heavy-atom", "core-beta"))
    assert [o.name for o in ha.observables] == ["ala2", "ala1", "ala3"]
    assert [o.name for o in cb.observables] == ["ala2"]
    for task in (ha, cb):
        m = get_mapping("ala3", task.representation)
        quads = dict(zip(m.residues, zip(m.phi, m.psi)))
        for o in task.observables:
            assert o.indices == quads[int(o.name[3:])]
    # the reference's and the GB row's residue axis follow the observables: columns 1, 0, 2 of the runs
    kT = kT_kj_per_mol(300.0)
    runs = [load_run_dihedrals(base / n, kT) for n in ("static", "static-2")]
    blocks, _ = combine_reference(runs, 1.0, [0, 1, 2])
    np.testing.assert_allclose(ha.load_reference().block_hist, np.concatenate(blocks)[:, [1, 0, 2]], rtol=1e-10)
    blocks, _ = combine_reference(runs, 1.0, [1])
    np.testing.assert_allclose(cb.load_reference().block_hist, np.concatenate(blocks), rtol=1e-10)
    with np.load(ha.root / "gb-obc2.npz") as z:
        gb = z["block_hist"]
    np.testing.assert_array_equal(gb, combine_runs([load_run_dihedrals(base / "obc2", kT)], 1.0, [1, 0, 2]))


@pytest.mark.slow
def test_ala3_baselines_report_every_residue_with_residue_2_the_headline(built3):
    base, _ = built3
    scores = json.loads((base / "repo" / "tasks" / "ala3-heavy-atom" / "baseline_scores.json").read_text())
    for row in scores["baselines"].values():
        assert list(row["per_observable"]) == ["ala2", "ala1", "ala3"]
        assert row["metrics"]["js"] == row["per_observable"]["ala2"]["js"]


@pytest.mark.slow
def test_ala3_reference_noise_and_provisional_marking(built3, capsys):
    from cgbg_bench.cli import main

    base, _ = built3
    tasks = base / "repo" / "tasks"
    raw = yaml.safe_load((tasks / "ala3-heavy-atom" / "task.yaml").read_text())
    noise = raw["reference_noise"]
    assert noise["observable"] == "ala2" and noise["target"] == 0.01
    # the halves of each run in time: static 8 blocks (4 + 4), static-2 6 blocks (3 + 3)
    from cgbg_bench.reference import halves_js, run_halves

    ref = load_task(tasks / "ala3-heavy-atom").load_reference().block_hist
    assert noise["js_halves"] == pytest.approx(float(halves_js(ref, run_halves([8, 6]))[0]), rel=1e-5)
    # ps-long vacuum runs are far from converged: the halves differ, the task is provisional
    assert noise["js_halves"] > 0.01
    task = load_task(tasks / "ala3-heavy-atom")
    assert task.provisional
    capsys.readouterr()
    assert main(["info", str(tasks / "ala3-heavy-atom")]) == 0
    assert "provisional: reference JS(1st half, 2nd half) on ala2" in capsys.readouterr().out
    assert main(["info", "--json", str(tasks / "ala3-heavy-atom")]) == 0
    info = json.loads(capsys.readouterr().out)
    assert info["provisional"] is True and info["reference_noise"]["js_halves"] == noise["js_halves"]


@pytest.mark.slow
def test_evaluate_prints_every_residue_beside_its_floor(built3, capsys):
    from cgbg_bench.cli import main

    base, _ = built3
    task = base / "repo" / "tasks" / "ala3-heavy-atom"
    pmf = base / "repo" / "baselines" / "ala3-heavy-atom" / "prior-only.pt2"
    capsys.readouterr()
    assert main(["evaluate", str(pmf), "--task", str(task), "--n-bootstrap", "20"]) == 0
    lines = capsys.readouterr().out.splitlines()
    header = next(line for line in lines if line.startswith("| per residue: JS / JS floor"))
    assert [c.strip() for c in header.split("|")[2:5]] == ["ala2 (headline)", "ala1", "ala3"]
