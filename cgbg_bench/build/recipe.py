"""The recipe of an alanine task build: runs (with their chunk pins), settings and seeds.

A :class:`BuildRecipe` is the one place that says what ``cgbg-bench make-task ala2`` builds
and with which defaults: the command-line flags default to None and change a recipe's
fields, :func:`cgbg_bench.build.alanine.build` takes a recipe, and every task.yaml it writes
stores the (pinned) recipe under ``recipe:`` as plain data, which
``cgbg-bench make-task --recipe tasks/NAME/task.yaml`` reads back to rebuild the task.

In task.yaml::

    recipe:
      system: ala2
      representations: [core-beta]          # null: every representation of the system
      version: 11
      runs:                                 # run directories by role, each pinned to its first N chunks
        unbiased: [{dir: data/ala2/explicit-unbiased, chunks: 68}]
        static: [{dir: data/ala2/explicit-static, chunks: 137}]
        metad: [{dir: data/ala2/explicit-wtmetad, chunks: 8}]
        gb: {obc2: [{dir: data/ala2/obc2, chunks: 6}]}
      reference: all                        # or static
      block_ps: 200.0
      ...
      seeds: {flow: 21, bank: 22}
      flow: {epochs: 40, ...}               # FlowSettings
      fm: {seed: 23, ...}                   # cgbg_bench.fm.pipeline.FMSettings of the force-matched baselines

Reading is strict: an unknown key raises :class:`cgbg_bench.errors.TaskSchemaError` with a
did-you-mean hint; a key left out takes the recipe's default.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping, Sequence

from cgbg_bench._schema import check_keys, require, short
from cgbg_bench.errors import TaskSchemaError
from cgbg_bench.fm.pipeline import FMSettings

__all__ = ["Run", "Seeds", "FlowSettings", "BuildRecipe", "ROLES", "LEGACY_BIAS_WEIGHT_POWER", "FLOW_FLAGS",
           "load_recipe"]

#: Run roles with a list of runs; ``gb`` maps an implicit-solvent model name to its runs.
ROLES = ("unbiased", "static", "metad")
_REFERENCE_FROM = ("all", "static")


@dataclass(frozen=True)
class Run:
    """One MD run directory (as given, relative to the repository root or absolute) and its pin:
    the build reads only its first ``chunks`` chunks (None: the chunks finished at build start)."""

    dir: str
    chunks: int | None = None

    def __post_init__(self):
        object.__setattr__(self, "dir", str(Path(self.dir)))
        if self.chunks is not None and (isinstance(self.chunks, bool) or not isinstance(self.chunks, int)
                                        or self.chunks < 1):
            raise TaskSchemaError(f"run {self.dir}: chunks must be a whole number >= 1, got {short(self.chunks)}")


@dataclass(frozen=True)
class Seeds:
    flow: int = 21  # the proposal flows' training
    bank: int = 22  # the generated proposal banks


@dataclass(frozen=True)
class FlowSettings:
    epochs: int = 40
    transforms: int = 4
    bins: int = 16
    hidden: int = 32
    batch_size: int = 256
    lr: float = 1e-3
    uniform: float = 0.05  # share of the (phi, psi) proposals drawn uniformly on the torus
    mirror: float = 0.1  # share drawn from the flow's mirror image (phi, psi) -> (-phi, -psi) (from v10)
    # weighted likelihood: each biased frame counts exp(V/kT)^power, V its bias energy (1: the
    # unbiased distribution; 0: plain maximum likelihood on the frames as sampled, as the recipes
    # stored before this field, up to ala2 v12, which read as LEGACY_BIAS_WEIGHT_POWER)
    bias_weight_power: float = 1.0


#: the flows' bias_weight_power of a stored recipe written before the field (up to ala2 v12: every
#: other flow field present, this one absent)
LEGACY_BIAS_WEIGHT_POWER = 0.0


def _default_fm() -> FMSettings:
    return FMSettings(seed=23)


@dataclass(frozen=True)
class BuildRecipe:
    """Everything a build of a system's tasks depends on besides the code. Defaults live here only."""

    system: str
    unbiased: tuple[Run, ...] = ()
    static: tuple[Run, ...] = ()
    metad: tuple[Run, ...] = ()
    gb: Mapping[str, tuple[Run, ...]] = field(default_factory=dict)
    representations: tuple[str, ...] | None = None  # None: every representation of the system
    version: int = 1
    reference: str = "all"  # the reference from the unbiased and static-bias runs ("all") or "static" alone
    block_ps: float = 1000.0  # reference block length
    basin_block_ps: float = 1000.0  # block length of the basin variances that weigh the kinds of run
    discard_ps: float = 0.0  # dropped from each run's start
    bank_size: int = 1_000_000
    seeds: Seeds = Seeds()
    flow: FlowSettings = FlowSettings()
    fm: FMSettings = field(default_factory=_default_fm)

    def __post_init__(self):
        for role in ROLES:
            object.__setattr__(self, role, tuple(r if isinstance(r, Run) else Run(str(r)) for r in getattr(self, role)))
        object.__setattr__(self, "gb", {str(k): tuple(r if isinstance(r, Run) else Run(str(r)) for r in v)
                                        for k, v in dict(self.gb).items()})
        if self.representations is not None:
            object.__setattr__(self, "representations", tuple(self.representations))
        self._check()

    def _check(self) -> None:
        def fail(what: str) -> None:
            raise TaskSchemaError(f"recipe: {what}")

        if not isinstance(self.system, str) or not self.system:
            fail(f"system must be a name, got {short(self.system)}")
        if self.reference not in _REFERENCE_FROM:
            fail(f"reference must be 'all' or 'static', got {short(self.reference)}")
        for name in ("version", "bank_size"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                fail(f"{name} must be a whole number >= 1, got {short(value)}")
        for name in ("block_ps", "basin_block_ps"):
            if not getattr(self, name) > 0:
                fail(f"{name} must be > 0, got {short(getattr(self, name))}")
        if not self.discard_ps >= 0:
            fail(f"discard_ps must be >= 0, got {short(self.discard_ps)}")
        flow = self.flow
        if isinstance(flow.epochs, bool) or not isinstance(flow.epochs, int) or flow.epochs < 1:
            fail(f"flow epochs must be a whole number >= 1, got {short(flow.epochs)}")
        if not 0.0 <= flow.bias_weight_power <= 1.0:
            fail(f"flow bias_weight_power must be in [0, 1] (0: frames as sampled, 1: the unbiased "
                 f"distribution), got {short(flow.bias_weight_power)}")
        fm = self.fm
        if not fm.hidden or any(isinstance(h, bool) or not isinstance(h, int) or h < 1 for h in fm.hidden):
            fail(f"fm hidden {list(fm.hidden)}: widths must be whole numbers >= 1")
        if fm.n_models < 1:
            fail(f"fm n_models {fm.n_models}: give a number of networks >= 1")
        if fm.repulsion_power < 1:
            fail(f"fm repulsion_power {fm.repulsion_power}: give a whole number >= 1")
        if fm.dihedral_correction < 0:
            fail(f"fm dihedral_correction {fm.dihedral_correction}: give an order >= 1 (0: none)")
        dirs = [r.dir for r in self.all_runs()]
        twice = sorted({d for d in dirs if dirs.count(d) > 1})
        if twice:
            fail(f"run {twice[0]} is given more than once")

    # ------------------------------------------------------------------ runs ---
    def all_runs(self) -> tuple[Run, ...]:
        return (*self.unbiased, *self.static, *self.metad, *(r for v in self.gb.values() for r in v))

    def dirs(self, role: str) -> tuple[Path, ...]:
        return tuple(Path(r.dir) for r in getattr(self, role))

    def pins(self) -> dict[str, int]:
        """{run dir: chunks} of the pinned runs, in the order of :meth:`all_runs`."""
        return {r.dir: r.chunks for r in self.all_runs() if r.chunks is not None}

    def _map_runs(self, fn) -> "BuildRecipe":
        return dataclasses.replace(self, **{role: tuple(fn(r) for r in getattr(self, role)) for role in ROLES},
                                   gb={k: tuple(fn(r) for r in v) for k, v in self.gb.items()})

    def with_pins(self, pins: Mapping[str, int]) -> "BuildRecipe":
        """Pin the named runs (keys: run directories as in the recipe); an unknown run raises."""
        pins = {str(Path(d)): n for d, n in pins.items()}
        unknown = sorted(set(pins) - {r.dir for r in self.all_runs()})
        if unknown:
            raise TaskSchemaError(f"recipe: pin for {unknown[0]}, which is not one of its runs "
                                  f"({', '.join(r.dir for r in self.all_runs()) or 'none'})")
        return self._map_runs(lambda r: dataclasses.replace(r, chunks=pins.get(r.dir, r.chunks)))

    def unpinned(self) -> "BuildRecipe":
        return self._map_runs(lambda r: dataclasses.replace(r, chunks=None))

    def pinned_now(self, root: Path | None = None) -> "BuildRecipe":
        """Pin every unpinned run to its chunks finished now (runs may go on while a build reads them).

        ``root``: the folder relative run directories are under (default: the working directory).
        """
        from cgbg_bench.md.production import run_status

        def pin(r: Run) -> Run:
            if r.chunks is not None:
                return r
            d = Path(r.dir) if root is None or Path(r.dir).is_absolute() else Path(root) / r.dir
            return dataclasses.replace(r, chunks=int(run_status(d)["chunks_done"]))

        return self._map_runs(pin)

    def with_reference_of(self, other: "BuildRecipe") -> "BuildRecipe":
        """This recipe with the reference's runs and settings of ``other`` (a --reference-only refresh)."""
        return dataclasses.replace(self, unbiased=other.unbiased, static=other.static, gb=other.gb,
                                   version=other.version, reference=other.reference, block_ps=other.block_ps,
                                   basin_block_ps=other.basin_block_ps, discard_ps=other.discard_ps)

    def with_proposal_of(self, other: "BuildRecipe") -> "BuildRecipe":
        """This recipe with the proposal settings of ``other`` (a --proposal-only refresh)."""
        return dataclasses.replace(self, flow=other.flow, seeds=other.seeds, bank_size=other.bank_size,
                                   version=other.version)

    def with_baselines_of(self, other: "BuildRecipe") -> "BuildRecipe":
        """This recipe with the force-matching settings of ``other`` (a --baselines-only refresh)."""
        return dataclasses.replace(self, fm=other.fm, version=other.version)

    # ------------------------------------------------------------ as data ---
    def to_dict(self) -> dict[str, Any]:
        """Plain data (YAML-safe: lists, not tuples), every field written out."""
        def runs(rs):
            return [{"dir": r.dir, "chunks": r.chunks} for r in rs]

        fm = dataclasses.asdict(self.fm)
        fm["hidden"] = list(fm["hidden"])
        return {
            "system": self.system,
            "representations": None if self.representations is None else list(self.representations),
            "version": self.version,
            "runs": {**{role: runs(getattr(self, role)) for role in ROLES},
                     "gb": {k: runs(v) for k, v in self.gb.items()}},
            "reference": self.reference,
            "block_ps": float(self.block_ps),
            "basin_block_ps": float(self.basin_block_ps),
            "discard_ps": float(self.discard_ps),
            "bank_size": self.bank_size,
            "seeds": dataclasses.asdict(self.seeds),
            "flow": dataclasses.asdict(self.flow),
            "fm": fm,
        }

    @classmethod
    def from_dict(cls, data: Any, where: str = "recipe") -> "BuildRecipe":
        """The recipe of :meth:`to_dict`'s data; unknown keys and wrong types raise TaskSchemaError."""
        top = {f.name for f in dataclasses.fields(cls)} - set(ROLES) - {"gb"} | {"runs"}
        d = check_keys(data, where=where, required={"system"}, optional=top - {"system"})
        kw: dict[str, Any] = {"system": require(d["system"], str, where=f"{where}: system")}
        if d.get("runs") is not None:
            runs = check_keys(d["runs"], where=f"{where}: runs", required=set(), optional={*ROLES, "gb"})
            for role in ROLES:
                if runs.get(role) is not None:
                    kw[role] = _runs(runs[role], f"{where}: runs: {role}")
            if runs.get("gb") is not None:
                gb = check_keys(runs["gb"], where=f"{where}: runs: gb", required=set(), optional=set(runs["gb"]))
                kw["gb"] = {require(k, str, where=f"{where}: runs: gb: name"): _runs(v, f"{where}: runs: gb: {k}")
                            for k, v in gb.items()}
        if d.get("representations") is not None:
            reps = require(d["representations"], list, where=f"{where}: representations")
            kw["representations"] = tuple(require(r, str, where=f"{where}: representations") for r in reps)
        for name, types in (("version", int), ("reference", str), ("block_ps", (int, float)),
                            ("basin_block_ps", (int, float)), ("discard_ps", (int, float)), ("bank_size", int)):
            if name in d:
                kw[name] = require(d[name], types, where=f"{where}: {name}")
        default = cls(system=kw["system"])
        for name in ("seeds", "flow", "fm"):
            if d.get(name) is not None:
                kw[name] = _settings(d[name], getattr(default, name), f"{where}: {name}")
        # a stored recipe (to_dict writes every flow field) from before the field: the legacy value;
        # a hand-written recipe that leaves fields out takes the defaults, this one included
        legacy_fields = {f.name for f in dataclasses.fields(FlowSettings)} - {"bias_weight_power"}
        if isinstance(d.get("flow"), Mapping) and set(d["flow"]) == legacy_fields:
            kw["flow"] = dataclasses.replace(kw["flow"], bias_weight_power=LEGACY_BIAS_WEIGHT_POWER)
        return cls(**kw)

    # -------------------------------------------------------- for humans ---
    def command(self, *, reference_only: bool = False, proposal_only: bool = False,
                baselines_only: Sequence[str] | None = None) -> str:
        """The make-task command line of this recipe (non-default options only; provenance for
        humans: --recipe reads the recipe, nothing parses this line). ``reference_only``: the
        refresh's line (no metadynamics run, flows or force-matched baselines); ``proposal_only``:
        the flows' refresh (no force-matched baselines); ``baselines_only``: the --baseline names of a
        --baselines-only refresh (empty: every force-matched baseline; no flows on the line)."""
        import shlex

        default = BuildRecipe(system=self.system)
        parts = ["cgbg-bench", "make-task", self.system]
        roles = ("unbiased", "static") if reference_only else ROLES
        for role in roles:
            if getattr(self, role):
                parts += [f"--{role}", *(r.dir for r in getattr(self, role))]
        for name, runs in self.gb.items():
            parts += [a for r in runs for a in ("--gb", f"{name}={r.dir}")]
        for r in (*(r for role in roles for r in getattr(self, role)), *(r for v in self.gb.values() for r in v)):
            if r.chunks is not None:
                parts += ["--max-chunks", f"{r.dir}={r.chunks}"]
        command = shlex.join(parts) + ("" if self.reference == default.reference else f" --reference {self.reference}")
        options = [("--block-ps", "block_ps"), ("--basin-block-ps", "basin_block_ps"), ("--discard-ps", "discard_ps")]
        if not reference_only:
            options.append(("--bank-size", "bank_size"))
        for flag, name in (*options, ("--version", "version")):
            if getattr(self, name) != getattr(default, name):
                command += f" {flag} {getattr(self, name):g}"
        if self.representations is not None:
            command += "".join(f" --representation {rep}" for rep in self.representations)
        if reference_only:
            return command + " --reference-only"
        # the weight power is spelled out unless it is the legacy 0, which a command without the
        # flag stands for (migrate_recipe reads older commands so), whatever the current default
        unsaid = dataclasses.replace(default.flow, bias_weight_power=LEGACY_BIAS_WEIGHT_POWER)
        for flag, name in FLOW_FLAGS.items():
            if baselines_only is None and getattr(self.flow, name) != getattr(unsaid, name):
                command += f" {flag} {getattr(self.flow, name):g}"
        if proposal_only:
            return command + " --proposal-only"
        fm, fm0 = self.fm, default.fm
        if tuple(fm.hidden) != tuple(fm0.hidden):
            command += " --fm-hidden " + " ".join(str(h) for h in fm.hidden)
        for flag, name in (("--fm-models", "n_models"), ("--fm-repulsion-power", "repulsion_power"),
                           ("--fm-dihedral-correction", "dihedral_correction")):
            if getattr(fm, name) != getattr(fm0, name):
                command += f" {flag} {getattr(fm, name)}"
        if baselines_only is not None:
            command += " --baselines-only" + "".join(f" --baseline {name}" for name in baselines_only)
        return command


#: make-task's flag of each FlowSettings field it can change (the CLI's flags are made from this)
FLOW_FLAGS = {"--flow-epochs": "epochs", "--flow-bias-weight-power": "bias_weight_power"}


def _runs(items: Any, where: str) -> tuple[Run, ...]:
    out = []
    for i, item in enumerate(require(items, list, where=where)):
        r = check_keys(item, where=f"{where}[{i}]", required={"dir"}, optional={"chunks"})
        chunks = r.get("chunks")
        if chunks is not None:
            require(chunks, int, where=f"{where}[{i}]: chunks")
        out.append(Run(require(r["dir"], str, where=f"{where}[{i}]: dir"), chunks))
    return tuple(out)


def _settings(data: Any, default, where: str):
    """A settings dataclass: ``default`` with the given fields replaced (strict keys, checked types)."""
    fields = {f.name: f for f in dataclasses.fields(default)}
    d = check_keys(data, where=where, required=set(), optional=set(fields))
    changes = {}
    for name, value in d.items():
        current = getattr(default, name)
        if isinstance(current, tuple):
            items = require(value, list, where=f"{where}: {name}")
            value = tuple(require(v, int, where=f"{where}: {name}") for v in items)
        elif current is None or name == "lr_halve_after":
            value = None if value is None else require(value, int, where=f"{where}: {name}")
        elif isinstance(current, float):
            value = float(require(value, (int, float), where=f"{where}: {name}"))
        else:
            value = require(value, type(current), where=f"{where}: {name}")
        changes[name] = value
    return dataclasses.replace(default, **changes)


def load_recipe(path) -> BuildRecipe:
    """The recipe in a task.yaml (its ``recipe:`` block) or in a YAML file of a recipe alone."""
    from cgbg_bench._schema import load_yaml_file

    path = Path(path)
    if path.is_dir():
        path = path / "task.yaml"
    if not path.is_file():
        raise TaskSchemaError(f"{path}: no such file (give a task.yaml or a recipe file)")
    data = load_yaml_file(path)
    if isinstance(data, Mapping) and "name" in data and "proposal" in data:  # a task.yaml
        if data.get("recipe") is None:
            raise TaskSchemaError(f"{path}: no recipe recorded (the alanine builds store one; to an ala2 task "
                                  "built before recipes, python -m cgbg_bench.build.migrate_recipe adds it)")
        return BuildRecipe.from_dict(data["recipe"], where=f"{path}: recipe")
    return BuildRecipe.from_dict(data, where=str(path))


def main(argv=None) -> int:
    """``python -m cgbg_bench.build.recipe FILE [--now]``: make-task's ``--max-chunks DIR=N`` arguments
    (one a line) of the recipe in FILE: its recorded pins, or with ``--now`` every run pinned to the
    chunks finished now (what scripts/rebuild-ala2-tasks.sh gives both builds)."""
    import argparse
    import sys

    p = argparse.ArgumentParser(prog="python -m cgbg_bench.build.recipe", description=main.__doc__.split("\n")[0])
    p.add_argument("file", type=Path, help="a task.yaml with a recipe, or a recipe file")
    p.add_argument("--now", action="store_true", help="pin every run to the chunks finished now")
    args = p.parse_args(argv)
    try:
        recipe = load_recipe(args.file)
        recipe = recipe.unpinned().pinned_now() if args.now else recipe
    except Exception as exc:  # noqa: BLE001 - said plainly to the calling script
        print(str(exc), file=sys.stderr)
        return 2
    unpinned = [r.dir for r in recipe.all_runs() if r.chunks is None]
    if unpinned or not recipe.all_runs():
        print(f"{args.file}: its recipe does not pin {', '.join(unpinned) or 'any run'}",
              file=sys.stderr)
        return 2
    for d, n in recipe.pins().items():
        print(f"--max-chunks\n{d}={n}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
