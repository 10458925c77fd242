"""Resumable runs: continue from the checkpoint, survive a kill, refuse mismatched settings."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time

import numpy as np
import pytest

from cgbg_bench.cli import main
from cgbg_bench.errors import MDError, RunLocked, RunSettingsMismatch
from cgbg_bench.md.production import RunSettings, _read_checkpoint, chunk_paths, load_chunks, run

ARGS = ["md", "run", "--system", "ala2", "--solvent", "vacuum", "--bias", "wtmetad",
        "--chunk-ps", "2", "--equil-ps", "1", "--metad-pace-ps", "0.5", "--seed", "5",
        "--platform", "CPU"]


def _sha(paths):
    from cgbg_bench._io import sha256_file

    return {p.name: sha256_file(p) for p in paths}


def test_resume_continues_from_checkpoint(tmp_path, capsys):
    out = tmp_path / "run"
    assert main(ARGS + ["--ns", "0.004", "--out", str(out)]) == 0
    first = _sha(chunk_paths(out))
    assert list(first) == ["chunk_000000.npz", "chunk_000001.npz"]
    ckpt = _read_checkpoint(out)
    assert ckpt["chunks_done"] == 2 and ckpt["step"] == 1000
    assert np.abs(ckpt["metad_grid"]).max() > 0
    # The same command with more ns appends two chunks; earlier chunks are untouched.
    assert main(ARGS + ["--ns", "0.008", "--out", str(out)]) == 0
    assert _sha(chunk_paths(out)[:2]) == first and len(chunk_paths(out)) == 4
    d = load_chunks(out)
    np.testing.assert_allclose(d["time_ps"], np.arange(1, 81) * 0.1, atol=1e-9)
    np.testing.assert_allclose(d["frame_time_ps"], np.arange(1, 9), atol=1e-9)
    # The metadynamics bias carried over: no reset to zero at the resume point (sample 40
    # is the first of the resumed session), and the grid kept growing.
    assert d["bias_energy_kj_per_mol"][40] > 0
    assert _read_checkpoint(out)["metad_grid"].sum() > ckpt["metad_grid"].sum()
    sidecar = json.loads((out / "run.json").read_text())
    assert [s["first_chunk"] for s in sidecar["sessions"]] == [0, 2]
    assert sidecar["settings"]["forcefield_files"] == ["amber99sbildn.xml"]
    assert sidecar["settings"]["metad"]["pace_ps"] == 0.5
    assert set(sidecar["sessions"][0]["versions"]) >= {"openmm", "mdtraj", "numpy"}
    # Asking for what is already there does nothing, and records no session in run.json.
    assert main(ARGS + ["--ns", "0.008", "--out", str(out)]) == 0
    assert len(chunk_paths(out)) == 4
    assert json.loads((out / "run.json").read_text()) == sidecar
    capsys.readouterr()
    assert main(["md", "status", str(out)]) == 0
    text = capsys.readouterr().out
    assert "0.008" in text and "chunk_000003.npz" in text and "ns/day" in text


@pytest.mark.parametrize("change", [["--seed", "6"], ["--solvent", "obc2"], ["--chunk-ps", "1"],
                                    ["--metad-height", "2"], ["--bias", "none"]])
def test_mismatched_resume_is_refused(tmp_path, change, capsys):
    out = tmp_path / "run"
    assert main(ARGS + ["--ns", "0.002", "--out", str(out)]) == 0
    before = _sha(sorted(out.glob("*.npz")))
    args = ARGS + ["--ns", "0.004", "--out", str(out)]
    if change[0] in args:
        args[args.index(change[0]) + 1] = change[1]
    else:
        args += change
    with pytest.raises(RunSettingsMismatch, match="refusing to append"):
        from cgbg_bench.cli import build_parser

        parsed = build_parser().parse_args(args)
        parsed.func(parsed)
    assert _sha(sorted(out.glob("*.npz"))) == before
    # Through the CLI: exit code 2 and a message naming the setting.
    assert main(args) == 2
    err = capsys.readouterr().err
    assert "RunSettingsMismatch" in err and change[0].lstrip("-").split("-")[0] in err


def test_stale_chunk_after_checkpoint_is_redone(tmp_path):
    """A kill between a chunk's rename and the checkpoint's leaves an extra chunk: moved aside, redone."""
    settings = RunSettings("ala2", "vacuum", seed=2, chunk_ps=2.0, equilibration_ps=1.0)
    out = tmp_path / "run"
    run(settings, out, ns=0.002, platform="CPU")
    (out / "chunk_000001.npz").write_bytes(b"garbage from a killed run")
    with pytest.raises(Exception):
        np.load(out / "chunk_000001.npz")
    assert load_chunks(out)["time_ps"].shape == (20,)  # only chunks the checkpoint covers
    run(settings, out, ns=0.004, platform="CPU")
    assert load_chunks(out)["time_ps"].shape == (40,)
    # the unreadable one was moved aside, not deleted
    assert (out / "chunk_000001.npz.damaged").read_bytes() == b"garbage from a killed run"


def test_killed_run_resumes(tmp_path):
    """SIGKILL a running process mid-run; the re-run continues and every chunk loads."""
    out = tmp_path / "run"
    cmd = [sys.executable, "-m", "cgbg_bench"] + ARGS + ["--ns", "1", "--out", str(out)]
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.time() + 60
        while time.time() < deadline and not (out / "chunk_000001.npz").exists():
            time.sleep(0.05)
        assert (out / "chunk_000001.npz").exists(), "the run did not produce chunks in time"
    finally:
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait()
    done = int(_read_checkpoint(out)["chunks_done"])
    assert done >= 1
    n_files = len(chunk_paths(out))
    assert n_files in (done, done + 1)
    assert main(ARGS + ["--ns", f"{(done + 2) * 0.002:.3f}", "--out", str(out)]) == 0
    d = load_chunks(out)
    n = (done + 2) * 20
    np.testing.assert_allclose(d["time_ps"], np.arange(1, n + 1) * 0.1, atol=1e-9)
    assert not list(out.glob("*.tmp"))


def test_errors(tmp_path):
    with pytest.raises(MDError, match="bias_from"):
        run(RunSettings("ala2", "vacuum", "static"), tmp_path / "a", ns=0.001)
    with pytest.raises(MDError, match="bias_residue"):
        run(RunSettings("ala2", "vacuum", "wtmetad", bias_residue=2), tmp_path / "b", ns=0.001)
    with pytest.raises(MDError, match="whole number"):
        run(RunSettings("ala2", "vacuum", chunk_ps=0.05), tmp_path / "c", ns=0.001)
    from cgbg_bench.md.production import run_status

    with pytest.raises(MDError, match="not an md run"):
        run_status(tmp_path)
    assert main(["md", "status", str(tmp_path)]) == 2


def test_second_writer_is_locked_out(tmp_path):
    from cgbg_bench.md.production import _lock

    out = tmp_path / "run"
    with _lock(out):
        with pytest.raises(RunLocked):
            with _lock(out):
                pass


def test_resumed_run_equals_uninterrupted_run(tmp_path):
    """Per-chunk seeds and a per-chunk Context from the serialized state: a run stopped
    and resumed reproduces the uninterrupted one exactly (CPU platform, 1 thread)."""
    settings = RunSettings("ala2", "vacuum", "wtmetad", seed=9, chunk_ps=2.0, equilibration_ps=1.0)
    run(settings, tmp_path / "straight", ns=0.006, threads=1, platform="CPU")
    run(settings, tmp_path / "resumed", ns=0.002, threads=1, platform="CPU")
    run(settings, tmp_path / "resumed", ns=0.006, threads=1, platform="CPU")
    a, b = load_chunks(tmp_path / "straight"), load_chunks(tmp_path / "resumed")
    for key in ("phi", "psi", "positions_nm", "forces_kj_per_mol_nm", "bias_energy_kj_per_mol"):
        np.testing.assert_array_equal(a[key], b[key], err_msg=key)


def test_status_reports_a_live_writer(tmp_path):
    from cgbg_bench.md.production import _lock, run_status

    out = tmp_path / "run"
    run(RunSettings("ala2", "vacuum", chunk_ps=1.0, equilibration_ps=0.4), out, ns=0.001,
        platform="CPU")
    assert run_status(out)["running_pid"] is None
    with _lock(out):
        assert run_status(out)["running_pid"] == os.getpid()
        with pytest.raises(RunLocked):
            run(RunSettings("ala2", "vacuum", chunk_ps=1.0, equilibration_ps=0.4), out,
                ns=0.002, platform="CPU")
        assert (out / ".lock").read_text() == str(os.getpid())  # the refused one kept it


def test_load_chunks_with_keys_missing_in_old_chunks(tmp_path):
    out = tmp_path / "run"
    run(RunSettings("ala2", "vacuum", chunk_ps=1.0, equilibration_ps=0.4), out, ns=0.002,
        platform="CPU")
    first = chunk_paths(out)[0]
    with np.load(first) as z:  # rewrite chunk 0 as older code wrote it
        old = {k: z[k] for k in z.files if k != "min_image_distance_nm"}
    np.savez_compressed(first, **old)
    (out / "chunks.json").unlink()  # older code recorded no sizes and hashes either
    d = load_chunks(out)
    assert "min_image_distance_nm" not in d and d["phi"].shape == (20, 1)
    with pytest.raises(MDError, match="min_image_distance_nm"):
        load_chunks(out, keys=("phi", "min_image_distance_nm"))
    assert set(load_chunks(out, keys=("phi",))) == {"phi"}


def test_bias_residue_counts_only_for_a_biased_run(tmp_path):
    from cgbg_bench.md.production import _compare

    # an unbiased run made when the default was the middle residue resumes under the scored one
    _compare({"bias": "none", "bias_residue": 3}, {"bias": "none", "bias_residue": 4}, tmp_path)
    with pytest.raises(RunSettingsMismatch, match="bias_residue"):
        _compare({"bias": "wtmetad", "bias_residue": 3}, {"bias": "wtmetad", "bias_residue": 4}, tmp_path)
