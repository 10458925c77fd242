"""Hostile and careless submissions: crafted archives, slow, greedy, crashing and batch-coupled models.

Each test here failed before its fix (issue: hostile submissions): a crafted .pt2 ran its
pickle on load, a slow forward hung evaluate, a greedy one ran without a cap, a forward that
raised only on large batches gave a traceback, and batch coupling above 7 samples passed.
"""

from __future__ import annotations

import io
import json
import os
import pickle
import subprocess
import sys
import time
import zipfile
from pathlib import Path

import numpy as np
import pytest
import torch

from cgbg_bench import confine
from cgbg_bench.archive import check_export_archive, check_program_ops
from cgbg_bench.errors import (ModelCrashed, ModelMemoryLimit, ModelTimeout, PMFContractError,
                               UnsafeArchive)
from cgbg_bench.evaluate import evaluate
from cgbg_bench.pmf import load_pmf
from cgbg_bench.task import load_task

ROOT = Path(__file__).resolve().parents[1]
EXACT = ROOT / "baselines" / "mueller-brown" / "exact.pt2"


class _Marker:
    """A pickle that, when unpickled by the full unpickler, creates a marker file."""

    def __init__(self, path: Path):
        self.path = str(path)

    def __reduce__(self):
        return (eval, (f"open({self.path!r}, 'w').write('ran') and ()",))


def _rewrite(src: Path, dst: Path, replace: dict[str, bytes] | None = None,
             add: dict[str, bytes] | None = None) -> Path:
    """Copy the zip ``src`` to ``dst`` with members replaced (by name suffix) or added."""
    with zipfile.ZipFile(src) as zin, zipfile.ZipFile(dst, "w") as zout:
        root = zin.namelist()[0].split("/", 1)[0]
        for info in zin.infolist():
            data = zin.read(info)
            for suffix, new in (replace or {}).items():
                if info.filename.endswith(suffix):
                    data = new
            zout.writestr(info, data)
        for name, data in (add or {}).items():
            zout.writestr(f"{root}/{name}", data)
    return dst


@pytest.fixture(scope="module")
def task():
    return load_task("mueller-brown")


def test_crafted_sample_inputs_pickle_never_runs(tmp_path):
    marker = tmp_path / "ran"
    evil = _rewrite(EXACT, tmp_path / "evil.pt2",
                    replace={"data/sample_inputs/model.pt": pickle.dumps(_Marker(marker), protocol=2)})
    with pytest.raises(UnsafeArchive, match="restricted unpickler"):
        load_pmf(evil, "cpu")
    proc = subprocess.run([sys.executable, "-m", "cgbg_bench", "evaluate", str(evil), "--task", "mueller-brown",
                           "--n-samples", "1000", "--n-bootstrap", "5"],
                          capture_output=True, text=True, cwd=ROOT)
    assert proc.returncode == 2, proc.stderr
    assert "UnsafeArchive" in proc.stderr and "Traceback" not in proc.stderr
    assert not marker.exists()


def test_pickled_weight_payload_is_checked(tmp_path):
    marker = tmp_path / "ran"
    with zipfile.ZipFile(EXACT) as z:
        name = next(n for n in z.namelist() if n.endswith("model_weights_config.json"))
        cfg = json.loads(z.read(name))
    fqn = next(iter(cfg["config"]))
    cfg["config"][fqn]["use_pickle"] = True
    target = cfg["config"][fqn]["path_name"]
    buf = io.BytesIO()
    torch.save(torch.zeros(3), buf)  # a plain tensor pickle is fine ...
    ok = _rewrite(EXACT, tmp_path / "ok.pt2", replace={"model_weights_config.json": json.dumps(cfg).encode(),
                                                       f"data/weights/{target}": buf.getvalue()})
    check_export_archive(ok.read_bytes(), "ok")
    evil = _rewrite(EXACT, tmp_path / "evil.pt2",  # ... one that runs code is refused
                    replace={"model_weights_config.json": json.dumps(cfg).encode(),
                             f"data/weights/{target}": pickle.dumps(_Marker(marker), protocol=2)})
    with pytest.raises(UnsafeArchive, match=f"data/weights/{target}"):
        load_pmf(evil, "cpu")
    assert not marker.exists()


@pytest.mark.parametrize("member", ["data/aotinductor/model/model.so", "data/constants/custom_obj_0",
                                    "data/constants/opaque_obj_0", "data/weights/model.pt"])
def test_members_that_would_run_code_are_refused(tmp_path, member):
    evil = _rewrite(EXACT, tmp_path / "evil.pt2", add={member: b"\x7fELF not really"})
    with pytest.raises(UnsafeArchive, match="not part of a plain torch.export program"):
        load_pmf(evil, "cpu")


def test_shipped_baselines_pass_the_archive_check():
    for path in sorted((ROOT / "baselines").glob("*/*.pt2")):
        check_export_archive(path.read_bytes(), str(path))


def test_programs_may_only_call_tensor_operators():
    lib = torch.library.Library("cgbgtest", "DEF")  # noqa: F841 (kept alive while the op is used)
    lib.define("shift(Tensor x) -> Tensor")
    lib.impl("shift", lambda x: x + 1.0, "CompositeExplicitAutograd")

    class Custom(torch.nn.Module):
        def forward(self, x):
            return torch.ops.cgbgtest.shift(x).sum(-1)

    class Plain(torch.nn.Module):
        def forward(self, x):
            return (x * x).sum(-1)

    x = torch.zeros(4, 2)
    check_program_ops(torch.export.export(Plain(), (x,)))
    with pytest.raises(UnsafeArchive, match="cgbgtest"):
        check_program_ops(torch.export.export(Custom(), (x,)))


# --- confinement: time, memory, crashes -----------------------------------------------------


def _sleep(seconds: float) -> None:
    time.sleep(seconds)


def _allocate(gib: float) -> None:
    np.ones(int(gib * 2**30) // 8)


def _die() -> None:
    os.kill(os.getpid(), 9)


def _energies() -> np.ndarray:
    return np.arange(5.0)


def test_confined_call_returns_plain_arrays():
    out = confine.run_confined(_energies, (), limits=confine.Limits(timeout_s=120))
    np.testing.assert_array_equal(out, np.arange(5.0))


def _malloc_settings() -> np.ndarray:
    return np.array([float(os.environ.get(k, "nan")) for k in sorted(confine.CHILD_MALLOC)])


def test_child_malloc_keeps_large_blocks_unless_the_user_says_otherwise(monkeypatch):
    """The child runs with CHILD_MALLOC (no fresh mapping, and no page faults, for every per-batch
    tensor); a setting already in the environment wins."""
    names = sorted(confine.CHILD_MALLOC)
    for name in names:
        monkeypatch.delenv(name, raising=False)
    out = confine.run_confined(_malloc_settings, (), limits=confine.Limits(timeout_s=120))
    np.testing.assert_array_equal(out, [float(confine.CHILD_MALLOC[k]) for k in names])
    monkeypatch.setenv(names[-1], "12345")
    out = confine.run_confined(_malloc_settings, (), limits=confine.Limits(timeout_s=120))
    assert out[-1] == 12345.0 and out[0] == float(confine.CHILD_MALLOC[names[0]])


def test_timeout_is_a_typed_error_naming_the_limit():
    t0 = time.perf_counter()
    with pytest.raises(ModelTimeout, match=r"more than 15 s.*timeout_s"):
        confine.run_confined(_sleep, (600,), limits=confine.Limits(timeout_s=15))
    assert time.perf_counter() - t0 < 60


def test_memory_cap_is_a_typed_error_naming_the_limit():
    with pytest.raises(ModelMemoryLimit, match=r"more than 1 GiB.*memory_gb"):
        confine.run_confined(_allocate, (4.0,), limits=confine.Limits(timeout_s=120, memory_gb=1.0))


def test_a_killed_child_is_reported():
    with pytest.raises(ModelCrashed, match="exit code"):
        confine.run_confined(_die, (), limits=confine.Limits(timeout_s=120))


def test_limits_are_validated():
    with pytest.raises(Exception, match="timeout_s"):
        confine.Limits(timeout_s=0)
    with pytest.raises(Exception, match="memory_gb"):
        confine.Limits(memory_gb=float("nan"))


# --- contract evasion on large batches ------------------------------------------------------


class _RaisesOnLargeBatches(torch.nn.Module):
    def forward(self, x):
        if x.shape[0] > 7:
            raise RuntimeError("only small batches")
        return x.sum(-1)


class _CoupledOnLargeBatches(torch.nn.Module):
    def forward(self, x):
        e = (x * x).sum(-1)
        if x.shape[0] > 7:
            e = e - e.mean()
        return e


@pytest.mark.parametrize("model, match", [(_RaisesOnLargeBatches, "raised on a batch of"),
                                          (_CoupledOnLargeBatches, "must not depend on the rest of the batch")])
def test_contract_is_checked_at_the_batch_size_used(tmp_path, task, model, match):
    path = tmp_path / "model.pt"
    torch.jit.save(torch.jit.script(model()), str(path))
    with pytest.raises(PMFContractError, match=match):
        evaluate(path, task, n_samples=2000, n_bootstrap=5, batch_size=512, device="cpu")
    proc = subprocess.run([sys.executable, "-m", "cgbg_bench", "evaluate", str(path), "--task", "mueller-brown",
                           "--n-samples", "2000", "--n-bootstrap", "5", "--batch-size", "512"],
                          capture_output=True, text=True, cwd=ROOT)
    assert proc.returncode == 2 and "Traceback" not in proc.stderr, proc.stderr


def test_confined_scores_equal_in_process_scores(task):
    by_path, _ = evaluate(EXACT, task, n_samples=5000, n_bootstrap=20, device="cpu")
    in_process, _ = evaluate(load_pmf(EXACT, "cpu"), task, n_samples=5000, n_bootstrap=20, device="cpu")
    assert by_path.scores.metrics["js"] == in_process.scores.metrics["js"]


@pytest.mark.parametrize("case_only", [False, True])
def test_duplicate_member_names_are_refused(tmp_path, case_only):
    """torch's zip reader looks names up case-insensitively and may pick any copy of a repeated
    name: an archive whose checked copy is not the one torch reads must not load."""
    marker = tmp_path / "ran"
    evil = pickle.dumps(_Marker(marker), protocol=2)
    with zipfile.ZipFile(EXACT) as zin, zipfile.ZipFile(tmp_path / "dup.pt2", "w") as zout:
        for info in zin.infolist():
            if info.filename.endswith("data/sample_inputs/model.pt"):
                name = info.filename
                if case_only:
                    name = name.replace("sample_inputs/model.pt", "sample_inputs/MODEL.pt")
                zout.writestr(name, evil)  # an unchecked copy first ...
            zout.writestr(info, zin.read(info))  # ... then the checked one
    with pytest.raises(UnsafeArchive, match="more than once"):
        load_pmf(tmp_path / "dup.pt2", "cpu")
    assert not marker.exists()


class _WritesFiles(torch.nn.Module):
    def forward(self, x):
        torch.save(x, "/tmp/cgbg-bench-test-written.pt")
        return x.sum(-1)


def test_torchscript_that_touches_files_is_refused(tmp_path):
    path = tmp_path / "writes.pt"
    torch.jit.save(torch.jit.script(_WritesFiles()), str(path))
    with pytest.raises(UnsafeArchive, match="aten::save"):
        load_pmf(path, "cpu")
    ok = tmp_path / "ok.pt"
    torch.jit.save(torch.jit.script(_CoupledOnLargeBatches()), str(ok))
    load_pmf(ok, "cpu")  # control flow and plain tensor operators are fine
