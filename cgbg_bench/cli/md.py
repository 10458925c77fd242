"""``cgbg-bench md run|status|dispatch``: resumable atomistic MD of the capped alanine peptides."""

from __future__ import annotations

import json
import shlex
import sys

from cgbg_bench.cg.mappings import SCORED_RESIDUE

__all__ = ["add_parser"]


def add_parser(subparsers) -> None:
    p = subparsers.add_parser("md", help="atomistic MD runs (reference and training data)")
    sub = p.add_subparsers(dest="md_command", metavar="MD_COMMAND")

    r = sub.add_parser("run", help="start or continue a chunked, resumable MD run",
                       description="Start a run in --out, or continue it there if it exists "
                                   "(the settings must match the run's run.json).")
    r.add_argument("--system", required=True, choices=["ala2", "ala3", "ala6"])
    r.add_argument("--solvent", required=True, choices=["explicit", "obc1", "obc2", "vacuum"])
    r.add_argument("--bias", default="none", choices=["none", "wtmetad", "static"])
    r.add_argument("--bias-from", metavar="DIR",
                   help="static bias: a wtmetad run directory (its bias.npz) or a bias.npz file")
    r.add_argument("--bias-residue", type=int, default=None,
                   help="alanine (1..n) whose phi/psi are biased; default: the task's scored residue "
                        f"({', '.join(f'{k}: {v}' for k, v in SCORED_RESIDUE.items())})")
    r.add_argument("--ns", type=float, required=True, help="total production length to reach (ns)")
    r.add_argument("--threads", type=int, default=1, help="CPU platform threads (default 1)")
    r.add_argument("--seed", type=int, default=1)
    r.add_argument("--out", required=True, metavar="DIR")
    r.add_argument("--chunk-ps", type=float, default=100.0,
                   help="production length of one chunk file (ps, default 100)")
    r.add_argument("--equil-ps", type=float, default=None,
                   help="equilibration length (ps); default 100 (NPT, explicit) or 20 (NVT)")
    r.add_argument("--platform", default="auto", choices=["auto", "CPU", "CUDA", "Reference"],
                   help="OpenMM platform; auto = CUDA when available, else CPU")
    _add_box_args(r)
    r.add_argument("--timestep-fs", type=float, default=4.0, help="integration step (fs, default 4)")
    r.add_argument("--no-hmr", action="store_true",
                   help="keep the force field's hydrogen masses (no repartitioning; use a 2 fs step)")
    r.add_argument("--metad-height", type=float, default=1.0, help="kJ/mol (default 1.0)")
    r.add_argument("--metad-width", type=float, default=0.35, help="rad (default 0.35)")
    r.add_argument("--metad-bias-factor", type=float, default=6.0, help="default 6")
    r.add_argument("--metad-pace-ps", type=float, default=1.0, help="ps between hills (default 1)")
    r.add_argument("--metad-grid", type=int, default=100, help="grid points per axis (default 100)")
    r.set_defaults(func=_run)

    s = sub.add_parser("status", help="ns done, ns/day, the latest chunk of a run, and any damage "
                       "(exit 1 when a chunk or the checkpoint is damaged or missing)")
    s.add_argument("dir", metavar="DIR")
    s.add_argument("--json", action="store_true", help="print the summary as JSON")
    s.set_defaults(func=_status)

    d = sub.add_parser("dispatch", help="run md run walkers in parallel on a Dask cluster, each resuming "
                                        "from its checkpoint",
                       description="Run every walker of WALKERS (one `md run` argument list per line, shell "
                                   "quoting, # comments) as a long-running task on a Dask cluster; report each "
                                   "walker's exit status. Walkers run in this folder on the workers: share it, "
                                   "or use absolute --out paths (docs/scaling.md).")
    d.add_argument("walkers", metavar="WALKERS", help="text file, one walker per line, e.g. "
                                                      "--system ala2 --solvent obc2 --ns 10 --seed 1 --out DIR")
    d.add_argument("--scheduler", required=True, metavar="local:N|ADDRESS",
                   help="local:N (N workers here) or a scheduler address (tcp://host:8786); "
                        "needs pip install 'cgbg-bench[dask]'")
    d.add_argument("--log-dir", metavar="DIR", default=None,
                   help="keep each walker's whole output in DIR (walker-*.log); default: the last lines only")
    d.set_defaults(func=_dispatch)

    b = sub.add_parser("bench", help="measure ns/day of short runs, print a markdown table")
    b.add_argument("--system", nargs="+", default=["ala2", "ala3", "ala6"],
                   choices=["ala2", "ala3", "ala6"])
    b.add_argument("--solvent", nargs="+", default=["explicit", "obc1", "obc2", "vacuum"],
                   choices=["explicit", "obc1", "obc2", "vacuum"])
    b.add_argument("--bias", nargs="+", default=["none"], choices=["none", "wtmetad"])
    b.add_argument("--threads", type=int, default=1)
    b.add_argument("--platform", default="auto", choices=["auto", "CPU", "CUDA", "Reference"])
    _add_box_args(b)
    b.set_defaults(func=_bench)

    q = sub.add_parser("report", help="quality report of the reference data (ns, noise, halves, phi > 0, basins, GB)",
                       description="Block-bootstrap report of the reference built from unbiased and "
                                   "static-bias runs: its own JS/PMF-error noise, JS between the first and "
                                   "second half of every run, the phi > 0 population with its error, the "
                                   "basin populations of every run against the others, and each "
                                   "implicit-solvent run scored against it.")
    q.add_argument("--reference", nargs="+", required=True, metavar="DIR",
                   help="unbiased and static-bias runs (metadynamics runs are listed, not used)")
    q.add_argument("--gb", action="append", default=[], metavar="NAME=DIR", help="e.g. obc2=data/ala2/obc2")
    q.add_argument("--check", nargs="+", default=[], metavar="DIR",
                   help="unbiased or static-bias runs compared with the reference basin by basin, not part of it")
    q.add_argument("--basin-block-ps", type=float, default=1000.0,
                   help="block length for the errors of the basin populations (ps, default 1000; basins "
                        "decorrelate more slowly than the histogram bins)")
    q.add_argument("--block-ps", type=float, default=1000.0, help="bootstrap block length (ps, default 1000)")
    q.add_argument("--discard-ps", type=float, default=0.0, help="drop this much of each run's start")
    q.add_argument("--n-bootstrap", type=int, default=500)
    q.add_argument("--max-chunks", action="append", default=[], metavar="DIR=N",
                   help="read only the first N chunks of DIR (the snapshot a task was built from)")
    q.add_argument("--json", action="store_true", help="print the report as JSON")
    q.set_defaults(func=_report)
    p.set_defaults(func=lambda args: (p.print_help(), 2)[1])


def _run(args) -> int:
    from cgbg_bench.md.metadynamics import MetadParams
    from cgbg_bench.md.production import RunSettings, run
    from cgbg_bench.md.systems import HYDROGEN_MASS_AMU

    settings = RunSettings(
        system=args.system, solvent=args.solvent, bias=args.bias, seed=args.seed,
        chunk_ps=args.chunk_ps, equilibration_ps=args.equil_ps, bias_residue=args.bias_residue,
        box_shape=args.box_shape, image_distance_nm=args.image_distance,
        timestep_fs=args.timestep_fs, hydrogen_mass_amu=None if args.no_hmr else HYDROGEN_MASS_AMU,
        metad=MetadParams(height_kj_per_mol=args.metad_height, width_rad=args.metad_width,
                          bias_factor=args.metad_bias_factor, pace_ps=args.metad_pace_ps,
                          grid_points=args.metad_grid),
    )
    command = "cgbg-bench " + " ".join(shlex.quote(a) for a in sys.argv[1:])
    run(settings, args.out, args.ns, threads=args.threads, platform=args.platform,
        bias_from=args.bias_from, command=command)
    return 0


def _dispatch(args) -> int:
    from cgbg_bench.distributed import parse_scheduler, require_dask
    from cgbg_bench.md.dispatch import dispatch_walkers, read_walkers

    scheduler = parse_scheduler(args.scheduler, "--scheduler")  # refused before any work
    walkers = read_walkers(args.walkers)
    require_dask()
    shown = lambda w: " ".join(shlex.quote(a) for a in w)  # noqa: E731

    def report(i: int, r) -> None:
        status = "ok" if r.ok else ("did not start" if r.returncode is None else f"exit code {r.returncode}")
        print(f"walker {i + 1}/{len(walkers)} ({shown(r.args)}) on {r.worker}: {status}", flush=True)
        if not r.ok:
            print("\n".join("    " + line for line in r.output_tail.rstrip().splitlines()[-20:]), file=sys.stderr)

    print(f"dispatching {len(walkers)} walker(s) to {scheduler}", flush=True)
    results = dispatch_walkers(walkers, scheduler, log_dir=args.log_dir, on_result=report)
    failed = [i + 1 for i, r in enumerate(results) if not r.ok]
    print(f"{len(results) - len(failed)} of {len(results)} walkers ended with exit code 0" +
          (f"; failed: {', '.join(map(str, failed))} (rerun the same command: each resumes from its checkpoint)"
           if failed else ""))
    return 1 if failed else 0


def _status(args) -> int:
    from cgbg_bench.cli._args import flags_for_params
    from cgbg_bench.md.production import run_status

    st = run_status(args.dir)
    if args.json:
        print(json.dumps(st, indent=1))
        return 1 if st["problems"] else 0
    rate = lambda x: "n/a" if x is None else f"{x:.1f}"  # noqa: E731
    print(f"{st['dir']}: {st['system']} {st['solvent']} bias={st['bias']}")
    print(f"  ns done      {st['ns_done']:.3f} of {st['ns_target']} ({st['chunks_done']} chunks)")
    print(f"  ns/day       {rate(st['ns_per_day_latest'])} (latest chunk), "
          f"{rate(st['ns_per_day_mean'])} (mean), {st['platform']} x{st['threads']}")
    print(f"  latest chunk {st['latest_chunk']} ({st['latest_chunk_written']})")
    running = f"yes, pid {st['running_pid']}" if st["running_pid"] else "no"
    print(f"  running      {running}")
    if st["checkpoint"] != "ok" or st["chunk_files"] != st["chunks_done"]:
        print(f"  checkpoint   {st['checkpoint']}; {st['chunk_files']} chunk file(s) on disk")
    for note in st["notes"]:
        print(f"  note         {note}")
    for problem in st["problems"]:  # advice for the commands that read runs (md report, make-task, train-pmf)
        print(f"  PROBLEM      {flags_for_params(problem, {'max_chunks': '--max-chunks', 'out_dir': '--out'})}")
    return 1 if st["problems"] else 0


def _report(args) -> int:
    from pathlib import Path

    from cgbg_bench.errors import CgbgError
    from cgbg_bench.md.report import data_report
    from cgbg_bench.units import kT_kj_per_mol

    gb: dict[str, list[Path]] = {}
    for item in args.gb:
        name, sep, path = item.partition("=")
        if not sep or not name or not path:
            raise CgbgError(f"--gb {item!r}: expected NAME=DIR, e.g. obc2=data/ala2/obc2")
        gb.setdefault(name, []).append(Path(path))
    for d in [*args.reference, *args.check, *(p for v in gb.values() for p in v)]:
        if not (Path(d) / "run.json").exists():
            raise CgbgError(f"{d}: not a run directory (no run.json); make one with `cgbg-bench md run`")
    from cgbg_bench.cli._args import parse_max_chunks

    max_chunks = parse_max_chunks(args.max_chunks)
    rep = data_report([Path(d) for d in args.reference], gb, kT=kT_kj_per_mol(300.0),
                      block_ps=args.block_ps, discard_ps=args.discard_ps, n_bootstrap=args.n_bootstrap,
                      max_chunks=max_chunks, check_dirs=[Path(d) for d in args.check],
                      basin_block_ps=args.basin_block_ps)
    if args.json:
        print(json.dumps(rep, indent=1))
        return 0
    from tabulate import tabulate

    ok = lambda v, e: f"{v:.4f} +- {e:.4f}"  # noqa: E731
    print(tabulate([[r["dir"], r["role"], f"{r['ns']:.2f}", r["blocks"] if r["blocks"] is not None else ""]
                    for r in rep["runs"]], headers=["run", "role", "ns", "blocks"], tablefmt="github"))
    print(f"\nreference: {rep['n_blocks']} blocks of {rep['block_ps']:g} ps, {args.n_bootstrap} bootstraps")
    print(f"  own noise JS        {ok(*rep['self_js'])}   (bootstrap replicate vs full reference)")
    print(f"  own noise PMF error {ok(*rep['self_pmf_error'])}")
    if len(rep["groups"]) > 1:
        print(f"  kinds of run, weighed by the inverse block-bootstrap variance of their basin populations "
              f"({args.basin_block_ps:g} ps blocks; make-task uses its own --basin-block-ps, default 1000):")
        print(tabulate([[g, ", ".join(v["runs"]), f"{v['ns']:.1f}", v["blocks"], f"{v['basin_variance']:.2e}",
                         f"{v['share']:.3f}"] for g, v in rep["groups"].items()],
                       headers=["kind", "runs", "ns", "basin blocks", "sum var / P", "share"], tablefmt="github"))
    rows = [[f"residue {k + 1}", f"{n:.4f}", f"{h:.4f}", f"{p:.4f} +- {e:.4f}",
             f"{100 * e / p:.1f}%" if p > 0 else "n/a"]
            for k, ((n, _), h, (p, e)) in enumerate(zip(rep["self_js_per_residue"], rep["halves_js"],
                                                        rep["phi_positive"]))]
    print(tabulate(rows, headers=["", "own noise JS", "JS(1st half, 2nd half)", "phi > 0 population", "rel. error"],
                   tablefmt="github"))
    _print_basins(rep["basins"], rep["n_residues"])
    if rep.get("baselines"):
        print()
        # the floor: what a perfect model's histogram of this many blocks would score (both sides' noise,
        # each side's share twice its own bootstrap noise JS on the scored residue)
        print(tabulate([[name, ok(*m["js"]), ok(*m["js_floor"]), ok(*m["pmf_error"])]
                        for name, m in rep["baselines"].items()],
                       headers=["implicit solvent", f"JS (residue {rep['scored_residue']})", "JS floor", "PMF error"],
                       tablefmt="github"))
    return 0


def _print_basins(basins: dict, n_res: int) -> None:
    from tabulate import tabulate

    pct = lambda v, e: f"{100 * v:.1f}" + ("" if e is None else f"({100 * e:.1f})")  # noqa: E731
    zs = lambda z: " ".join("n/a" if x is None else f"{x:+.1f}" for x in z)  # noqa: E731
    print(f"\nbasin populations (%, block bootstrap over {basins['block_ps']:g} ps blocks); z: difference "
          "from the other reference runs in combined standard errors (with few blocks the errors are "
          "themselves uncertain: read |z| < 3 with care; n/a: no spread on either side)")
    rows = []
    ref = basins["reference"]
    n_ref_blocks = sum(r["blocks"] for r in basins["runs"] if r["in_reference"])
    for k in range(n_res):
        res = f"residue {k + 1}: " if n_res > 1 else ""
        rows.append([f"{res}reference", "", n_ref_blocks,
                     *(pct(v, e) for v, e in zip(ref["population"][k], ref["error"][k])), ""])
        for r in basins["runs"]:
            z = r["z_vs_other_reference_runs"]
            rows.append([f"{res}{r['dir']}", "yes" if r["in_reference"] else "no", r["blocks"],
                         *(pct(v, e) for v, e in zip(r["population"][k], r["error"][k])),
                         "" if z is None else zs(z[k])])
    print(tabulate(rows, headers=["run", "in ref.", "blocks", *basins["names"],
                                  "z (" + ", ".join(basins["names"]) + ")"], tablefmt="github"))


def _add_box_args(p) -> None:
    p.add_argument("--box-shape", default="cube", choices=["cube", "dodecahedron"],
                   help="explicit solvent: periodic cell (default cube)")
    p.add_argument("--image-distance", type=float, default=1.2, metavar="NM",
                   help="explicit solvent: smallest solute-image distance the box keeps (nm, default 1.2)")


def _bench(args) -> int:
    from cgbg_bench.md.throughput import measure_ns_per_day

    print("| system | solvent | box | bias | atoms | ns/day (wall) | ns/day (CPU time) | platform x threads |")
    print("|---|---|---|---|---|---|---|---|")
    for system in args.system:
        for solvent in args.solvent:
            box = f"{args.box_shape}, >= {args.image_distance:g} nm" if solvent == "explicit" else "-"
            for bias in args.bias:
                r = measure_ns_per_day(system, solvent, bias, args.threads, args.platform,
                                       box_shape=args.box_shape, image_distance_nm=args.image_distance)
                print(f"| {system} | {solvent} | {box} | {bias} | {r['n_atoms']} | {r['ns_per_day']:.0f} "
                      f"| {r['ns_per_cpu_day']:.0f} | {r['platform']} x{r['threads']} |", flush=True)
    return 0
