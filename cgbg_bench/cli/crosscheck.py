"""`cgbg-bench crosscheck PMF --task NAME`: reweighted bank vs CG Langevin simulation of one PMF.

Exit code 0 when the two (phi, psi) distributions agree within their errors, 1 when
they do not, 2 on bad input. Method and a measured result: docs/crosscheck.md.
"""

from __future__ import annotations

import json
import math


def add_parser(sub) -> None:
    p = sub.add_parser("crosscheck",
                       help="check a proposal bank: reweighted (phi, psi) vs a CG Langevin simulation of a PMF")
    p.add_argument("pmf", help="the PMF file (.pt2 or TorchScript .pt), e.g. a task baseline")
    p.add_argument("--task", required=True, help="peptide task name (see `cgbg-bench list`)")
    p.add_argument("--walkers", type=int, default=256, help="independent walkers (default 256; the bootstrap "
                                                            "blocks of the simulation)")
    p.add_argument("--ns", type=float, default=0.1, help="simulated time per walker in ns, equilibration "
                                                         "included (default 0.1)")
    p.add_argument("--equilibration-ps", type=float, default=None,
                   help="discarded start of every walker in ps (default: a tenth of --ns)")
    p.add_argument("--dt-fs", type=float, default=2.0, help="Langevin time step in fs (default 2)")
    p.add_argument("--save-fs", type=float, default=100.0, help="one frame every this many fs (default 100)")
    p.add_argument("--friction", type=float, default=1.0, help="Langevin friction in 1/ps (default 1)")
    p.add_argument("--mass", type=float, default=12.0, help="mass of every bead in amu (default 12)")
    p.add_argument("--start", choices=("weighted", "raw"), default="weighted",
                   help="walker starts: bank samples drawn by importance weight (default) or uniformly")
    p.add_argument("--bank-samples", type=int, default=None, help="bank size (default: the task's)")
    p.add_argument("--clip-percentile", type=float, default=None,
                   help="clip the bank's weights at this percentile instead of the task's weighting "
                        "(default: the task's, PSIS or its clip; 100 = raw weights)")
    p.add_argument("--n-bootstrap", type=int, default=None, help="bootstrap replicates (default: the task's)")
    p.add_argument("--seed", type=int, default=0, help="seed of starts, noise and bootstrap (default 0)")
    p.add_argument("--device", default=None, help="torch device of the PMF (default: cuda if available, else cpu)")
    p.add_argument("--json", metavar="PATH", help="write the result as JSON")
    p.add_argument("--plot", metavar="PATH", help="draw the free-energy surfaces and phi profiles (png/pdf/svg)")
    p.set_defaults(func=run)


def _settings(args) -> dict:
    """Frames, stride and discarded frames from the times on the command line (CrosscheckError if unusable)."""
    from cgbg_bench.crosscheck import CrosscheckError

    for name in ("ns", "dt_fs", "save_fs", "friction", "mass"):
        value = getattr(args, name)
        if not (math.isfinite(value) and value > 0):
            raise CrosscheckError(f"--{name.replace('_', '-')} must be a positive number, got {value}")
    for name in ("walkers", "bank_samples", "n_bootstrap"):
        value = getattr(args, name)
        if value is not None and value < 1:
            raise CrosscheckError(f"--{name.replace('_', '-')} must be a positive integer, got {value}")
    stride = round(args.save_fs / args.dt_fs)
    if stride < 1 or abs(stride * args.dt_fs - args.save_fs) > 1e-6 * args.save_fs:
        raise CrosscheckError(f"--save-fs {args.save_fs:g} must be a whole multiple of --dt-fs {args.dt_fs:g}")
    n_frames = round(args.ns * 1e6 / args.save_fs)
    if n_frames < 2:
        raise CrosscheckError(f"--ns {args.ns:g} gives {n_frames} frames at one per {args.save_fs:g} fs; need >= 2")
    eq_ps = 0.1 * args.ns * 1000 if args.equilibration_ps is None else args.equilibration_ps
    n_discard = round(eq_ps * 1000 / args.save_fs)
    if not (math.isfinite(eq_ps) and 0 <= n_discard < n_frames):
        raise CrosscheckError(f"--equilibration-ps {eq_ps:g} must be >= 0 and shorter than the run "
                              f"({args.ns * 1000:g} ps)")
    return {"n_frames": n_frames, "stride": stride, "n_discard": n_discard, "dt_ps": args.dt_fs / 1000}


def _table(result) -> str:
    from tabulate import tabulate

    from cgbg_bench.report import format_value_error as fmt

    rows = []
    for name, o in result.observables.items():
        rows.append([
            name,
            fmt(o.js.value, o.js.error),
            fmt(o.js_floor.value, o.js_floor.error),
            f"{o.js_excess_sigma:+.1f}",
            fmt(o.phi_positive_sim.point, o.phi_positive_sim.error),
            fmt(o.phi_positive_bank.point, o.phi_positive_bank.error),
            f"{o.population_sigma:+.1f}",
            fmt(o.phi_fe_rmse.value, o.phi_fe_rmse.error),
            f"{o.walkers_mixed:.2f}",
            "agree" if o.js_agrees and o.population_agrees else "DISAGREE",
        ])
    header = ["observable", "JS(sim, bank)", "JS floor", "excess (sigma)", "phi>0 sim", "phi>0 bank",
              "diff (sigma)", "phi FE RMSE (kT)", "walkers mixed", "verdict"]
    return tabulate(rows, headers=header, tablefmt="github")


def run(args) -> int:
    from cgbg_bench._io import atomic_write_text
    from cgbg_bench.crosscheck import N_SIGMA, crosscheck, plot_crosscheck
    from cgbg_bench.task import load_task

    settings = _settings(args)
    task = load_task(args.task)
    result = crosscheck(
        args.pmf, task, n_walkers=args.walkers, friction_per_ps=args.friction, seed=args.seed,
        n_bootstrap=args.n_bootstrap, bank_samples=args.bank_samples, device=args.device, mass_amu=args.mass,
        start=args.start, clip_percentile=args.clip_percentile, progress=True, **settings,
    )
    e_min, e_mean, e_max = result.sim_energy_kj_per_mol
    print(f"task {task.name} v{task.version}, PMF {args.pmf}, device {result.device}, {result.runtime_s:.1f} s")
    print(f"bank: {result.n_bank} samples, ESS {result.ess:.3f}, {result.as_dict()['weighting']} "
          f"({result.clipped_weight_fraction:.3f} of the weight discarded)")
    print(f"simulation: {result.n_walkers} walkers started from the bank ({result.start}), "
          f"{result.equilibration_ps:g} ps discarded + {result.production_ps:g} ps production each, "
          f"dt {result.dt_ps * 1000:g} fs, friction {result.friction_per_ps:g}/ps, mass {result.mass_amu:g} amu; "
          f"energy min/mean/max {e_min:.1f}/{e_mean:.1f}/{e_max:.1f} kJ/mol")
    print(_table(result))
    print(f"values are bootstrap mean(standard deviation) ({result.n_bootstrap} replicates; walkers resampled on "
          "the simulation side, proposal blocks on the bank side); phi>0 columns show full-data values. "
          f"Agreement: JS - floor <= {N_SIGMA:g} and |phi>0 difference| <= {N_SIGMA:g} combined standard errors. "
          "'walkers mixed': share of walkers with >= 5% of their frames on each side of phi = 0 "
          "(the phi>0 test has power only if walkers cross)")
    print(f"verdict: {'AGREE' if result.agree else 'DISAGREE'}")
    if args.json:
        atomic_write_text(args.json, json.dumps(result.as_dict(), indent=2) + "\n")
        print(f"wrote {args.json}")
    if args.plot:
        plot_crosscheck(result, args.plot)
        print(f"wrote {args.plot}")
    return 0 if result.agree else 1
