"""Energies submissions: a bank exported, energies computed outside, scored as the model would be."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from cgbg_bench.energies import bank_fingerprint_sha256, evaluate_energies, export_bank, is_energies_file
from cgbg_bench.errors import EnergiesFileError
from cgbg_bench.evaluate import evaluate
from cgbg_bench.pmf import load_pmf
from cgbg_bench.task import load_task

ROOT = Path(__file__).resolve().parents[1]
N = 4000


@pytest.fixture(scope="module")
def task():
    return load_task("mueller-brown")


@pytest.fixture(scope="module")
def exported(task, tmp_path_factory):
    """The bank's first N samples and the exact baseline's energies on them, as a user would make them."""
    tmp = tmp_path_factory.mktemp("energies")
    bank = export_bank(task, tmp / "bank.npz", n_samples=N)
    with np.load(bank) as z:
        positions, fingerprint, unit = z["positions"], str(z["fingerprint"]), str(z["energy_unit"])
    module = load_pmf(ROOT / "baselines" / "mueller-brown" / "exact.pt2", "cpu")
    with torch.no_grad():
        energies = module(torch.from_numpy(positions)).double().numpy()
    return tmp, positions, fingerprint, unit, energies


def _save(path, **arrays):
    np.savez(path, **arrays)
    return path


def test_energies_score_exactly_as_the_model(task, exported):
    tmp, positions, fingerprint, unit, energies = exported
    assert positions.dtype == np.float32 and positions.shape == (N, 1) and unit == "kT"
    f = _save(tmp / "e.npz", energies=energies, fingerprint=fingerprint, energy_unit=unit)
    assert is_energies_file(f) and not is_energies_file(ROOT / "baselines" / "mueller-brown" / "exact.pt2")
    from_energies, log_w_e = evaluate_energies(f, task, n_samples=N, n_bootstrap=50)
    module = load_pmf(ROOT / "baselines" / "mueller-brown" / "exact.pt2", "cpu")
    from_model, log_w_m = evaluate(module, task, n_samples=N, n_bootstrap=50, device="cpu")
    np.testing.assert_allclose(log_w_e, log_w_m, rtol=0, atol=1e-5)
    for name in ("js", "pmf_error", "ess"):
        assert from_energies.scores.metrics[name].value == pytest.approx(from_model.scores.metrics[name].value,
                                                                         rel=1e-6)
    assert from_energies.as_dict()["scored_from"] == "energies"


@pytest.mark.parametrize("change, match", [
    (dict(fingerprint="0" * 64), "fingerprint"),
    (dict(energy_unit="kJ/mol"), "convert"),
    (dict(drop=True), "shape"),
    (dict(dtype=np.int64), "dtype"),
    (dict(nan=True), "not finite"),
    (dict(extra=np.zeros(3)), "unknown keys"),
    (dict(no_fingerprint=True), "missing"),
])
def test_mismatched_energies_are_refused(task, exported, change, match):
    tmp, positions, fingerprint, unit, energies = exported
    e = energies.copy()
    arrays = dict(energies=e, fingerprint=change.get("fingerprint", fingerprint),
                  energy_unit=change.get("energy_unit", unit))
    if change.get("drop"):
        arrays["energies"] = e[:-1]
    if "dtype" in change:
        arrays["energies"] = e.astype(change["dtype"])
    if change.get("nan"):
        arrays["energies"][17] = np.nan
    if "extra" in change:
        arrays["extra"] = change["extra"]
    if change.get("no_fingerprint"):
        del arrays["fingerprint"]
    f = _save(tmp / "bad.npz", **arrays)
    with pytest.raises(EnergiesFileError, match=match):
        evaluate_energies(f, task, n_samples=N, n_bootstrap=5)


def test_object_arrays_are_never_unpickled(task, exported):
    tmp, _, fingerprint, unit, energies = exported
    f = _save(tmp / "obj.npz", energies=np.array([object()] * N, dtype=object), fingerprint=fingerprint,
              energy_unit=unit)
    with pytest.raises(EnergiesFileError, match="plain numbers"):
        evaluate_energies(f, task, n_samples=N, n_bootstrap=5)


def test_fingerprint_names_the_bank_exactly():
    x = np.zeros((10, 2, 3), np.float32)
    y = x.copy()
    y[3, 1, 2] = np.float32(1e-7)
    assert bank_fingerprint_sha256(x) != bank_fingerprint_sha256(y)
    assert bank_fingerprint_sha256(x) != bank_fingerprint_sha256(x.reshape(10, 6))
    assert bank_fingerprint_sha256(x.astype(np.float64)) == bank_fingerprint_sha256(x)


def test_bank_export_cli(tmp_path):
    out = tmp_path / "bank.npz"
    proc = subprocess.run([sys.executable, "-m", "cgbg_bench", "bank", "export", "mueller-brown", "--out", str(out),
                           "--n-samples", "100"], capture_output=True, text=True, cwd=ROOT)
    assert proc.returncode == 0, proc.stderr
    with np.load(out) as z:
        assert z["positions"].shape == (100, 1) and str(z["positions_unit"]) == "nm"
        assert str(z["task"]) == "mueller-brown" and len(str(z["fingerprint"])) == 64


def test_worked_example_in_the_docs_runs(tmp_path):
    """docs/energies.md's numpy example, run on a small export of ala2-core-beta's bank."""
    import re
    import textwrap

    text = (ROOT / "docs" / "energies.md").read_text()
    code = textwrap.dedent(re.search(r"```python\n(.*?) *```", text, re.S).group(1))
    task = load_task("ala2-core-beta")
    export_bank(task, tmp_path / "bank.npz", n_samples=2000)
    cwd = os.getcwd()
    os.chdir(tmp_path)
    try:
        exec(compile(code, "docs/energies.md", "exec"), {})
    finally:
        os.chdir(cwd)
    result, _ = evaluate_energies(tmp_path / "energies.npz", task, n_samples=2000, n_bootstrap=5)
    assert 0.0 < result.scores.metrics["js"].value < 1.0


def test_evaluate_cli_scores_an_energies_file(task, exported, tmp_path):
    _, _, fingerprint, unit, energies = exported
    f = _save(tmp_path / "e.npz", energies=energies, fingerprint=fingerprint, energy_unit=unit)
    out = tmp_path / "r.json"
    proc = subprocess.run([sys.executable, "-m", "cgbg_bench", "evaluate", str(f), "--task", "mueller-brown",
                           "--n-samples", str(N), "--n-bootstrap", "5", "--json", str(out)],
                          capture_output=True, text=True, cwd=ROOT)
    assert proc.returncode == 0, proc.stderr
    import json

    assert json.loads(out.read_text())["scored_from"] == "energies"


def test_leaderboard_accepts_an_energies_entry(task, tmp_path):
    """Record, validate, render and reproduce an entry scored from energies on the full bank."""
    from cgbg_bench.leaderboard import check_entry, load_entry, render_markdown, reproduce_entry
    from cgbg_bench.leaderboard.record import record_result

    root = tmp_path
    (root / "leaderboard" / "models" / "np-pmf").mkdir(parents=True)
    bank = export_bank(task, tmp_path / "bank.npz")
    with np.load(bank) as z:
        positions, fingerprint, unit = z["positions"], z["fingerprint"], z["energy_unit"]
    module = load_pmf(ROOT / "baselines" / "mueller-brown" / "exact.pt2", "cpu")
    with torch.no_grad():
        energies = module(torch.from_numpy(positions)).double().numpy()
    f = _save(root / "leaderboard" / "models" / "np-pmf" / "mueller-brown.npz", energies=energies,
              fingerprint=fingerprint, energy_unit=unit)
    result, _ = evaluate_energies(f, task)
    entry_path = record_result(root / "np-pmf.yaml", result, task, model_path=f, root=root)
    entry = load_entry(entry_path)
    model, stored = entry.models["mueller-brown"], entry.results["mueller-brown"]
    assert model.format == "energies" and stored.quick_check is None
    problems = [p for p in check_entry(entry, root=root) if "TODO" not in str(p)]
    assert problems == []
    md = render_markdown([entry])
    assert "exact.pt2" not in md and "(from energies)" in md  # the energies file is the model, not a .pt2
    rep = reproduce_entry(entry, root=root)
    assert rep.checks and all(c.compared for c in rep.checks) and not rep.problems
    assert any("scored from energies" in n for n in rep.notes)
