"""Damaged files (issue 25): every one is detected, said plainly, and nothing good is lost.

Item 5: cached proposal banks (truncated, bit-flipped, swapped, generated twice at once).
Item 6: MD run directories (truncated or missing checkpoint, truncated or flipped chunks,
chunks beyond the checkpoint, runs made before chunks.json existed).
"""

from __future__ import annotations

import json
import logging
import shutil
import threading
import time

import numpy as np
import pytest

from cgbg_bench import bank as bank_mod
from cgbg_bench._io import sha256_file
from cgbg_bench.cli import main
from cgbg_bench.errors import MDError
from cgbg_bench.md.production import RunSettings, chunk_paths, load_chunks, run, run_status
from cgbg_bench.task import load_task
from tests.toys import write_chain_task

# --------------------------------------------------------------------------- item 5: banks

SMALL = 300
N_FULL = 500


def _fake_bank(n, seed):
    rng = np.random.default_rng(seed)
    return rng.normal(size=(n, 6, 3)).astype(np.float32), rng.normal(size=n)


@pytest.fixture
def bank_task(tmp_path, monkeypatch):
    """A task whose bank generator is a seeded RNG (the cache is under test here, not the flow:
    tests/test_bank.py samples a real flow), and an empty cache."""

    monkeypatch.setenv("CGBG_BENCH_CACHE", str(tmp_path / "cache"))
    monkeypatch.setitem(bank_mod.GENERATORS, "ic-flow", lambda weights, n, seed: _fake_bank(n, seed))
    d = tmp_path / "tasks" / "chain"
    d.mkdir(parents=True)
    (d / "flow.pt").write_bytes(b"weights")  # only its sha256 keys the cache
    write_chain_task(d, n_samples=N_FULL, fingerprint=bank_mod.bank_fingerprint(*_fake_bank(N_FULL, 7)))
    return load_task("chain", root=tmp_path / "tasks"), tmp_path / "cache"


def _truncate(path, keep=0.5):
    data = path.read_bytes()
    path.write_bytes(data[: int(len(data) * keep)])


def _flip(path, where=0.6):
    data = bytearray(path.read_bytes())
    data[int(len(data) * where)] ^= 0x40
    path.write_bytes(bytes(data))


@pytest.mark.parametrize("n", [None, SMALL], ids=["full", "small"])
@pytest.mark.parametrize("damage", ["truncate", "flip"])
def test_damaged_bank_is_regenerated_with_a_warning(bank_task, caplog, n, damage):
    task, cache = bank_task
    good = task.load_proposal(n_samples=n)
    (path,) = cache.glob("*.npz")
    (_truncate if damage == "truncate" else _flip)(path)
    with caplog.at_level(logging.WARNING, logger="cgbg_bench.bank"):
        again = task.load_proposal(n_samples=n)  # before the fix: BadZipFile, or the flipped bank used
    np.testing.assert_array_equal(again.positions, good.positions)
    np.testing.assert_array_equal(again.log_q, good.log_q)
    assert "regenerating" in caplog.text and path.name in caplog.text
    record = json.loads(path.with_name(path.name + ".json").read_text())
    assert record["sha256"] == sha256_file(path) and record["bytes"] == path.stat().st_size


def test_swapped_small_bank_is_not_used(bank_task, caplog):
    """A small bank is not fingerprinted by the task; its own record still catches a wrong one."""
    task, cache = bank_task
    good = task.load_proposal(n_samples=SMALL)
    (path,) = cache.glob("*.npz")
    np.savez(path, positions=good.positions * 1.01, log_q=good.log_q)  # a valid file, wrong samples
    with caplog.at_level(logging.WARNING, logger="cgbg_bench.bank"):
        again = task.load_proposal(n_samples=SMALL)
    np.testing.assert_array_equal(again.positions, good.positions)
    assert "regenerating" in caplog.text


def test_bank_cached_without_a_record(bank_task, monkeypatch):
    """Banks cached by older code: a small one cannot be checked and is made again; a full one
    is checked against the task's fingerprint and adopted."""
    task, cache = bank_task
    good = task.load_proposal(n_samples=SMALL)
    (path,) = cache.glob("*.npz")
    path.with_name(path.name + ".json").unlink()  # as cached by older code
    np.savez(path, positions=good.positions * 1.01, log_q=good.log_q)
    np.testing.assert_array_equal(task.load_proposal(n_samples=SMALL).positions, good.positions)
    task.load_proposal()
    full = bank_mod.bank_cache_path(task)
    full.with_name(full.name + ".json").unlink()
    monkeypatch.setitem(bank_mod.GENERATORS, "ic-flow", lambda *a: pytest.fail("regenerated"))
    task.load_proposal()
    assert full.with_name(full.name + ".json").is_file()


def test_two_generators_at_once_generate_once(bank_task, monkeypatch):
    task, _ = bank_task
    real = bank_mod.GENERATORS["ic-flow"]
    calls = []

    def slow(*args):
        calls.append(1)
        time.sleep(0.5)
        return real(*args)

    monkeypatch.setitem(bank_mod.GENERATORS, "ic-flow", slow)
    out, errors = [], []

    def load():
        try:
            out.append(bank_mod.generated_bank(task, SMALL))
        except Exception as exc:  # noqa: BLE001
            errors.append(exc)

    threads = [threading.Thread(target=load) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors and len(out) == 2 and len(calls) == 1
    np.testing.assert_array_equal(out[0][0], out[1][0])


# --------------------------------------------------------------------------- item 6: MD runs

ARGS = ["md", "run", "--system", "ala2", "--solvent", "vacuum", "--chunk-ps", "1", "--equil-ps", "0.4",
        "--seed", "3", "--platform", "CPU"]
SETTINGS = RunSettings("ala2", "vacuum", seed=3, chunk_ps=1.0, equilibration_ps=0.4)


@pytest.fixture(scope="module")
def base_run(tmp_path_factory):
    """A 3-chunk vacuum run, and the checkpoint it had after 2 chunks."""
    root = tmp_path_factory.mktemp("mdrun")
    out = root / "run"
    run(SETTINGS, out, ns=0.002, platform="CPU", threads=1)
    shutil.copy(out / "checkpoint.npz", root / "checkpoint-2.npz")
    run(SETTINGS, out, ns=0.003, platform="CPU", threads=1)
    return out


@pytest.fixture
def run_dir(base_run, tmp_path):
    out = tmp_path / "run"
    shutil.copytree(base_run, out)
    return out


def _md(args, capsys):
    capsys.readouterr()
    rc = main(args)
    cap = capsys.readouterr()
    return rc, cap.out + cap.err


def test_chunks_are_recorded(run_dir):
    records = json.loads((run_dir / "chunks.json").read_text())["chunks"]
    assert [r["chunk"] for r in records] == [p.name for p in chunk_paths(run_dir)]
    assert all(r["sha256"] == sha256_file(run_dir / r["chunk"]) for r in records)


def test_truncated_checkpoint_is_refused_with_the_fix(run_dir, capsys):
    before = {p.name: sha256_file(p) for p in chunk_paths(run_dir)}
    _truncate(run_dir / "checkpoint.npz")
    rc, text = _md(ARGS + ["--ns", "0.004", "--out", str(run_dir)], capsys)
    assert rc == 2 and "MDError" in text and "checkpoint.npz is damaged" in text
    assert "git checkout" in text and "cannot be rebuilt" in text and "the first 3 of them good" in text
    assert {p.name: sha256_file(p) for p in chunk_paths(run_dir)} == before  # nothing touched
    rc, text = _md(["md", "status", str(run_dir)], capsys)
    assert rc == 1 and "PROBLEM" in text and "checkpoint.npz is damaged" in text
    st = run_status(run_dir)
    assert st["chunks_done"] == 3 and st["chunk_files"] == 3 and st["checkpoint"].startswith("damaged")
    # the chunks stay readable
    assert load_chunks(run_dir)["phi"].shape == (30, 1)


def test_deleted_checkpoint_status_counts_the_chunks(run_dir, capsys):
    (run_dir / "checkpoint.npz").unlink()
    st = run_status(run_dir)  # before the fix: 0 chunks
    assert st["chunks_done"] == 3 and st["checkpoint"] == "missing" and st["problems"]
    rc, text = _md(["md", "status", str(run_dir)], capsys)
    assert rc == 1 and "(3 chunks)" in text and "checkpoint.npz is missing" in text
    rc, text = _md(ARGS + ["--ns", "0.004", "--out", str(run_dir)], capsys)
    assert rc == 2 and "checkpoint.npz is missing" in text and len(chunk_paths(run_dir)) == 3


@pytest.mark.parametrize("legacy", [False, True], ids=["recorded", "before-chunks.json"])
def test_truncated_last_chunk_is_detected_and_kept(run_dir, capsys, legacy):
    if legacy:  # a run made before chunks.json: the chunk is checked by loading it whole
        (run_dir / "chunks.json").unlink(missing_ok=True)
    last = run_dir / "chunk_000002.npz"
    good = last.read_bytes()
    _truncate(last)
    damaged = last.read_bytes()
    rc, text = _md(["md", "status", str(run_dir)], capsys)  # before the fix: a traceback
    assert rc == 1 and "chunk_000002.npz is damaged" in text
    with pytest.raises(MDError, match="chunk_000002.npz is damaged"):
        load_chunks(run_dir)
    assert load_chunks(run_dir, max_chunks=2)["phi"].shape == (20, 1)
    # before the fix: "nothing to do" (exit 0)
    rc, text = _md(ARGS + ["--ns", "0.003", "--out", str(run_dir)], capsys)
    assert rc == 2 and "chunk_000002.npz is damaged" in text and "git checkout" in text
    assert (run_dir / "chunk_000002.npz.damaged").read_bytes() == damaged  # moved aside, not deleted
    # once it is restored, the run goes on
    last.write_bytes(good)
    assert main(ARGS + ["--ns", "0.004", "--out", str(run_dir)]) == 0
    assert load_chunks(run_dir)["phi"].shape == (40, 1)
    records = json.loads((run_dir / "chunks.json").read_text())["chunks"]
    assert len(records) == 4  # the resume recorded the older chunks too


def test_flipped_chunk_is_detected(run_dir, capsys):
    _flip(run_dir / "chunk_000001.npz")
    rc, text = _md(ARGS + ["--ns", "0.004", "--out", str(run_dir)], capsys)
    assert rc == 2 and "chunk_000001.npz is damaged" in text and "sha256" in text
    assert (run_dir / "chunk_000001.npz.damaged").exists()
    assert [p.name for p in chunk_paths(run_dir)] == ["chunk_000000.npz", "chunk_000002.npz"]


def test_chunks_beyond_an_older_checkpoint_are_moved_aside(base_run, run_dir, caplog):
    """An older checkpoint (say, restored from git): the chunks after it are kept, then redone."""
    old = {p.name: p.read_bytes() for p in chunk_paths(run_dir)}
    shutil.copy(base_run.parent / "checkpoint-2.npz", run_dir / "checkpoint.npz")
    assert any("beyond the checkpoint" in n for n in run_status(run_dir)["notes"])
    with caplog.at_level(logging.WARNING, logger="cgbg_bench.md.production"):
        run(SETTINGS, run_dir, ns=0.003, platform="CPU", threads=1)
    assert "moved aside" in caplog.text
    assert (run_dir / "chunk_000002.npz.stale").read_bytes() == old["chunk_000002.npz"]
    assert len(chunk_paths(run_dir)) == 3 and load_chunks(run_dir)["phi"].shape == (30, 1)


def test_no_run_json_with_chunks_is_not_overwritten(run_dir, capsys):
    before = {p.name: sha256_file(p) for p in chunk_paths(run_dir)}
    (run_dir / "run.json").unlink()
    rc, text = _md(ARGS + ["--ns", "0.004", "--out", str(run_dir)], capsys)
    assert rc == 2 and "no run.json" in text
    assert {p.name: sha256_file(p) for p in chunk_paths(run_dir)} == before


def test_damaged_manifest_is_moved_aside_and_written_anew(run_dir):
    (run_dir / "chunks.json").write_text('{"format": "cgbg-bench md chunks v1", "chu')
    st = run_status(run_dir)
    assert not st["problems"] and "chunks.json is unreadable" in st["notes"][0]
    assert load_chunks(run_dir)["phi"].shape == (30, 1)  # the chunks are checked by loading them
    run(SETTINGS, run_dir, ns=0.003, platform="CPU", threads=1)
    assert (run_dir / "chunks.json.damaged").exists()
    records = json.loads((run_dir / "chunks.json").read_text())["chunks"]
    assert [r["sha256"] for r in records] == [sha256_file(p) for p in chunk_paths(run_dir)]
