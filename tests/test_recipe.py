"""The build recipe (cgbg_bench.build.recipe): round trip, strict keys, one place for defaults,
make-task's flags as changes to a recipe, and the recipes migrated into the shipped ala2 tasks."""

from __future__ import annotations

import argparse
import dataclasses
import inspect
from pathlib import Path

import pytest
import yaml

from cgbg_bench.build.recipe import LEGACY_BIAS_WEIGHT_POWER, BuildRecipe, FlowSettings, Run, Seeds, load_recipe
from cgbg_bench.errors import TaskSchemaError
from cgbg_bench.fm.pipeline import FMSettings

ROOT = Path(__file__).resolve().parents[1]
ALA2 = ("ala2-core-beta", "ala2-core-beta-biased", "ala2-heavy-atom", "ala2-heavy-atom-biased")


def _full() -> BuildRecipe:
    return BuildRecipe(
        "ala2", unbiased=(Run("data/ala2/u", 3),), static=(Run("data/ala2/s", 4), Run("data/ala2/s2")),
        metad=(Run("data/ala2/m", 5),), gb={"obc1": (Run("data/ala2/o1", 1),), "obc2": (Run("data/ala2/o2"),)},
        representations=("core-beta",), version=7, reference="static", block_ps=200.0, basin_block_ps=500.0,
        discard_ps=10.0, bank_size=1000, seeds=Seeds(flow=1, bank=2), flow=FlowSettings(epochs=3, mirror=0.0),
        fm=FMSettings(seed=5, hidden=(64, 64), n_models=4, lr_halve_after=None, dihedral_correction=4))


def _parse(*argv: str):
    from cgbg_bench.cli.make import add_parser

    parser = argparse.ArgumentParser()
    add_parser(parser.add_subparsers(dest="command"))
    return parser.parse_args(["make-task", *argv])


def test_round_trip_through_yaml():
    recipe = _full()
    data = yaml.safe_load(yaml.safe_dump(recipe.to_dict(), sort_keys=False))
    assert data == recipe.to_dict()
    assert BuildRecipe.from_dict(data) == recipe
    assert BuildRecipe.from_dict(BuildRecipe("ala2").to_dict()) == BuildRecipe("ala2")
    # a key left out takes the recipe's default; an fm block given in part keeps the other defaults
    partial = BuildRecipe.from_dict({"system": "ala2", "fm": {"n_models": 2}, "block_ps": 100})
    assert partial.fm == dataclasses.replace(BuildRecipe("ala2").fm, n_models=2) and partial.block_ps == 100.0
    assert recipe.pins() == {"data/ala2/u": 3, "data/ala2/s": 4, "data/ala2/m": 5, "data/ala2/o1": 1}


@pytest.mark.parametrize("change, message", [
    ({"blok_ps": 1}, "recipe: unknown key 'blok_ps'; did you mean 'block_ps'?"),
    ({"runs": {"unbaised": []}}, "recipe: runs: unknown key 'unbaised'; did you mean 'unbiased'?"),
    ({"runs": {"unbiased": [{"dir": "x", "chunk": 3}]}}, r"runs: unbiased\[0\]: unknown key 'chunk'; did you mean"),
    ({"runs": {"unbiased": [{"chunks": 3}]}}, r"runs: unbiased\[0\]: missing required key\(s\) \['dir'\]"),
    ({"fm": {"hiden": [8]}}, "recipe: fm: unknown key 'hiden'; did you mean 'hidden'?"),
    ({"flow": {"epoch": 2}}, "recipe: flow: unknown key 'epoch'; did you mean 'epochs'?"),
    ({"seeds": {"fm": 2}}, "recipe: seeds: unknown key 'fm'"),
    ({"version": "11"}, "recipe: version: expected int, got '11'"),
    ({"fm": {"n_models": 2.5}}, "recipe: fm: n_models: expected int"),
    ({"fm": {"hidden": 64}}, "recipe: fm: hidden: expected list"),
    ({"runs": {"static": [{"dir": "x", "chunks": 0}]}}, "chunks must be a whole number >= 1"),
    ({"reference": "unbiased"}, "reference must be 'all' or 'static'"),
    ({"fm": {"n_models": 0}}, "give a number of networks >= 1"),
    ({"runs": {"unbiased": [{"dir": "x"}], "static": [{"dir": "./x"}]}}, "run x is given more than once"),
])
def test_strict_keys_and_values(change, message):
    with pytest.raises(TaskSchemaError, match=message):
        BuildRecipe.from_dict({"system": "ala2", **change})


def test_defaults_live_in_the_recipe_only():
    """make-task's recipe flags have no defaults of their own, and neither have the builders nor the
    force-matching functions: the recipe's and FMSettings' are the only ones."""
    from cgbg_bench.build.alanine import build, refresh_proposals, refresh_reference
    from cgbg_bench.cli.make import recipe_from_args
    from cgbg_bench.fm.peptide import train_peptide_pmf, training_settings

    args = _parse("ala2")
    skip = {"command", "family", "func"}
    assert {k: v for k, v in vars(args).items() if k not in skip and v not in (None, False)} == {}
    assert recipe_from_args(args) == BuildRecipe("ala2")
    for fn in (build, refresh_reference):
        params = inspect.signature(fn).parameters
        assert list(params) == ["recipe", "root"] and params["root"].default is None
    params = inspect.signature(refresh_proposals).parameters
    assert list(params) == ["recipe", "variants", "root"] and params["root"].default is None
    params = inspect.signature(train_peptide_pmf).parameters
    assert set(params) == {"data", "settings", "prior_only", "checkpoint_dir", "progress", "overrides"}
    assert set(inspect.signature(training_settings).parameters) == {"settings", "prior_only", "temperature_kelvin"}
    # the help texts show the recipe's defaults
    from cgbg_bench.cli.make import _default

    assert _default("block_ps") == "1000" and _default("hidden", "fm") == "128 128"
    assert _default("bias_weight_power", "flow") == "1"


def test_flags_change_the_recipe(tmp_path):
    from cgbg_bench.cli.make import recipe_from_args

    path = tmp_path / "recipe.yaml"
    path.write_text(yaml.safe_dump(_full().to_dict()))
    assert recipe_from_args(_parse("--recipe", str(path))) == _full()
    changed = recipe_from_args(_parse("--recipe", str(path), "--version", "8", "--fm-models", "2", "--gb",
                                      "obc2=data/ala2/x", "--max-chunks", "data/ala2/x=9", "--block-ps", "50"))
    assert changed == dataclasses.replace(_full(), version=8, fm=dataclasses.replace(_full().fm, n_models=2),
                                          gb={"obc2": (Run("data/ala2/x", 9),)}, block_ps=50.0)
    repinned = recipe_from_args(_parse("--recipe", str(path), "--repin", "--max-chunks", "data/ala2/m=6"))
    assert repinned.pins() == {"data/ala2/m": 6}
    from cgbg_bench.errors import CgbgError

    with pytest.raises(TaskSchemaError, match="pin for data/ala2/nope, which is not one of its runs"):
        recipe_from_args(_parse("--recipe", str(path), "--max-chunks", "data/ala2/nope=2"))
    with pytest.raises(CgbgError, match="that recipe builds ala2"):
        recipe_from_args(_parse("ala3", "--recipe", str(path)))
    with pytest.raises(CgbgError, match="give a task family"):
        recipe_from_args(_parse())


def test_cli_refusals_exit_2(tmp_path, capsys):
    from cgbg_bench.cli import main

    path = tmp_path / "recipe.yaml"
    path.write_text("system: ala2\nbank_sise: 3\n")
    assert main(["make-task", "--recipe", str(path)]) == 2
    assert "did you mean 'bank_size'?" in capsys.readouterr().err
    assert main(["make-task", "--recipe", str(ROOT / "tasks" / "mueller-brown" / "task.yaml")]) == 2
    assert "no recipe recorded" in capsys.readouterr().err
    assert main(["make-task", "ala2", "--fm-models", "0", "--unbiased", "x"]) == 2
    assert "give a number of networks >= 1" in capsys.readouterr().err


@pytest.mark.parametrize("name", ALA2)
def test_shipped_ala2_tasks_carry_their_recipe(name, monkeypatch):
    """The migrated recipe is what the recorded commands say (the one place they are parsed), it
    writes those commands back, and `make-task --recipe` hands the builder exactly that recipe."""
    from cgbg_bench.build.migrate_recipe import recipe_of_task
    from cgbg_bench.cli import main
    from cgbg_bench.task import load_task

    path = ROOT / "tasks" / name / "task.yaml"
    data = yaml.safe_load(path.read_text())
    recipe = load_recipe(path)
    stored = dict(data["recipe"], flow={"bias_weight_power": LEGACY_BIAS_WEIGHT_POWER, **data["recipe"]["flow"]})
    assert recipe.to_dict() == stored and recipe.version == data["version"]
    import re

    def strip(c):  # one refresh may cover both representations; each task records its own
        return re.sub(r" --representation \S+", "", c)

    proposal_command = data["proposal"]["provenance"]["command"]
    if "--proposal-only" in proposal_command:  # flows retrained after recipes were stored: no migration
        assert strip(recipe.command(proposal_only=True)) == strip(proposal_command)
    else:
        assert recipe_of_task(path, data) == recipe
    ref_command = data["reference"]["provenance"]["command"]
    if "--reference-only" in ref_command:  # a refreshed version: its reference and GB rows by the refresh

        # the reference may be older than the flows (a later --proposal-only refresh): its version
        ref_version = int(re.search(r"--version (\d+)", ref_command).group(1))
        assert ref_version <= recipe.version
        ref_recipe = dataclasses.replace(recipe, version=ref_version)
        assert strip(ref_recipe.command(reference_only=True)) == strip(ref_command)
        assert data["proposal"]["provenance"]["command"].startswith("cgbg-bench make-task ala2 ")
    else:
        assert recipe.command() == data["proposal"]["provenance"]["command"]
    assert set(recipe.pins()) == {r.dir for r in recipe.all_runs()}  # every run pinned
    assert load_task(path).version == recipe.version  # task.yaml with its recipe loads
    seen = []
    monkeypatch.setattr("cgbg_bench.build.alanine.build", lambda r, root=None: seen.append(r) or [])
    assert main(["make-task", "--recipe", str(path)]) == 0
    assert seen == [recipe]


#: peptide tasks built with recipes from the start (no migrated commands): every one but ala2's
BUILT = tuple(sorted(p.parent.name for p in (ROOT / "tasks").glob("ala*/task.yaml") if p.parent.name not in ALA2))


@pytest.mark.parametrize("name", BUILT)
def test_built_tasks_record_their_recipe_and_replay_it(name, monkeypatch):
    """A task built from a recipe records it, its command lines are that recipe's, every run is
    pinned, and `make-task --recipe` hands the builder exactly that recipe."""
    from cgbg_bench.cli import main

    path = ROOT / "tasks" / name / "task.yaml"
    data = yaml.safe_load(path.read_text())
    recipe = load_recipe(path)
    assert recipe.to_dict() == data["recipe"] and recipe.version == data["version"]
    assert name.startswith(recipe.system + "-")
    assert data["proposal"]["provenance"]["command"] == recipe.command()
    assert data["reference"]["provenance"]["command"] == recipe.command()
    assert all(b["provenance"]["command"] == recipe.command() for b in data["baselines"])
    assert set(recipe.pins()) == {r.dir for r in recipe.all_runs()}
    seen = []
    monkeypatch.setattr("cgbg_bench.build.alanine.build", lambda r, root=None: seen.append(r) or [])
    assert main(["make-task", "--recipe", str(path)]) == 0
    assert seen == [recipe]


def test_info_verify_passes_with_the_recipe():
    from cgbg_bench.cli import main

    assert main(["info", str(ROOT / "tasks" / "ala2-core-beta"), "--verify"]) == 0


def test_flows_weighted_by_default_and_older_recipes_read_as_unweighted():
    """New recipes train the biased flows on the unbiased distribution (power 1); a stored recipe
    whose flow settings predate the field (every ala2 task up to v12) rebuilds its flows as they
    were built, unweighted; a written recipe reads back as it was."""
    from cgbg_bench.build.recipe import LEGACY_BIAS_WEIGHT_POWER, FlowSettings

    assert BuildRecipe(system="ala2").flow.bias_weight_power == 1.0
    stored = {k: v for k, v in dataclasses.asdict(FlowSettings()).items() if k != "bias_weight_power"}
    old = BuildRecipe.from_dict({"system": "ala2", "flow": stored})
    assert old.flow.bias_weight_power == LEGACY_BIAS_WEIGHT_POWER == 0.0
    # a hand-written recipe that sets a few flow fields takes the current default for the rest
    assert BuildRecipe.from_dict({"system": "ala2", "flow": {"epochs": 80}}).flow.bias_weight_power == 1.0
    for power in (0.0, 0.5, 1.0):
        r = BuildRecipe(system="ala2", flow=FlowSettings(bias_weight_power=power))
        assert BuildRecipe.from_dict(r.to_dict()) == r
    with pytest.raises(TaskSchemaError, match=r"bias_weight_power must be in \[0, 1\]"):
        BuildRecipe(system="ala2", flow=FlowSettings(bias_weight_power=1.5))


def test_make_task_flow_flags_are_the_recipes():
    """The CLI spells out its flow flags (so that building the parser does not import torch); they
    must be the recipe's FLOW_FLAGS, which the recorded command lines use."""
    from cgbg_bench.build.recipe import FLOW_FLAGS
    from cgbg_bench.cli.make import _FLOW_FLAGS

    assert _FLOW_FLAGS == {flag[2:].replace("-", "_"): name for flag, name in FLOW_FLAGS.items()}


def test_make_task_baseline_choices_are_the_builders():
    """--baseline's choices (spelled out in the CLI) are the builder's force-matched baselines, in order."""
    from cgbg_bench.build.alanine import FM_BASELINES
    from cgbg_bench.cli.make import _FM_BASELINE_NAMES

    assert _FM_BASELINE_NAMES == tuple(FM_BASELINES)


@pytest.mark.parametrize("flags", [["--proposal-only"], ["--baselines-only"], ["--baseline", "fm-biased"],
                                   ["--proposal", "biased"]])
def test_mueller_brown_refuses_the_alanine_refreshes(flags, capsys):
    """The alanine refresh flags on mueller-brown are refused (they used to be ignored: a full rebuild ran)."""
    from cgbg_bench.cli import main

    assert main(["make-task", "mueller-brown", *flags]) == 2
    assert "refreshes of the alanine tasks" in capsys.readouterr().err
