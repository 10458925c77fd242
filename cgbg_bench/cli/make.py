"""`cgbg-bench make-task FAMILY`: regenerate a task family's shipped files from scratch.

    cgbg-bench make-task mueller-brown
    cgbg-bench make-task ala2 --unbiased DIR... --static DIR... --metad DIR... --gb obc1=DIR --gb obc2=DIR
    cgbg-bench make-task --recipe tasks/ala2-core-beta/task.yaml            # rebuild from its recorded recipe
    cgbg-bench make-task --recipe tasks/ala2-core-beta/task.yaml --repin --version N   # from the runs as they are
    cgbg-bench make-task ala2 --unbiased DIR... --static DIR... --gb ... --version N --reference-only
    cgbg-bench make-task --recipe tasks/ala2-core-beta-biased/task.yaml --version N --proposal-only \
        --proposal biased --flow-bias-weight-power 1

The alanine flags change a :class:`cgbg_bench.build.recipe.BuildRecipe` (the recipe's defaults,
or the recipe of ``--recipe``); none of them has a default of its own.
"""

from __future__ import annotations

import argparse
import dataclasses
import re
from pathlib import Path

from cgbg_bench.errors import CgbgError

_FAMILIES = ("mueller-brown", "ala2", "ala3", "ala6")
# flag -> the FMSettings field it sets
_FM_FLAGS = {"fm_hidden": "hidden", "fm_models": "n_models", "fm_repulsion_power": "repulsion_power",
             "fm_dihedral_correction": "dihedral_correction"}
# flag -> the FlowSettings field it sets (argparse names of the recipe's FLOW_FLAGS, spelled out
# here so that building the parser does not import the recipe, and with it torch; a test checks them)
_FLOW_FLAGS = {"flow_epochs": "epochs", "flow_bias_weight_power": "bias_weight_power"}
# --baseline's choices: the builder's FM_BASELINES names, spelled out for the same reason (tested)
_FM_BASELINE_NAMES = ("fm-unbiased", "fm-biased", "prior-only")
# flag -> the BuildRecipe field it sets
_RECIPE_FLAGS = {"reference": "reference", "bank_size": "bank_size", "block_ps": "block_ps",
                 "basin_block_ps": "basin_block_ps", "discard_ps": "discard_ps", "version": "version"}


def _default(name: str, part: str = ""):
    """The recipe's default of a field (help texts; never a parser default); ``part``: "fm", "flow" or ""."""
    from cgbg_bench.build.recipe import BuildRecipe

    recipe = BuildRecipe(system="ala2")
    value = getattr(getattr(recipe, part) if part else recipe, name)
    if isinstance(value, tuple):
        return " ".join(map(str, value))
    return f"{value:g}" if isinstance(value, float) else value


_RECIPE_DEFAULT = re.compile(r"<recipe\.(?:(fm|flow)\.)?(\w+)>")


class _RecipeDefaultsFormatter(argparse.HelpFormatter):
    """Writes the recipe's defaults into the help texts (``<recipe.NAME>``, ``<recipe.fm.NAME>``) when
    help is shown: reading them imports the build recipe, and with it torch (~1.5 s), which every
    other command would otherwise pay when the parser is built."""

    def _get_help_string(self, action):
        text = super()._get_help_string(action)
        return _RECIPE_DEFAULT.sub(lambda m: str(_default(m.group(2), m.group(1) or "")), text) if text else text


def add_parser(sub) -> None:
    p = sub.add_parser("make-task", help="regenerate a task family's data, proposal, reference and baselines",
                       formatter_class=_RecipeDefaultsFormatter)
    p.add_argument("family", nargs="?", choices=_FAMILIES, help="task family to rebuild (or give --recipe)")
    p.add_argument("--quick", action="store_true",
                   help="mueller-brown: tiny runs to test the pipeline (not for shipping)")
    p.add_argument("--rescore-only", action="store_true",
                   help="mueller-brown: the builder's task version from the shipped files with the current "
                        "weighting: every baseline rescored and the resolution measured, the data files kept "
                        "(a full build makes the same files, seeded)")
    md = p.add_argument_group("alanine peptides (MD run directories made by `cgbg-bench md run`); every flag "
                              "changes the build recipe (cgbg_bench.build.recipe), stored in each task.yaml")
    md.add_argument("--recipe", type=Path, metavar="FILE",
                    help="build from the recipe recorded in FILE (a task.yaml, or a YAML file of a recipe alone); "
                         "the flags below change it, e.g. --version N --repin for a new version from the runs as "
                         "they are now")
    md.add_argument("--repin", action="store_true",
                    help="drop the recipe's chunk pins: every run is pinned to the chunks finished at build start "
                         "(or to --max-chunks)")
    md.add_argument("--unbiased", nargs="+", default=None, type=Path, help="unbiased explicit-solvent runs")
    md.add_argument("--static", nargs="+", default=None, type=Path, help="static-bias explicit-solvent runs")
    md.add_argument("--metad", nargs="+", default=None, type=Path, help="metadynamics runs (biased training data)")
    md.add_argument("--gb", action="append", default=None, metavar="NAME=DIR",
                    help="implicit-solvent run, e.g. obc2=DIR (repeatable; replaces the recipe's GB runs)")
    md.add_argument("--max-chunks", action="append", default=None, metavar="DIR=N",
                    help="use only the first N chunks of run DIR (default: the chunks finished when the "
                         "build starts; the build records them in the task's recipe)")
    md.add_argument("--reference", choices=["all", "static"], default=None,
                    help="runs that make the reference: unbiased and static-bias (all; each kind weighted by the "
                         "inverse variance of its basin populations, see --basin-block-ps) or the static-bias "
                         "runs alone (default <recipe.reference>)")
    md.add_argument("--bank-size", type=int, default=None, help="proposal bank size (default <recipe.bank_size>)")
    md.add_argument("--block-ps", type=float, default=None,
                    help="reference block length in ps (default <recipe.block_ps>)")
    md.add_argument("--basin-block-ps", type=float, default=None,
                    help="block length (ps) of the basin-population variances that weigh unbiased against "
                         "static-bias runs in the reference (default <recipe.basin_block_ps>, as `md report`)")
    md.add_argument("--discard-ps", type=float, default=None,
                    help="drop this much of each run's start (default <recipe.discard_ps>)")
    md.add_argument("--version", type=int, default=None,
                    help="task version to write (bump on every change; default <recipe.version>)")
    md.add_argument("--fm-hidden", type=int, nargs="+", default=None, metavar="N",
                    help="hidden layer widths of the force-matched baselines' MLP "
                         "(default <recipe.fm.hidden>)")
    md.add_argument("--fm-models", type=int, default=None, metavar="K",
                    help="force-matched baselines as the mean of K networks (seeds S..S+K-1 from the recipe's fm "
                         "seed, one split; default <recipe.fm.n_models>)")
    md.add_argument("--fm-repulsion-power", type=int, default=None, metavar="P",
                    help="exponent of the force-matched baselines' prior repulsion (sigma / r)^P "
                         "(default <recipe.fm.repulsion_power>)")
    md.add_argument("--fm-dihedral-correction", type=int, default=None, metavar="K",
                    help="add to PMF_B (fm-biased) the order-K Fourier series in each residue's (phi, psi), "
                         "fitted by least squares on its force residuals (not to fm-unbiased: the unbiased "
                         "run covers phi > 0 too sparsely; docs/force-matching.md; "
                         "default <recipe.fm.dihedral_correction>: none)")
    md.add_argument("--reference-only", action="store_true",
                    help="new --version of existing tasks with only the reference and the GB rows rebuilt "
                         "from the given runs (e.g. after more MD); flows and force-matched baselines are "
                         "kept, every baseline is rescored")
    md.add_argument("--flow-epochs", type=int, default=None, metavar="N",
                    help="training epochs of the proposal flows (default <recipe.flow.epochs>)")
    md.add_argument("--flow-bias-weight-power", type=float, default=None, metavar="P",
                    help="train the flows by weighted likelihood, each biased frame counted exp(V/kT)^P with V "
                         "its bias energy (1: the unbiased distribution, exactly for static-bias frames; 0: the "
                         "frames as sampled; default <recipe.flow.bias_weight_power>; the stored recipe of an "
                         "ala2 task up to v12 reads as 0, as its flows were trained: rebuild such a task with "
                         "--recipe, not by pasting its recorded command line, which predates the flag)")
    md.add_argument("--proposal-only", action="store_true",
                    help="new --version of existing tasks with only the proposal flows retrained (give --recipe "
                         "TASK/task.yaml and the flow flags); reference, GB rows and force-matched baselines are "
                         "kept, every baseline is rescored on the new bank")
    md.add_argument("--proposal", action="append", default=None, choices=["unbiased", "biased"],
                    help="with --proposal-only: retrain only these proposals (unbiased: the plain tasks, biased: "
                         "the -biased tasks; repeatable; default both)")
    md.add_argument("--baselines-only", action="store_true",
                    help="new --version of existing tasks with only the force-matched baselines retrained (give "
                         "--recipe TASK/task.yaml and the --fm-* flags) on the runs the task recorded; flows, "
                         "banks, reference and GB rows are kept, every baseline is rescored; a representation's "
                         "plain and -biased task share the baselines, so both are refreshed")
    md.add_argument("--baseline", action="append", default=None, choices=_FM_BASELINE_NAMES,
                    help="with --baselines-only: retrain only this baseline (repeatable; default all three)")
    md.add_argument("--representation", action="append", default=None, choices=["heavy-atom", "core-beta"],
                    help="build only this representation's tasks and baselines (repeatable; default: all)")
    p.set_defaults(func=run)


def recipe_from_args(args):
    """The build recipe of the parsed make-task arguments: ``--recipe``'s (or the defaults), changed by
    every alanine flag given. Raises CgbgError (typed) on a bad value or an unknown run."""
    from cgbg_bench.build.recipe import BuildRecipe, Run, load_recipe
    from cgbg_bench.cli._args import parse_max_chunks

    if args.recipe is not None:
        base = load_recipe(args.recipe)
        if args.family is not None and args.family != base.system:
            raise CgbgError(f"make-task {args.family} --recipe {args.recipe}: that recipe builds {base.system}")
    elif args.family is None:
        raise CgbgError("make-task: give a task family (e.g. ala2) or --recipe tasks/NAME/task.yaml")
    else:
        base = BuildRecipe(system=args.family)
    changes = {}
    for role in ("unbiased", "static", "metad"):
        dirs = getattr(args, role)
        if dirs is not None:
            changes[role] = tuple(Run(str(d)) for d in dirs)
    if args.gb is not None:
        gb: dict[str, tuple] = {}
        for item in args.gb:
            name, sep, path = item.partition("=")
            if not sep or not name or not path:
                raise CgbgError(f"--gb {item!r}: expected NAME=DIR, e.g. obc2=data/ala2/obc2")
            gb[name] = gb.get(name, ()) + (Run(path),)
        changes["gb"] = gb
    for flag, name in _RECIPE_FLAGS.items():
        if getattr(args, flag) is not None:
            changes[name] = getattr(args, flag)
    if args.representation is not None:
        changes["representations"] = tuple(args.representation)
    fm = {name: getattr(args, flag) for flag, name in _FM_FLAGS.items() if getattr(args, flag) is not None}
    if "hidden" in fm:
        fm["hidden"] = tuple(fm["hidden"])
    if fm:
        changes["fm"] = dataclasses.replace(base.fm, **fm)
    flow = {name: getattr(args, flag) for flag, name in _FLOW_FLAGS.items() if getattr(args, flag) is not None}
    if flow:
        changes["flow"] = dataclasses.replace(base.flow, **flow)
    recipe = dataclasses.replace(base, **changes)
    if args.repin:
        recipe = recipe.unpinned()
    if args.max_chunks is not None:
        recipe = recipe.with_pins(parse_max_chunks(args.max_chunks))
    return recipe


def run(args) -> int:
    if args.family == "mueller-brown":
        alanine_only = [f"--{f.replace('_', '-')}" for f in ("proposal_only", "baselines_only") if getattr(args, f)]
        alanine_only += [f"--{f}" for f in ("proposal", "baseline") if getattr(args, f) is not None]
        if alanine_only:
            raise CgbgError(f"{', '.join(alanine_only)}: refreshes of the alanine tasks; rebuild mueller-brown with "
                            "`cgbg-bench make-task mueller-brown` (or --rescore-only)")
        if args.reference_only:
            raise CgbgError("--reference-only refreshes the alanine tasks' MD reference; mueller-brown's is exact: "
                            "rebuild it with `cgbg-bench make-task mueller-brown`")
        from cgbg_bench.build import mueller_brown

        written = mueller_brown.rescore_only() if args.rescore_only else mueller_brown.build(quick=args.quick)
    else:
        from cgbg_bench.build.alanine import build, refresh_baselines, refresh_proposals, refresh_reference

        recipe = recipe_from_args(args)
        if args.proposal is not None and not args.proposal_only:
            raise CgbgError("--proposal picks the proposals of a --proposal-only refresh: add --proposal-only")
        if args.baseline is not None and not args.baselines_only:
            raise CgbgError("--baseline picks the baselines of a --baselines-only refresh: add --baselines-only")
        refreshes = [f for f in ("reference_only", "proposal_only", "baselines_only") if getattr(args, f)]
        if len(refreshes) > 1:
            raise CgbgError(f"{' and '.join('--' + f.replace('_', '-') for f in refreshes)}: give one (a full "
                            "build changes them all)")
        if args.baselines_only:  # what it would ignore is refused here; what it compares, by the refresh
            unused = [f"--{flag.replace('_', '-')}" for flag in (*_FLOW_FLAGS, "bank_size")
                      if getattr(args, flag) is not None]
            if unused:
                raise CgbgError(f"--baselines-only keeps the flows and banks: drop {', '.join(unused)}")
            written = _checked(refresh_baselines, recipe, names=tuple(dict.fromkeys(args.baseline or ())))
            for path in written:
                print(f"refreshed {path}")
            return 0
        if args.proposal_only:
            unused = [f"--{flag.replace('_', '-')}" for flag in _FM_FLAGS if getattr(args, flag) is not None]
            if unused:
                raise CgbgError(f"--proposal-only keeps the force-matched baselines: drop {', '.join(unused)}")
            variants = tuple(args.proposal) if args.proposal else ("unbiased", "biased")
            written = _checked(refresh_proposals, recipe, variants=variants)
            for path in written:
                print(f"refreshed {path}")
            return 0
        if args.reference_only:
            unused = [f"--{flag.replace('_', '-')}" for flag in (*_FM_FLAGS, *_FLOW_FLAGS, "bank_size", "metad")
                      if getattr(args, flag) is not None]
            if unused:
                raise CgbgError(f"--reference-only keeps the flows and the force-matched baselines: "
                                f"drop {', '.join(unused)}")
            written = _checked(refresh_reference, recipe)
            for path in written:
                print(f"refreshed {path}")
            return 0
        written = _checked(build, recipe)
    for path in written:
        print(f"built {path}")
    return 0


def _checked(builder, *args, **kwargs):
    """Run a task builder; its ValueErrors (bad sources, versions, options) become CLI errors."""
    try:
        return builder(*args, **kwargs)
    except CgbgError:
        raise
    except ValueError as exc:
        raise CgbgError(str(exc)) from exc
