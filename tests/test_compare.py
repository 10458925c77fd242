"""Phi profiles and phi > 0 populations of the simulation-free comparison (known answers)."""

import math

import numpy as np
import pytest

from cgbg_bench.compare import phi_profile_from_blocks, phi_profile_from_weights


def _flat(phi_bin, psi_bin, n=100):
    return phi_bin * n + psi_bin


def test_population_and_profile_of_a_known_weighted_sample():
    rng = np.random.default_rng(0)
    n = 40_000
    phi_bin = np.where(rng.random(n) < 0.5, 20, 70)  # half at phi < 0 (bin 20), half at phi > 0 (bin 70)
    index = _flat(phi_bin, rng.integers(0, 100, n))
    w = np.where(phi_bin == 70, 1.0, 3.0)  # reweight to 1/4 at phi > 0
    prof = phi_profile_from_weights("x", index, w / w.sum(), n_blocks=100, n_bootstrap=200)
    assert prof.phi_positive == pytest.approx(0.25, abs=4 * prof.phi_positive_error)
    # binomial-like error of the weighted fraction: sqrt(p(1-p)/N) times the weight-variance inflation
    assert 0.5 * math.sqrt(0.25 * 0.75 / n) < prof.phi_positive_error < 3 * math.sqrt(0.25 * 0.75 / n)
    np.testing.assert_allclose(prof.hist[[20, 70]], [0.75, 0.25], atol=4 * prof.phi_positive_error)
    f = prof.free_energy_kT
    assert f[20] == 0 and f[70] == pytest.approx(math.log(3), abs=0.05) and np.isnan(f[0])


def test_block_profile_error_grows_with_block_disagreement():
    same = np.zeros((20, 10_000))
    same[:, _flat(20, 5)] = 9
    same[:, _flat(70, 5)] = 1
    flip = same.copy()
    flip[::2, _flat(20, 5)], flip[::2, _flat(70, 5)] = 1, 9  # half of the blocks disagree
    a, b = phi_profile_from_blocks("a", same, n_bootstrap=200), phi_profile_from_blocks("b", flip, n_bootstrap=200)
    assert a.phi_positive == pytest.approx(0.1) and a.phi_positive_error < 1e-12
    assert b.phi_positive == pytest.approx(0.5) and b.phi_positive_error > 0.05


# ------------------------------------------------------------- the command line (issue 31 item 4) ---
def _compare_args(*argv):
    from cgbg_bench.cli import build_parser

    return build_parser().parse_args(["compare", *argv])


def test_label_takes_several_names_after_one_flag_or_one_per_flag():
    from cgbg_bench.cli.compare import labels_for

    files = ["my_pmf.pt2", "baselines/ala2-core-beta/fm-biased.pt2"]
    together = _compare_args(*files, "--task", "ala2-core-beta", "--label", "mine", "fm-biased")
    repeated = _compare_args(*files, "--task", "ala2-core-beta", "--label", "mine", "--label", "fm-biased")
    for args in (together, repeated):
        assert args.pmfs == files and labels_for(args.pmfs, args.label) == ["mine", "fm-biased"]
    default = _compare_args(*files, "--task", "ala2-core-beta")
    assert labels_for(default.pmfs, default.label) == ["my_pmf", "fm-biased"]


@pytest.mark.parametrize("labels", [["mine"], ["mine", "fm-biased", "third"]])
def test_label_count_other_than_the_file_count_is_an_error(tmp_path, capsys, labels):
    from cgbg_bench.cli import main

    files = []
    for name in ("a.pt2", "b.pt2"):
        (tmp_path / name).write_bytes(b"")
        files.append(str(tmp_path / name))
    assert main(["compare", *files, "--task", "ala2-core-beta", "--label", *labels]) == 2
    err = capsys.readouterr().err
    assert f"{len(labels)} label(s)" in err and "2 PMF file(s)" in err and "one label per file" in err


def test_compare_help_has_an_example_and_explains_the_phi_column(capsys):
    from cgbg_bench.cli import main

    with pytest.raises(SystemExit):
        main(["compare", "--help"])
    out = capsys.readouterr().out
    assert "--label mine fm-biased" in out and "example" in out
    assert "after the weighting step" in out


def test_plot_leaves_the_matplotlib_backend_and_pyplot_alone(tmp_path):
    import matplotlib
    import matplotlib.pyplot as plt

    from cgbg_bench.compare import PhiProfile, plot_phi_profiles

    hist = np.full(100, 0.01)
    prof = PhiProfile("x", hist, 0.5, 0.01)
    before = matplotlib.get_backend()
    matplotlib.use("svg")  # a backend the user chose (plots used to switch it to Agg)
    try:
        n_figures = len(plt.get_fignums())
        plot_phi_profiles({"reference": prof, "pmfs": {"a": (None, prof)}, "gb": {"obc2": prof},
                           "proposal": prof}, tmp_path / "phi.png")
        assert matplotlib.get_backend() == "svg" and len(plt.get_fignums()) == n_figures
    finally:
        matplotlib.use(before)
    assert (tmp_path / "phi.png").read_bytes()[:4] == b"\x89PNG"


def test_no_library_function_sets_the_backend():
    from pathlib import Path

    import cgbg_bench

    package = Path(cgbg_bench.__file__).parent
    setters = [p.relative_to(package).as_posix() for p in package.rglob("*.py")
               if "cli" not in p.relative_to(package).parts and "matplotlib.use(" in p.read_text()]
    assert setters == []
