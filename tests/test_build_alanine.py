"""The alanine task builder end to end on tiny vacuum/implicit runs (ps long, not physics)."""

import dataclasses

import numpy as np
import pytest
import torch
import yaml

from cgbg_bench._io import sha256_file
from cgbg_bench.build.alanine import build
from cgbg_bench.build.recipe import BuildRecipe, FlowSettings, Run
from cgbg_bench.fm.pipeline import FMSettings
from cgbg_bench.task import load_task
from tests.toys import tiny_md_runs


# Building four tasks takes 1.5 CPU-minutes: every test of this fixture is marked slow.
@pytest.fixture(scope="module")
def built(tmp_path_factory):
    base = tmp_path_factory.mktemp("ala")
    runs = tiny_md_runs("ala2", base, seed=1)  # static-2: a second run of the same kind, for `md report`
    metad, static, unbiased, obc2 = (runs[n] for n in ("metad", "static", "unbiased", "obc2"))
    cache = base / "cache"
    mp = pytest.MonkeyPatch()
    mp.setenv("CGBG_BENCH_CACHE", str(cache))
    # unbiased and static-bias runs weighed against each other on 1 ps blocks: 20 and 8 of them,
    # each with basin populations that vary between blocks (seeded; >= 8 needed)
    recipe = BuildRecipe("ala2", unbiased=(unbiased,), static=(static,), metad=(metad,), gb={"obc2": (obc2,)},
                         bank_size=3000, block_ps=1.0, basin_block_ps=1.0,
                         flow=FlowSettings(epochs=2, transforms=1, hidden=16, batch_size=64),
                         fm=FMSettings(seed=1, max_epochs=2, n_rbf=4, hidden=(16,), block_ps=1.0))
    written = build(recipe, root=base / "repo")
    yield base / "repo", written, cache
    mp.undo()


@pytest.mark.slow
def test_builds_four_tasks_with_the_fixed_observables(built, capsys):
    root, written, _ = built
    assert sorted(p.name for p in written) == ["ala2-core-beta", "ala2-core-beta-biased", "ala2-heavy-atom",
                                               "ala2-heavy-atom-biased"]
    cb = load_task(root / "tasks" / "ala2-core-beta")
    assert cb.input_shape == (6, 3) and cb.kT == pytest.approx(2.4943, abs=1e-4)
    assert cb.observables[0].indices == ((0, 1, 2, 4), (1, 2, 4, 5))  # docs/spec.md section 3
    ha = load_task(root / "tasks" / "ala2-heavy-atom")
    assert ha.observables[0].indices == ((1, 3, 4, 6), (3, 4, 6, 8))
    command = cb.reference.provenance["command"]
    for run_name, n in (("unbiased", 10), ("static", 4), ("metad", 3), ("obc2", 2)):
        assert f"/{run_name}={n}" in command  # every run pinned to the chunks the build read
    # non-defaults too, and the flows' weight power (spelled out unless it is the legacy 0)
    assert command.endswith("--block-ps 1 --basin-block-ps 1 --bank-size 3000 --flow-epochs 2 "
                            "--flow-bias-weight-power 1 --fm-hidden 16")
    # the recipe in task.yaml is the build's, every run pinned to the chunks it read
    raw = yaml.safe_load((root / "tasks" / "ala2-core-beta" / "task.yaml").read_text())
    stored = BuildRecipe.from_dict(raw["recipe"])
    assert stored.pins() == {str(root.parent / n): c for n, c in (("unbiased", 10), ("static", 4), ("metad", 3),
                                                                   ("obc2", 2))}
    assert stored.unpinned().fm == FMSettings(seed=1, max_epochs=2, n_rbf=4, hidden=(16,), block_ps=1.0)
    assert stored.command() == command and stored.flow.epochs == 2 and stored.bank_size == 3000
    ref = cb.load_reference()
    assert not ref.exact and ref.block_hist.shape == (28, 1, 10_000)  # 20 + 8 blocks of 1 ps
    seen = cb.proposal.provenance["flow_training"]["soft_positive_frames"]  # phi, psi > 0 on each side of the split
    assert set(seen) == {"train", "val"} and all(len(v) == 2 for v in seen.values())
    kinds = cb.reference.provenance["run_kinds"]
    assert list(kinds)[0] == "unbiased" and list(kinds)[1].startswith("static ") and len(kinds) == 2
    assert [k["runs"] for k in kinds.values()] == [["unbiased"], ["static"]]
    assert sum(k["share"] for k in kinds.values()) == pytest.approx(1.0, abs=1e-5)
    # the stored blocks carry those shares: the unbiased run's 20 blocks hold its share of the weight
    assert ref.block_hist[:20].sum() / ref.block_hist.sum() == pytest.approx(kinds["unbiased"]["share"], abs=1e-5)
    from cgbg_bench.cli import main

    assert main(["info", str(root / "tasks" / "ala2-core-beta")]) == 0
    share = kinds["unbiased"]["share"]
    assert f"reference runs by kind (share of the weight): unbiased (unbiased) {share:.3f}; static " \
        in capsys.readouterr().out


@pytest.mark.slow
def test_generated_bank_is_cached_and_scores(built, monkeypatch):
    root, _, cache = built
    monkeypatch.setenv("CGBG_BENCH_CACHE", str(cache))
    from cgbg_bench import bank as bank_mod
    from cgbg_bench.evaluate import evaluate

    monkeypatch.setitem(bank_mod.GENERATORS, "ic-flow", lambda *a: pytest.fail("bank was not cached"))
    task = load_task(root / "tasks" / "ala2-core-beta-biased")
    bank = task.load_proposal()
    assert bank.positions.shape == (3000, 6, 3) and np.isfinite(bank.log_q).all()

    class Flat(torch.nn.Module):
        def forward(self, x):
            return 0.0 * x.sum((1, 2))

    result, _ = evaluate(Flat(), task, device="cpu", n_bootstrap=20)
    assert 0 < result.scores.metrics["js"].value <= np.log(2)


@pytest.mark.slow
def test_fm_baselines_are_shared_by_both_variants_and_scored(built):
    import json

    import yaml

    root, _, _ = built
    meta = yaml.safe_load((root / "baselines" / "ala2-core-beta" / "baselines.yaml").read_text())
    assert list(meta) == ["fm-unbiased", "fm-biased", "prior-only"]
    assert meta["fm-biased"]["training"]["data_kind"] == "biased"
    assert [p.rsplit("/", 1)[-1] for p in meta["fm-biased"]["training"]["data"]] == ["metad", "static"]
    assert meta["prior-only"]["training"]["n_parameters"] == 0
    for name in ("ala2-core-beta", "ala2-core-beta-biased"):
        task = load_task(root / "tasks" / name)
        pmfs = {b.name: b.file.verify() for b in task.baselines if b.kind == "pmf"}
        assert set(pmfs) == set(meta) and all(p.parent.name == "ala2-core-beta" for p in pmfs.values())
        scores = json.loads((root / "tasks" / name / "baseline_scores.json").read_text())["baselines"]
        assert {"js", "pmf_error", "ess"} <= set(scores["fm-biased"]["metrics"])
        # recorded relative to the task folder (as in task.yaml), not as this machine's absolute path
        assert scores["fm-biased"]["submission"] == "../../baselines/ala2-core-beta/fm-biased.pt2"
        assert scores["gb-obc2"]["submission"] == "gb-obc2.npz"


@pytest.mark.slow
def test_gb_rows_are_stored_without_ess(built):
    import json

    root, _, _ = built
    scores = json.loads((root / "tasks" / "ala2-core-beta" / "baseline_scores.json").read_text())
    gb = scores["baselines"]["gb-obc2"]["metrics"]
    assert set(gb) == {"js", "pmf_error", "js_floor"}
    row = next(b for b in load_task(root / "tasks" / "ala2-core-beta").baselines if b.name == "gb-obc2")
    assert row.description == "implicit solvent GB OBC2 MD, unbiased runs, unweighted"


def test_gb_rows_say_whether_their_runs_were_reweighted():
    from cgbg_bench.build.alanine import _gb_description
    from cgbg_bench.reference import RunDihedrals

    def run(log_weight):
        return RunDihedrals("r", np.zeros((3, 1)), np.zeros((3, 1)), np.asarray(log_weight, float), 1.0)

    assert _gb_description("obc2", [run([0, 0, 0])]) == "implicit solvent GB OBC2 MD, unbiased runs, unweighted"
    assert _gb_description("obc1", [run([0.5, 1, 2]), run([0, 1, 2])]) == (
        "implicit solvent GB OBC1 MD, static-bias runs reweighted exactly")
    assert _gb_description("obc1", [run([0, 0, 0]), run([0.5, 1, 2])]) == (
        "implicit solvent GB OBC1 MD, unbiased and static-bias runs, the latter reweighted exactly")


@pytest.mark.slow
def test_max_chunks_limits_what_is_read(built):
    from cgbg_bench.errors import MDError
    from cgbg_bench.md.production import load_chunks

    run = built[0].parent / "unbiased"
    assert len(load_chunks(run, ("time_ps",), max_chunks=2)["time_ps"]) == 2 * len(
        load_chunks(run, ("time_ps",), max_chunks=1)["time_ps"])
    with pytest.raises(MDError, match="11 chunks requested, only 10 finished"):
        load_chunks(run, max_chunks=11)


@pytest.mark.slow
def test_reference_only_refresh_keeps_flows_and_pmfs_and_rescores(built, tmp_path, monkeypatch):
    import json
    import shutil

    from cgbg_bench.build.alanine import refresh_reference
    from cgbg_bench.cli import main

    src, _, cache = built
    monkeypatch.setenv("CGBG_BENCH_CACHE", str(cache))
    root = tmp_path / "repo"
    shutil.copytree(src, root)
    base = src.parent
    before = {n: yaml.safe_load((root / "tasks" / n / "task.yaml").read_text())
              for n in ("ala2-core-beta", "ala2-core-beta-biased", "ala2-heavy-atom", "ala2-heavy-atom-biased")}
    recipe = BuildRecipe("ala2", unbiased=(Run(str(base / "unbiased"), 8),), static=(base / "static",),
                         gb={"obc2": (base / "obc2",)}, version=2, block_ps=1.0, basin_block_ps=1.0)
    from cgbg_bench import bank as bank_mod

    # same flow, same bank: the refresh rescores on the cached bank (the cache is not keyed by version)
    monkeypatch.setitem(bank_mod.GENERATORS, "ic-flow", lambda *a: pytest.fail("the bank was regenerated"))
    written = refresh_reference(recipe, root=root)
    assert sorted(p.name for p in written) == sorted(before)
    for name, old in before.items():
        task = load_task(root / "tasks" / name)
        assert task.version == 2
        for f in (task.proposal, task.reference, *(b.file for b in task.baselines), task.baseline_scores):
            f.verify()
        new = yaml.safe_load((root / "tasks" / name / "task.yaml").read_text())
        assert new["proposal"] == old["proposal"]  # flow, bank spec and their provenance untouched
        pmfs = [[b for b in d["baselines"] if b["kind"] == "pmf"] for d in (new, old)]
        assert pmfs[0] == pmfs[1]
        command = task.reference.provenance["command"]
        assert command.endswith("--version 2 --reference-only") and "/unbiased=8" in command
        assert [b.file.provenance["command"] for b in task.baselines if b.kind == "md-histogram"] == [command]
        # the stored recipe: the refresh's reference runs, pins and settings; the build's training settings
        stored, built_by = (BuildRecipe.from_dict(d["recipe"]) for d in (new, old))
        assert stored.version == 2 and stored.pins()[str(base / "unbiased")] == 8
        assert stored.metad == built_by.metad and stored.fm == built_by.fm and stored.flow == built_by.flow
        # 8 unbiased chunks of 2 ps and the 4 static ones, on 1 ps blocks: 16 + 8 (was 20 + 8)
        assert task.load_reference().block_hist.shape[0] == 24
        scores = json.loads((root / "tasks" / name / "baseline_scores.json").read_text())
        assert scores["task_version"] == 2 and set(scores["baselines"]) == {"fm-unbiased", "fm-biased", "prior-only",
                                                                             "gb-obc2"}
    # refused before anything is written: a version not above the current one, other GB rows, a bad flag mix
    ref = root / "tasks" / "ala2-core-beta" / "reference.npz"
    sha = sha256_file(ref)
    with pytest.raises(ValueError, match="ala2-heavy-atom is version 2: give --version above it"):
        refresh_reference(recipe, root=root)
    with pytest.raises(ValueError, match=r"has GB rows \['gb-obc2'\]; give exactly these with --gb \(got \[\]\)"):
        refresh_reference(BuildRecipe("ala2", unbiased=(base / "unbiased",), version=3, block_ps=1.0), root=root)
    assert main(["make-task", "ala2", "--unbiased", str(base / "unbiased"), "--metad", str(base / "metad"),
                 "--version", "3", "--reference-only"]) == 2
    assert main(["make-task", "mueller-brown", "--reference-only"]) == 2  # its reference is exact
    # a full build refuses to overwrite the tasks with a version not above theirs, before training
    with pytest.raises(ValueError, match="ala2-heavy-atom is version 2: give --version above it"):
        build(BuildRecipe("ala2", unbiased=(base / "unbiased",), static=(base / "static",), metad=(base / "metad",),
                          version=2), root=root)
    assert sha256_file(ref) == sha and load_task(root / "tasks" / "ala2-core-beta").version == 2
    (root / "tasks" / "ala2-heavy-atom" / "gb-obc2.npz").write_bytes(b"tampered")
    from cgbg_bench.errors import HashMismatch

    with pytest.raises(HashMismatch, match="gb-obc2.npz: sha256 is"):
        refresh_reference(dataclasses.replace(recipe, version=3), root=root)
    assert sha256_file(ref) == sha


@pytest.mark.slow
def test_proposal_only_refresh_retrains_the_chosen_flows_and_rescores(built, tmp_path, monkeypatch):
    """--proposal-only: the core-beta -biased task gets version 2 with a flow trained by weighted
    likelihood at another power (0.5; the build's is 1; the Kish fraction of its weights below 1),
    a new bank, the same reference and PMF files, rescored baselines and a recipe that says so;
    every other task is untouched."""
    import json
    import shutil

    from cgbg_bench.build.alanine import refresh_proposals
    from cgbg_bench.build.recipe import load_recipe
    from cgbg_bench.cli import main

    src, _, cache = built
    monkeypatch.setenv("CGBG_BENCH_CACHE", str(tmp_path / "cache"))
    root = tmp_path / "repo"
    shutil.copytree(src, root)
    names = ("ala2-core-beta", "ala2-core-beta-biased", "ala2-heavy-atom", "ala2-heavy-atom-biased")
    before = {n: (root / "tasks" / n / "task.yaml").read_text() for n in names}
    target = root / "tasks" / "ala2-core-beta-biased"
    stored = load_recipe(target / "task.yaml")
    recipe = dataclasses.replace(stored, version=2, representations=("core-beta",),
                                 flow=dataclasses.replace(stored.flow, bias_weight_power=0.5))
    assert [p.name for p in refresh_proposals(recipe, variants=("biased",), root=root)] == ["ala2-core-beta-biased"]
    for n in names:
        if n != target.name:
            assert (root / "tasks" / n / "task.yaml").read_text() == before[n]
    old, new = yaml.safe_load(before[target.name]), yaml.safe_load((target / "task.yaml").read_text())
    task = load_task(target)
    assert task.version == 2
    for f in (task.proposal, task.reference, *(b.file for b in task.baselines), task.baseline_scores):
        f.verify()
    assert new["reference"] == old["reference"]
    assert [b for b in new["baselines"] if b["kind"] == "pmf"] == [b for b in old["baselines"] if b["kind"] == "pmf"]
    assert new["proposal"]["sha256"] != old["proposal"]["sha256"]
    training = new["proposal"]["provenance"]["flow_training"]
    assert 0 < training["weights"]["kish_fraction"]["train"] < 1
    assert new["proposal"]["provenance"]["command"].endswith("--flow-bias-weight-power 0.5 --proposal-only")
    assert BuildRecipe.from_dict(new["recipe"]) == dataclasses.replace(stored, version=2, flow=recipe.flow)
    scores = json.loads((target / "baseline_scores.json").read_text())
    assert scores["task_version"] == 2 and set(scores["baselines"]) == {"fm-unbiased", "fm-biased", "prior-only",
                                                                         "gb-obc2"}
    # refused before anything is written: the same version again, runs other than the task's, bad flag mixes
    sha = sha256_file(target / "flow.pt")
    with pytest.raises(ValueError, match="ala2-core-beta-biased is version 2: give --version above it"):
        refresh_proposals(recipe, variants=("biased",), root=root)
    with pytest.raises(ValueError, match="--proposal-only keeps the task's data"):
        refresh_proposals(dataclasses.replace(recipe.unpinned(), version=3), variants=("biased",), root=root)
    with pytest.raises(ValueError, match="this recipe also changes block_ps, fm"):
        refresh_proposals(dataclasses.replace(recipe, version=3, block_ps=5.0,
                                              fm=dataclasses.replace(recipe.fm, n_models=3)),
                          variants=("biased",), root=root)
    with pytest.raises(ValueError, match="proposal variants"):
        refresh_proposals(recipe, variants=("both",), root=root)
    assert sha256_file(target / "flow.pt") == sha
    args = ["make-task", "--recipe", str(target / "task.yaml"), "--version", "3"]
    assert main([*args, "--proposal", "biased"]) == 2  # --proposal without --proposal-only
    assert main([*args, "--proposal-only", "--fm-models", "2"]) == 2
    assert main([*args, "--proposal-only", "--reference-only"]) == 2
    assert main([*args, "--proposal-only", "--flow-bias-weight-power", "2"]) == 2  # outside [0, 1]
    assert sha256_file(target / "flow.pt") == sha


@pytest.mark.slow
def test_baselines_only_refresh_retrains_the_chosen_pmf_of_both_variants(built, tmp_path, monkeypatch):
    """--baselines-only --baseline fm-biased: both core-beta tasks get version 2 with PMF_B retrained
    with other force-matching settings (2 networks) on the task's runs, the same flows, banks,
    reference, GB rows and other baselines, rescored baselines and a recipe that says so; the
    heavy-atom tasks are untouched."""
    import json
    import shutil

    from cgbg_bench.build.alanine import refresh_baselines
    from cgbg_bench.build.recipe import load_recipe
    from cgbg_bench.cli import main

    src, _, cache = built
    monkeypatch.setenv("CGBG_BENCH_CACHE", str(tmp_path / "cache"))
    root = tmp_path / "repo"
    shutil.copytree(src, root)
    names = ("ala2-core-beta", "ala2-core-beta-biased", "ala2-heavy-atom", "ala2-heavy-atom-biased")
    before = {n: yaml.safe_load((root / "tasks" / n / "task.yaml").read_text()) for n in names}
    pmf_dir = root / "baselines" / "ala2-core-beta"
    pmf_sha = {f.name: sha256_file(f) for f in pmf_dir.glob("*.pt2")}
    stored = load_recipe(root / "tasks" / "ala2-core-beta" / "task.yaml")
    recipe = dataclasses.replace(stored, version=2, representations=("core-beta",),
                                 fm=dataclasses.replace(stored.fm, n_models=2))
    written = refresh_baselines(recipe, names=("fm-biased",), root=root)
    assert [p.name for p in written] == ["ala2-core-beta", "ala2-core-beta-biased"]
    for n in ("ala2-heavy-atom", "ala2-heavy-atom-biased"):
        assert yaml.safe_load((root / "tasks" / n / "task.yaml").read_text()) == before[n]
    assert sha256_file(pmf_dir / "fm-biased.pt2") != pmf_sha["fm-biased.pt2"]
    for name in ("fm-unbiased.pt2", "prior-only.pt2"):
        assert sha256_file(pmf_dir / name) == pmf_sha[name]
    side = yaml.safe_load((pmf_dir / "fm-biased.yaml").read_text())
    assert side["settings"]["n_models"] == 2
    assert side["command"].endswith("--fm-models 2 --baselines-only --baseline fm-biased")
    meta = yaml.safe_load((pmf_dir / "baselines.yaml").read_text())
    assert meta["fm-biased"]["training"]["n_models"] == 2 and meta["fm-unbiased"]["training"]["n_models"] == 1
    for n in ("ala2-core-beta", "ala2-core-beta-biased"):
        old, new = before[n], yaml.safe_load((root / "tasks" / n / "task.yaml").read_text())
        task = load_task(root / "tasks" / n)
        assert task.version == 2
        for f in (task.proposal, task.reference, *(b.file for b in task.baselines), task.baseline_scores):
            f.verify()
        assert new["proposal"] == old["proposal"] and new["reference"] == old["reference"]
        assert [b["name"] for b in new["baselines"]] == [b["name"] for b in old["baselines"]]
        assert [b["name"] for b, a in zip(new["baselines"], old["baselines"]) if b != a] == ["fm-biased"]
        entry = next(b for b in new["baselines"] if b["name"] == "fm-biased")
        assert entry["sha256"] == sha256_file(pmf_dir / "fm-biased.pt2")
        assert entry["provenance"]["command"] == side["command"]
        assert BuildRecipe.from_dict(new["recipe"]) == dataclasses.replace(stored, version=2, fm=recipe.fm)
        scores = json.loads((root / "tasks" / n / "baseline_scores.json").read_text())
        assert scores["task_version"] == 2
    # refused before anything is trained: the same version, runs other than the task's, other settings,
    # an unknown baseline, bad flag mixes
    sha = sha256_file(pmf_dir / "fm-biased.pt2")
    with pytest.raises(ValueError, match="ala2-core-beta is version 2: give --version above it"):
        refresh_baselines(recipe, root=root)
    with pytest.raises(ValueError, match="--baselines-only keeps the task's data"):
        refresh_baselines(dataclasses.replace(recipe.unpinned(), version=3), root=root)
    with pytest.raises(ValueError, match="this recipe also changes block_ps, reference"):
        refresh_baselines(dataclasses.replace(recipe, version=3, block_ps=5.0, reference="static"), root=root)
    with pytest.raises(ValueError, match="the force-matched ones are"):
        refresh_baselines(dataclasses.replace(recipe, version=3), names=("gb-obc2",), root=root)
    args = ["make-task", "--recipe", str(root / "tasks" / "ala2-core-beta" / "task.yaml"), "--version", "3"]
    assert main([*args, "--baseline", "fm-biased"]) == 2  # --baseline without --baselines-only
    assert main([*args, "--baselines-only", "--flow-epochs", "2"]) == 2
    assert main([*args, "--baselines-only", "--proposal-only"]) == 2
    assert main([*args, "--baselines-only", "--bank-size", "10"]) == 2
    assert sha256_file(pmf_dir / "fm-biased.pt2") == sha


@pytest.mark.slow
@pytest.mark.parametrize("run_name", ["static", "metad", "unbiased"])
def test_frame_log_weights_are_the_bias_energy_at_each_stored_frame(built, run_name):
    """Frames every 1 ps, bias energies every 0.1 ps: each frame's log-weight is V/kT of the sample
    at its own time (0 for an unbiased run), one per frame, read up to a pin."""
    from cgbg_bench.md.production import load_chunks
    from cgbg_bench.reference import frame_log_weights

    run_dir = built[0].parent / run_name
    d = load_chunks(run_dir)
    at = [int(np.flatnonzero(np.isclose(d["time_ps"], t, atol=1e-6))[0]) for t in d["frame_time_ps"]]
    expected = d["bias_energy_kj_per_mol"][at].astype(float) / 2.5
    lw = frame_log_weights(run_dir, 2.5)
    assert lw.shape == (len(d["frame_time_ps"]),)
    if run_name == "unbiased":
        assert not lw.any()
    else:
        assert np.ptp(expected) > 0 and lw == pytest.approx(expected, rel=1e-12)
    per_chunk = len(lw) // len(list(run_dir.glob("chunk_*.npz")))
    assert len(frame_log_weights(run_dir, 2.5, max_chunks=1)) == per_chunk


@pytest.mark.slow
def test_refuses_kinds_too_short_to_weigh(built, tmp_path):
    base = built[0].parent
    recipe = BuildRecipe("ala2", unbiased=(base / "unbiased",), static=(base / "static",), metad=(base / "metad",),
                         bank_size=3000, block_ps=2.0)
    with pytest.raises(ValueError, match=r"unbiased runs \(unbiased, 0.02 ns\): 1 blocks of 1000 ps, fewer than the 8"):
        build(recipe, root=tmp_path)
    assert not (tmp_path / "tasks").exists()  # refused before anything was written


def test_refuses_without_reference_runs(tmp_path):
    with pytest.raises(ValueError, match="reference needs"):
        build(BuildRecipe("ala2", metad=(tmp_path,)), root=tmp_path)


@pytest.mark.slow
def test_md_report_cli_on_the_same_runs(built, capsys):
    import json

    from cgbg_bench.cli import main

    base = built[0].parent
    argv = ["md", "report", "--reference", str(base / "unbiased"), str(base / "metad"),
            "--gb", f"obc2={base / 'obc2'}", "--block-ps", "2", "--n-bootstrap", "20", "--json"]
    assert main(argv) == 0
    rep = json.loads(capsys.readouterr().out)
    roles = {r["dir"].rsplit("/", 1)[-1]: r["role"] for r in rep["runs"]}
    assert roles == {"unbiased": "reference", "metad": "evolving bias (not used)", "obc2": "baseline obc2"}
    assert rep["n_blocks"] == 10 and len(rep["halves_js"]) == 1 and len(rep["phi_positive"]) == 1
    assert rep["groups"] == {"unbiased": {"runs": ["unbiased"], "ns": pytest.approx(0.02), "blocks": None,
                                          "basin_variance": None, "share": 1.0}}
    # unbiased with static-bias runs: on 1 ps blocks they are weighed (as in the build), on the
    # default 1000 ps basin blocks they are too short to be, and the error says so
    both = argv[:4] + [str(base / "static"), "--block-ps", "1", "--basin-block-ps", "1", "--n-bootstrap", "20"]
    assert main(both) == 0
    out = capsys.readouterr().out
    assert "kinds of run, weighed by the inverse" in out and "(1 ps blocks" in out
    assert main(both + ["--json"]) == 0
    shares = {g: v["share"] for g, v in json.loads(capsys.readouterr().out)["groups"].items()}
    assert list(shares)[0] == "unbiased" and sum(shares.values()) == pytest.approx(1.0) and len(shares) == 2
    assert main(argv[:4] + [str(base / "static"), "--block-ps", "2"]) == 2
    assert "fewer than the 8 needed to estimate their basin variance" in capsys.readouterr().err
    assert set(rep["baselines"]["obc2"]) >= {"js", "js_floor", "pmf_error"}
    assert main(argv[:-1]) == 0
    out = capsys.readouterr().out
    assert "phi > 0 population" in out and "| JS floor " in out
    # --max-chunks: the snapshot a task was built from (the unbiased run's first two chunks)
    assert main(argv + ["--max-chunks", f"{base / 'unbiased'}=2"]) == 0
    snap = json.loads(capsys.readouterr().out)
    ns = {r["dir"].rsplit("/", 1)[-1]: r["ns"] for r in snap["runs"]}
    full = {r["dir"].rsplit("/", 1)[-1]: r["ns"] for r in rep["runs"]}
    assert snap["n_blocks"] < rep["n_blocks"] and ns["metad"] == full["metad"]
    assert 0 < ns["unbiased"] < full["unbiased"]
    assert main(argv + ["--max-chunks", "unbiased=x"]) == 2 and "expected DIR=N" in capsys.readouterr().err
    assert main(["md", "report", "--reference", str(base)]) == 2
    assert "not a run directory" in capsys.readouterr().err
    # a run shorter than two blocks has no halves: the error names the run and the fix
    assert main(argv[:4] + ["--block-ps", "30"]) == 2  # 20 ps: one (partial) block of 30 ps
    err = capsys.readouterr().err
    assert "unbiased: fewer than 2 blocks of 30 ps" in err and "smaller --block-ps" in err


@pytest.mark.slow
def test_md_report_compares_basins_of_runs_in_and_out_of_the_reference(built, capsys):
    import json

    from cgbg_bench.cli import main

    base = built[0].parent
    argv = ["md", "report", "--reference", str(base / "static"), str(base / "static-2"),
            "--check", str(base / "obc2"), str(base / "unbiased"), "--block-ps", "2", "--basin-block-ps", "4",
            "--n-bootstrap", "20"]
    assert main(argv + ["--json"]) == 0
    rep = json.loads(capsys.readouterr().out)
    basins = rep["basins"]
    assert basins["names"] == ["beta/PPII", "alpha_R", "phi > 0"] and basins["block_ps"] == 4
    runs = {r["dir"].rsplit("/", 1)[-1]: r for r in basins["runs"]}
    assert [runs[n]["in_reference"] for n in ("static", "static-2", "obc2", "unbiased")] == [True, True, False, False]
    assert {r["dir"].rsplit("/", 1)[-1]: r["role"] for r in rep["runs"]}["obc2"] == "check (not in the reference)"
    for r in runs.values():
        assert sum(r["population"][0]) == pytest.approx(1.0)
    assert runs["unbiased"]["blocks"] == 5  # 10 blocks of 2 ps merged in pairs
    # with two reference runs every run has another to be compared with (values: compare_basins tests)
    assert all(r["z_vs_other_reference_runs"] is not None for r in runs.values())
    assert runs["static"]["blocks"] == 2 and runs["static"]["error"][0][0] is not None
    # the two checked runs pooled: not in the reference, every block of both, and each basin's
    # population between the two runs' (a mixture of the two)
    from cgbg_bench.md.report import POOLED_CHECKS

    pooled = runs[POOLED_CHECKS]
    assert not pooled["in_reference"] and pooled["blocks"] == runs["obc2"]["blocks"] + runs["unbiased"]["blocks"]
    for b in range(3):
        lo, hi = sorted(runs[n]["population"][0][b] for n in ("obc2", "unbiased"))
        assert lo - 1e-12 <= pooled["population"][0][b] <= hi + 1e-12
    assert main(argv) == 0 and "basin populations" in capsys.readouterr().out
    # one reference run: it has no other run to be compared with, the checked run does
    assert main(argv[:4] + argv[5:] + ["--json"]) == 0
    one = {r["dir"].rsplit("/", 1)[-1]: r for r in json.loads(capsys.readouterr().out)["basins"]["runs"]}
    assert one["static"]["z_vs_other_reference_runs"] is None and one["obc2"]["z_vs_other_reference_runs"]
    assert main(argv[:5] + ["--check", str(base / "metad"), "--block-ps", "2"]) == 2
    assert "only unbiased and static-bias" in capsys.readouterr().err


@pytest.mark.slow
def test_compare_cli_on_the_built_task(built, monkeypatch, capsys, tmp_path):
    import json

    from cgbg_bench.cli import main

    root, _, cache = built
    monkeypatch.setenv("CGBG_BENCH_CACHE", str(cache))
    monkeypatch.setenv("CGBG_BENCH_TASKS", str(root / "tasks"))
    pmfs = [str(root / "baselines" / "ala2-core-beta" / f"{n}.pt2") for n in ("fm-unbiased", "fm-biased")]
    plot = tmp_path / "phi.png"
    assert main(["compare", *pmfs, "--task", "ala2-core-beta", "--n-bootstrap", "20", "--json",
                 "--plot", str(plot), "--device", "cpu"]) == 0
    out = capsys.readouterr().out
    rows = {r["entry"]: r for r in json.loads(out[: out.rindex("}") + 1])["rows"]}
    assert set(rows) == {"fm-unbiased", "fm-biased", "gb-obc2 (MD)", "proposal (raw)", "reference (MD)"}
    assert {"js", "pmf_error", "ess", "phi_positive"} <= set(rows["fm-biased"])
    assert all(0 <= r["phi_positive"][0] <= 1 for r in rows.values())
    assert plot.stat().st_size > 10_000
    assert main(["compare", *pmfs, "--task", "ala2-core-beta", "--label", "only-one"]) == 2
    assert "give one label per file" in capsys.readouterr().err


def _small(base, **changes) -> BuildRecipe:
    """A core-beta recipe of the fixture's runs with tiny training settings (static-bias reference)."""
    return BuildRecipe("ala2", unbiased=(base / "unbiased",), static=(base / "static",), metad=(base / "metad",),
                       bank_size=500, block_ps=2.0, representations=("core-beta",), reference="static",
                       flow=FlowSettings(epochs=1, transforms=1, hidden=16, batch_size=64),
                       fm=FMSettings(seed=1, max_epochs=1, n_rbf=4, hidden=(16,), block_ps=1.0), **changes)


@pytest.mark.slow
def test_build_one_representation(built, tmp_path, monkeypatch):
    """representations core-beta writes only the core-beta tasks and baselines, and says so in
    the recorded command (with the non-default prior exponent, which the baselines use); an
    unknown representation is refused."""
    base = built[0].parent
    monkeypatch.setenv("CGBG_BENCH_CACHE", str(tmp_path / "cache"))
    recipe = _small(base)
    recipe = dataclasses.replace(recipe, fm=dataclasses.replace(recipe.fm, repulsion_power=12))
    written = build(recipe, root=tmp_path)
    assert sorted(p.name for p in written) == ["ala2-core-beta", "ala2-core-beta-biased"]
    assert sorted(p.name for p in (tmp_path / "baselines").iterdir()) == ["ala2-core-beta"]
    command = load_task(written[0]).proposal.provenance["command"]
    assert "--representation core-beta" in command and "--reference static" in command
    assert command.endswith("--fm-hidden 16 --fm-repulsion-power 12")
    for name in ("fm-biased", "fm-unbiased", "prior-only"):
        side = yaml.safe_load((tmp_path / "baselines" / "ala2-core-beta" / f"{name}.yaml").read_text())
        assert side["prior"]["repulsion"]["power"] == 12
    with pytest.raises(ValueError, match="ala2 has"):
        build(dataclasses.replace(recipe, representations=("backbone",)), root=tmp_path)


def test_reference_from_static_needs_static_runs(tmp_path):
    with pytest.raises(ValueError, match="needs at least one --static"):
        build(BuildRecipe("ala2", unbiased=(tmp_path / "u",), metad=(tmp_path / "m",), reference="static"),
              root=tmp_path)
    with pytest.raises(ValueError, match="'all' or 'static'"):
        BuildRecipe("ala2", unbiased=(tmp_path,), static=(tmp_path / "s",), metad=(tmp_path / "m",),
                    reference="unbiased")


@pytest.mark.slow
def test_rerun_of_an_interrupted_build_reuses_its_finished_baselines(built, tmp_path, monkeypatch):
    """The same recipe again (as after an interruption) reuses every baseline whose sidecar
    records that command and the same data and rewrites its own tasks of that version; a damaged
    export is retrained; other data or settings are another recipe, so a task version not above
    the current one is refused and a new version retrains everything."""
    import cgbg_bench.fm.pipeline as pipeline

    base = built[0].parent
    monkeypatch.setenv("CGBG_BENCH_CACHE", str(tmp_path / "cache"))
    trained, real = [], pipeline.train_and_export
    monkeypatch.setattr(pipeline, "train_and_export", lambda *a, **k: trained.append(a[3].stem) or real(*a, **k))
    recipe = _small(base)
    build(recipe, root=tmp_path)
    assert sorted(trained) == ["fm-biased", "fm-unbiased", "prior-only"]
    assert (tmp_path / "cache" / "fm-members").is_dir()  # members were kept there while training,
    assert not list((tmp_path / "cache" / "fm-members").iterdir())  # and removed once exported
    out = tmp_path / "baselines" / "ala2-core-beta"
    shas = {p.name: sha256_file(p) for p in out.glob("*.pt2")}
    trained.clear()
    build(recipe, root=tmp_path)
    assert trained == [] and {p.name: sha256_file(p) for p in out.glob("*.pt2")} == shas
    task = load_task(tmp_path / "tasks" / "ala2-core-beta")
    assert task.version == 1 and [b.name for b in task.baselines][:3] == ["fm-unbiased", "fm-biased", "prior-only"]
    with open(out / "fm-biased.pt2", "ab") as fh:
        fh.write(b"\0")  # damaged: no longer the file its sidecar records
    build(recipe, root=tmp_path)
    assert trained == ["fm-biased"]
    longer = dataclasses.replace(recipe, fm=dataclasses.replace(recipe.fm, max_epochs=2))
    fewer = recipe.with_pins({str(base / "static"): 2})
    for other in (longer, fewer):  # another recipe: not as a rerun of version 1
        with pytest.raises(ValueError, match="ala2-core-beta is version 1: give --version above it"):
            build(other, root=tmp_path)
    trained.clear()
    build(dataclasses.replace(fewer, version=2), root=tmp_path)
    assert sorted(trained) == ["fm-biased", "fm-unbiased", "prior-only"]


@pytest.mark.slow
def test_dihedral_correction_goes_to_pmf_b_only(built, tmp_path, monkeypatch):
    """make-task --fm-dihedral-correction K: fm-biased gets the correction (settings, sidecar, command),
    fm-unbiased and prior-only do not (the unbiased run covers phi > 0 too sparsely)."""
    base = built[0].parent
    monkeypatch.setenv("CGBG_BENCH_CACHE", str(tmp_path / "cache"))
    recipe = _small(base)
    build(dataclasses.replace(recipe, fm=dataclasses.replace(recipe.fm, dihedral_correction=1)), root=tmp_path)
    out = tmp_path / "baselines" / "ala2-core-beta"
    sides = {n: yaml.safe_load((out / f"{n}.yaml").read_text()) for n in ("fm-biased", "fm-unbiased", "prior-only")}
    assert sides["fm-biased"]["settings"]["dihedral_correction"] == 1
    assert sides["fm-biased"]["dihedral_correction"]["order"] == 1
    assert sides["fm-biased"]["command"].endswith("--fm-dihedral-correction 1")
    for name in ("fm-unbiased", "prior-only"):
        assert "dihedral_correction" not in sides[name]["settings"] and sides[name]["dihedral_correction"] is None
    # the task's baseline descriptions and baselines.yaml say so too
    meta = yaml.safe_load((out / "baselines.yaml").read_text())
    assert "order-1 (phi, psi) Fourier correction" in meta["fm-biased"]["description"]
    assert meta["fm-biased"]["training"]["dihedral_correction"] == 1
    for name in ("fm-unbiased", "prior-only"):
        assert "Fourier" not in meta[name]["description"] and "dihedral_correction" not in meta[name]["training"]
    task = yaml.safe_load((tmp_path / "tasks" / "ala2-core-beta" / "task.yaml").read_text())
    described = {b["name"]: b["description"] for b in task["baselines"]}
    assert "order-1 (phi, psi) Fourier correction" in described["fm-biased"]


@pytest.mark.slow
def test_make_task_recipe_rebuilds_what_the_flags_built(built, tmp_path, monkeypatch):
    """`make-task --recipe tasks/NAME/task.yaml` builds the same files as the flags that built
    that task (the training settings, which no flag sets, come from a recipe file under the flags)."""
    import json

    import cgbg_bench.build.alanine as alanine
    from cgbg_bench.cli import main

    base = built[0].parent
    monkeypatch.setenv("CGBG_BENCH_CACHE", str(tmp_path / "cache"))
    small = _small(base).to_dict()
    settings = tmp_path / "small.yaml"
    settings.write_text(yaml.safe_dump({"system": "ala2", "flow": small["flow"], "fm": small["fm"]}))
    roots = {"flags": tmp_path / "a", "recipe": tmp_path / "b"}
    monkeypatch.setattr(alanine, "_repo_root", lambda: roots["flags"])
    assert main(["make-task", "ala2", "--recipe", str(settings), "--unbiased", str(base / "unbiased"),
                 "--static", str(base / "static"), "--metad", str(base / "metad"), "--representation", "core-beta",
                 "--reference", "static", "--block-ps", "2", "--bank-size", "500",
                 "--max-chunks", f"{base / 'unbiased'}=6"]) == 0
    task_yaml = roots["flags"] / "tasks" / "ala2-core-beta" / "task.yaml"
    recorded = yaml.safe_load(task_yaml.read_text())["recipe"]
    assert recorded["runs"]["unbiased"] == [{"dir": str(base / "unbiased"), "chunks": 6}]
    monkeypatch.setattr(alanine, "_repo_root", lambda: roots["recipe"])
    assert main(["make-task", "--recipe", str(task_yaml)]) == 0

    def files(root):  # the data files (flows and exports are compared by content: torch writes the
        return {p.relative_to(root).as_posix(): sha256_file(p)  # temporary file's name into the archive)
                for p in sorted(root.rglob("*.npz"))}

    assert files(roots["recipe"]) == files(roots["flags"]) and len(files(roots["flags"])) == 2
    for name in ("ala2-core-beta", "ala2-core-beta-biased"):
        a, b = (torch.load(r / "tasks" / name / "flow.pt", weights_only=True) for r in roots.values())
        assert a["config"] == b["config"] and a["state_dict"].keys() == b["state_dict"].keys()
        assert all(torch.equal(v, b["state_dict"][k]) for k, v in a["state_dict"].items())
    from cgbg_bench.pmf import load_pmf

    x = torch.as_tensor(load_task(task_yaml.parent).load_proposal().positions[:64])
    for name in ("fm-unbiased", "fm-biased", "prior-only"):
        a, b = (load_pmf(r / "baselines" / "ala2-core-beta" / f"{name}.pt2", device="cpu") for r in roots.values())
        with torch.no_grad():
            assert torch.equal(a(x), b(x)), name

    def unhashed(d):  # task.yaml without the sha256 of the flow, the exports and the scores (which hold them)
        for b in d["baselines"]:
            if b["kind"] == "pmf":
                b.pop("sha256")
        d["baseline_scores"].pop("sha256"), d["proposal"].pop("sha256")
        return d

    def scores(d):
        for row in d["baselines"].values():
            row.pop("runtime_s"), row.pop("submission_sha256")
        return d

    for name in ("ala2-core-beta", "ala2-core-beta-biased"):
        a, b = (unhashed(yaml.safe_load((r / "tasks" / name / "task.yaml").read_text())) for r in roots.values())
        assert a == b
        a, b = (scores(json.loads((r / "tasks" / name / "baseline_scores.json").read_text())) for r in roots.values())
        assert a == b
    side = yaml.safe_load((roots["recipe"] / "baselines" / "ala2-core-beta" / "baselines.yaml").read_text())
    assert side == yaml.safe_load((roots["flags"] / "baselines" / "ala2-core-beta" / "baselines.yaml").read_text())
