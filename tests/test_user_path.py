"""The friction a new user met on the path from "my PMF" to the leaderboard (issue 31): one test each."""

from __future__ import annotations

import shutil
import types
import warnings
from pathlib import Path

import numpy as np
import pytest
import yaml

from cgbg_bench import metrics as M
from cgbg_bench.task import MetricSettings


# --------------------------------------------------------------- item 7: raw numpy warnings ---
def test_normalized_weights_of_a_pmf_in_wrong_units_raise_no_numpy_warning():
    """A PMF in the wrong units spreads log-weights over thousands of kT: the clipped samples
    (far above the kept ones) must not be exponentiated (overflow) nor warn."""
    rng = np.random.default_rng(0)
    log_w = rng.normal(size=10_000) * 3000.0
    keep = M.clip_mask(log_w, 99)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # any RuntimeWarning fails the test
        w = M.normalized_weights(log_w, keep)
    assert np.isfinite(w).all() and w.sum() == pytest.approx(1.0)
    assert (w[~keep] == 0).all() and w[keep].max() > 0
    assert w[np.argmax(np.where(keep, log_w, -np.inf))] == w.max()


def test_normalized_weights_unchanged_for_ordinary_log_weights():
    rng = np.random.default_rng(1)
    log_w = rng.normal(size=1000)
    keep = M.clip_mask(log_w, 99)
    expected = np.where(keep, np.exp(log_w - log_w[keep].max()), 0.0)
    np.testing.assert_array_equal(M.normalized_weights(log_w, keep), expected / expected.sum())


def test_normalized_weights_reject_non_finite_kept_log_weights():
    with pytest.raises(ValueError, match="not finite"):
        M.normalized_weights(np.array([0.0, np.inf, 1.0]))


# ------------------------------------------------- item 3 and 7: one progress display, no \r in logs ---
class _Tty:
    """A stream that says it is a terminal."""

    def __init__(self):
        import io

        self.buf = io.StringIO()

    def isatty(self):
        return True

    def write(self, s):
        return self.buf.write(s)

    def flush(self):
        pass


def test_progress_writes_plain_lines_with_an_estimate_when_not_a_terminal(monkeypatch):
    import io

    from cgbg_bench.progress import mode, progress

    monkeypatch.delenv("CGBG_BENCH_PROGRESS", raising=False)
    log = io.StringIO()
    assert mode(log) == "lines" and mode(_Tty()) == "bar"
    with progress(5, desc="training", unit="epoch", stream=log, every_s=0.0, bound=True) as bar:
        for k in range(3):
            bar.update(1, note=f"val {k}")
    text = log.getvalue()
    assert "\r" not in text
    lines = text.splitlines()
    assert lines[0].startswith("training: 1/5 epochs") and "left" in lines[0] and "(val 0)" in lines[0]
    assert lines[-2].startswith("training: 3/5 epochs")
    assert lines[-1].startswith("training: done after 3/5 epochs") and "left" not in lines[-1]  # stopped early
    quiet = io.StringIO()
    with progress(1000, desc="energies", stream=quiet, every_s=3600.0) as bar:
        for _ in range(1000):
            bar.update(1)
    assert len(quiet.getvalue().splitlines()) <= 2  # rate-limited: the first and the last


def test_progress_is_a_tqdm_bar_on_a_terminal_and_can_be_turned_off(monkeypatch):
    import io

    from cgbg_bench.progress import progress

    monkeypatch.delenv("CGBG_BENCH_PROGRESS", raising=False)
    tty = _Tty()
    with progress(4, desc="training", unit="epoch", stream=tty) as bar:
        for _ in range(4):
            bar.update(1)
    assert "training" in tty.buf.getvalue() and "4/4" in tty.buf.getvalue()
    monkeypatch.setenv("CGBG_BENCH_PROGRESS", "off")
    off = io.StringIO()
    with progress(4, desc="training", stream=off, every_s=0.0) as bar:
        bar.update(4)
    assert off.getvalue() == ""
    monkeypatch.setenv("CGBG_BENCH_PROGRESS", "lines")
    assert progress(1, stream=tty).display == "lines"


# ------------------------------------------------------------- item 3: train-pmf data and progress ---
RUN = Path(__file__).resolve().parents[1] / "data" / "ala2" / "explicit-wtmetad"


def _fake_run(path: Path, n_chunks: int) -> None:
    path.mkdir(parents=True)
    for name in ("run.json", "solute.pdb"):
        shutil.copy(RUN / name, path / name)
    for k in range(n_chunks):  # the run's own first chunks (a chunk knows its index)
        shutil.copy(RUN / f"chunk_{k:06d}.npz", path / f"chunk_{k:06d}.npz")


@pytest.fixture()
def fake_checkout(tmp_path, monkeypatch):
    """A checkout (CGBG_BENCH_ROOT) with three biased runs and a task whose fm-biased baseline
    recorded two of them, 1 chunk each (the runs have 2, 2 and 1)."""
    if not (RUN / "chunk_000001.npz").is_file():
        pytest.skip("data/ala2/explicit-wtmetad/chunk_00000[01].npz are not in this checkout")
    from cgbg_bench.fm.peptide import _chunks_sha256
    from cgbg_bench.md.production import chunk_paths

    root = tmp_path / "checkout"
    for name, n in (("explicit-wtmetad", 2), ("explicit-static", 2), ("explicit-static-2", 1)):
        _fake_run(root / "data" / "ala2" / name, n)
    side = {"format": "cgbg-bench force-matching pmf v1",
            "data": [{"dir": f"data/ala2/{name}", "n_chunks": 1, "n_frames": 400,
                      "chunks_sha256": _chunks_sha256(chunk_paths(root / "data" / "ala2" / name)[:1])}
                     for name in ("explicit-wtmetad", "explicit-static")],
            "settings": {"seed": 23, "n_models": 4, "dihedral_correction": 4}}
    (root / "baselines").mkdir()
    (root / "baselines" / "fm-biased.yaml").write_text(yaml.safe_dump(side))
    task = types.SimpleNamespace(
        name="ala2-core-beta", system="ala2", representation="core-beta",
        baselines=[types.SimpleNamespace(name="fm-biased", kind="pmf",
                                         file=types.SimpleNamespace(path=root / "baselines" / "fm-biased.pt2"))])
    monkeypatch.setattr("cgbg_bench.task.load_task", lambda name: task)
    monkeypatch.setenv("CGBG_BENCH_ROOT", str(root))
    monkeypatch.delenv("CGBG_BENCH_PROGRESS", raising=False)
    return root


def test_train_pmf_biased_uses_the_tasks_recipe_under_the_checkout_and_says_so(fake_checkout, tmp_path, capsys):
    from cgbg_bench.cli import main

    root = fake_checkout
    out = tmp_path / "p.pt2"
    assert main(["train-pmf", "--task", "ala2-core-beta", "--data", "biased", "--out", str(out), "--prior-only"]) == 0
    text = capsys.readouterr().out
    assert "task ala2-core-beta's recipe" in text and str(root) in text
    assert "data/ala2/explicit-wtmetad: 1 of 2 chunks, 400 frames" in text
    assert "data/ala2/explicit-static: 1 of 2 chunks, 400 frames" in text
    assert "800 frames in all" in text and "--n-models 4 --dihedral-correction 4 --seed 23" in text
    assert "NOT the task's snapshot" not in text
    side = yaml.safe_load(out.with_suffix(".yaml").read_text())
    assert [d["dir"] for d in side["data"]] == [str(root / "data/ala2/explicit-wtmetad"),
                                               str(root / "data/ala2/explicit-static")]  # not explicit-static-2
    assert [d["n_chunks"] for d in side["data"]] == [1, 1]
    assert f"--max-chunks {root / 'data/ala2/explicit-static'}=1" in side["command"]
    # --all-chunks: every finished chunk of the recipe's runs
    assert main(["train-pmf", "--task", "ala2-core-beta", "--data", "biased", "--all-chunks", "--out", str(out),
                 "--prior-only"]) == 0
    side = yaml.safe_load(out.with_suffix(".yaml").read_text())
    assert [d["n_chunks"] for d in side["data"]] == [2, 2]
    # a checkout without the recipe's runs: the error names the root and CGBG_BENCH_ROOT
    shutil.rmtree(root / "data/ala2/explicit-static")
    capsys.readouterr()
    assert main(["train-pmf", "--task", "ala2-core-beta", "--data", "biased", "--out", str(out),
                 "--prior-only"]) == 2
    err = capsys.readouterr().err
    assert "explicit-static" in err and "CGBG_BENCH_ROOT" in err and str(root) in err


def test_train_pmf_shows_progress_per_epoch_as_plain_lines_in_a_log(fake_checkout, tmp_path, capsys):
    from cgbg_bench.cli import main

    out = tmp_path / "m.pt2"
    assert main(["train-pmf", "--task", "ala2-core-beta", "--data", "biased", "--out", str(out),
                 "--max-epochs", "2", "--hidden", "8", "--n-rbf", "4"]) == 0
    err = capsys.readouterr().err  # captured: not a terminal
    assert "\r" not in err
    lines = [line for line in err.splitlines() if line.startswith("training: ")]
    assert [line.split(" epochs")[0] for line in lines] == ["training: 1/2", "training: 2/2"]  # one per epoch
    assert "at most ~" in lines[0] and "val force RMSE" in lines[0]


def test_train_pmf_help_says_how_long_and_which_data(capsys):
    from cgbg_bench.cli import main

    with pytest.raises(SystemExit):
        main(["train-pmf", "--help"])
    out = capsys.readouterr().out
    assert "per epoch" in out and "minutes" in out and "time left" in out
    assert "explicit-static-2" in out and "recipe" in out and "CGBG_BENCH_ROOT" in out


# ------------------------------------------------------------------ item 6: the evaluate --plot figure ---
def _dihedral_task(n_bins: int = 20):
    obs = types.SimpleNamespace(name="ala1", kind="dihedral_pair", bins=(n_bins, n_bins), n_bins=n_bins * n_bins,
                                ndim=2, range=((-np.pi, np.pi), (-np.pi, np.pi)))
    return types.SimpleNamespace(name="toy-dihedrals", version=1, observables=[obs],
                                 metrics=MetricSettings(clip_percentile=99.0, n_bootstrap=20,
                                                                 proposal_blocks=10, weighting="clip"))


def test_free_energy_difference_is_submission_minus_reference_up_to_a_constant():
    from cgbg_bench.plot import free_energy_difference

    p = np.array([0.5, 0.3, 0.2, 0.0])
    delta = np.array([0.0, 1.0, -0.5, 0.0])  # kT: the submission's free energy minus the reference's
    q = p * np.exp(-delta)
    q[3] = 0.1  # empty in the reference: no difference there
    d = free_energy_difference(p, q / q.sum())
    np.testing.assert_allclose(d[:3], delta[:3] - np.sum(p[:3] * delta[:3]))
    assert np.isnan(d[3])


def test_evaluate_plot_has_a_difference_panel_says_what_white_means_and_no_blank_width():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from cgbg_bench.plot import profile_figure

    task = _dihedral_task()
    rng = np.random.default_rng(0)
    n = 20_000
    index = rng.integers(0, 400, size=(1, n))
    index[0, :50] = 7  # a crowded bin
    ref_hist = np.bincount(rng.integers(0, 300, size=n), minlength=400).astype(float)  # bins 300+ empty: white
    reference = types.SimpleNamespace(hist=(ref_hist / ref_hist.sum())[None])
    log_w = rng.normal(size=n)
    fig = profile_figure(task, reference, index, log_w, label="mine")
    try:
        fig.canvas.draw()
        titles = [ax.get_title() for ax in fig.axes]
        assert any("reweighted - reference" in t for t in titles)
        maps = [ax for ax in fig.axes if ax.images]
        assert len(maps) >= 4  # reference, raw, reweighted, difference
        labels = [ax.get_ylabel() for ax in fig.axes]
        assert any("difference (kT)" in lab for lab in labels)
        texts = " ".join(t.get_text() for t in fig.texts) + fig.get_suptitle()
        assert "white bins" in texts and "no sample" in texts
        assert "after the weighting step" in texts
        boxes = [ax.get_position() for ax in fig.axes]  # panels and colour bars, in figure fractions
        assert min(b.x0 for b in boxes) < 0.06 and max(b.x1 for b in boxes) > 0.94  # no blank strip
    finally:
        plt.close(fig)


def test_progress_delay_keeps_quick_work_quiet_and_update_to_counts_absolute(monkeypatch):
    import io

    from cgbg_bench.progress import progress

    monkeypatch.delenv("CGBG_BENCH_PROGRESS", raising=False)
    quiet = io.StringIO()
    with progress(100, desc="energies", stream=quiet, every_s=0.0, delay_s=60.0) as bar:
        for done in range(10, 101, 10):
            bar.update_to(done)
    assert quiet.getvalue() == ""
    log = io.StringIO()
    with progress(100, desc="energies", unit="sample", stream=log, every_s=0.0) as bar:
        bar.update_to(40)
        bar.update_to(100)
    assert log.getvalue().splitlines()[-1].startswith("energies: 100/100 samples")
