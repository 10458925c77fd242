"""One-off: add the ``recipe:`` block to task.yaml files built before recipes were stored.

    python -m cgbg_bench.build.migrate_recipe tasks/ala2-*/task.yaml [--check]

The recipe is derived from the make-task command recorded in the task's provenance (the one
place a recorded command line is parsed, with make-task's own parser): the proposal's command
(the build), with the reference's runs, pins and settings taken from the reference's command
when that was a ``--reference-only`` refresh; the version is the task's. Seeds, flow settings
and the force-matched baselines' settings that the command did not spell out are the recipe's
defaults, which were those of every shipped build; where the baselines' training sidecars are
present (``baselines/<system>-<representation>/fm-*.yaml``), their recorded settings are
compared with the recipe's and a difference refuses the migration. Only ``recipe:`` is added
(or replaced); nothing else in the file changes, and no file hash is recorded for task.yaml.
``--check``: say what would be written, write nothing.
"""

from __future__ import annotations

import argparse
import shlex
import sys
from pathlib import Path

import yaml

from cgbg_bench.build.recipe import LEGACY_BIAS_WEIGHT_POWER, BuildRecipe
from cgbg_bench.errors import TaskSchemaError

__all__ = ["recipe_from_command", "recipe_of_task", "migrate"]


def recipe_from_command(command: str) -> BuildRecipe:
    """The recipe of a recorded ``cgbg-bench make-task ala2 ...`` command line."""
    from cgbg_bench.cli.make import add_parser, recipe_from_args

    words = shlex.split(command)
    if words[:2] != ["cgbg-bench", "make-task"]:
        raise TaskSchemaError(f"not a make-task command: {command[:80]!r}")
    parser = argparse.ArgumentParser(prog="cgbg-bench", exit_on_error=False)
    add_parser(parser.add_subparsers(dest="command"))
    try:
        args = parser.parse_args(words[1:])
    except (argparse.ArgumentError, SystemExit) as exc:
        raise TaskSchemaError(f"recorded command not understood ({exc}): {command[:200]!r}") from None
    return recipe_from_args(args)


def recipe_of_task(path: Path, data: dict) -> BuildRecipe:
    """The recipe of a task.yaml's recorded provenance (see the module docstring)."""
    import dataclasses

    proposal_cmd = data["proposal"]["provenance"]["command"]
    reference_cmd = data["reference"]["provenance"]["command"]
    recipe = recipe_from_command(proposal_cmd)
    if reference_cmd != proposal_cmd:
        recipe = recipe.with_reference_of(recipe_from_command(reference_cmd))
    recipe = dataclasses.replace(recipe, version=data["version"])
    if "--flow-bias-weight-power" not in proposal_cmd:  # built before the flows' weighted likelihood
        recipe = dataclasses.replace(recipe, flow=dataclasses.replace(recipe.flow,
                                                                      bias_weight_power=LEGACY_BIAS_WEIGHT_POWER))
    unpinned = [r.dir for r in recipe.all_runs() if r.chunks is None]
    if unpinned:
        raise TaskSchemaError(f"{path}: the recorded commands do not pin {', '.join(unpinned)}")
    _check_sidecars(path, data, recipe)
    return recipe


def _check_sidecars(path: Path, data: dict, recipe: BuildRecipe) -> None:
    """Compare the force-matching settings the baselines' sidecars record with the recipe's."""
    import dataclasses

    from cgbg_bench.fm.pipeline import _expected_settings

    for b in data.get("baselines") or []:
        if b.get("kind") != "pmf":
            continue
        side_path = (path.parent / b["path"]).with_suffix(".yaml")
        if not side_path.is_file():
            continue
        side = yaml.safe_load(side_path.read_text())
        prior_only = b["name"] == "prior-only"
        fm = recipe.fm if b["name"] == "fm-biased" else dataclasses.replace(recipe.fm, dihedral_correction=0)
        recorded = {k: v for k, v in side["settings"].items() if k != "temperature_kelvin"}
        if recorded != _expected_settings(fm, prior_only):
            raise TaskSchemaError(f"{path}: baseline {b['name']}'s sidecar {side_path} records settings {recorded}, "
                                  f"the recipe derived from the command gives {_expected_settings(fm, prior_only)}")


def migrate(path: Path, *, check: bool = False) -> BuildRecipe:
    """Add (or replace) the ``recipe:`` block of one task.yaml; returns the recipe."""
    from cgbg_bench.build.provenance import write_task_yaml

    path = Path(path)
    data = yaml.safe_load(path.read_text())
    recipe = recipe_of_task(path, data)
    if not check:
        data["recipe"] = recipe.to_dict()
        write_task_yaml(path.parent, data)
    return recipe


def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="python -m cgbg_bench.build.migrate_recipe", description=__doc__.split("\n")[0])
    p.add_argument("task_yaml", nargs="+", type=Path)
    p.add_argument("--check", action="store_true", help="print the recipes, write nothing")
    args = p.parse_args(argv)
    for path in args.task_yaml:
        recipe = migrate(path, check=args.check)
        print(f"{path}: {'would write' if args.check else 'wrote'} recipe (version {recipe.version}, "
              f"{len(recipe.pins())} pinned runs)")
        if args.check:
            print(yaml.safe_dump({"recipe": recipe.to_dict()}, sort_keys=False))
    return 0


if __name__ == "__main__":
    sys.exit(main())
