"""Provisional tasks (cgbg_bench.provisional): the reference noise stored at build time, its schema,
and the marking in `list`, `info` and the leaderboard."""

import json

import numpy as np
import pytest

from cgbg_bench import metrics as M
from cgbg_bench.errors import TaskSchemaError, UsageError
from cgbg_bench.provisional import NOISE_TARGET, reference_noise
from cgbg_bench.task import load_task
from tests.conftest import write_toy_task

NOISY = {"observable": "x", "js_halves": 0.03, "target": 0.01}
QUIET = {"observable": "x", "js_halves": 0.004, "target": 0.01}


def test_reference_noise_splits_every_run_in_time_along_the_headline():
    rng = np.random.default_rng(7)
    blocks = rng.random((10, 2, 25))  # run A: 6 blocks, run B: 4; observable 0 the headline
    got = reference_noise("ala3", "ala2", blocks, [6, 4])
    first = np.r_[0:3, 6:8]
    second = np.r_[3:6, 8:10]
    want = M.js_divergence(M.normalize(blocks[first, 0].sum(0)), M.normalize(blocks[second, 0].sum(0)))
    assert got["js_halves"] == pytest.approx(float(want), rel=1e-5)
    assert got["observable"] == "ala2" and got["target"] == NOISE_TARGET["ala3"] == 0.01
    assert reference_noise("ala6", "ala4", blocks, [6, 4])["target"] == 0.02
    # every run shorter than two blocks: no halves, not measured (provisional)
    assert reference_noise("ala2", "ala1", blocks[:2], [1, 1])["js_halves"] is None
    with pytest.raises(UsageError, match="mueller-brown"):
        reference_noise("mueller-brown", "x", blocks, [6, 4])
    with pytest.raises(UsageError, match="sum to 9"):
        reference_noise("ala3", "ala2", blocks, [5, 4])


@pytest.mark.parametrize("noise, word", [
    ({"observable": "y", "js_halves": 0.1, "target": 0.01}, "headline"),
    ({"observable": "x", "js_halves": -0.1, "target": 0.01}, ">= 0"),
    ({"observable": "x", "js_halves": ".nan", "target": 0.01}, "js_halves: expected"),
    ({"observable": "x", "js_halves": 0.1, "target": 0}, "target: must be finite and > 0"),
    ({"observable": "x", "js_halves": 0.1}, "target"),
    ({"observable": "x", "js_halves": 0.1, "target": 0.01, "targt": 1}, "targt"),
])
def test_bad_reference_noise_is_a_schema_error(tmp_path, noise, word):
    write_toy_task(tmp_path, extra={"reference_noise": noise})
    with pytest.raises(TaskSchemaError, match=word):
        load_task("toy", root=tmp_path)


@pytest.mark.parametrize("noise, provisional", [(NOISY, True), (QUIET, False), (None, False),
                                                ({**NOISY, "js_halves": None}, True)])
def test_provisional_when_the_noise_is_above_its_target(tmp_path, noise, provisional):
    write_toy_task(tmp_path, extra={} if noise is None else {"reference_noise": noise})
    assert load_task("toy", root=tmp_path).provisional is provisional


def test_list_and_info_mark_a_provisional_task(tmp_path, monkeypatch, capsys):
    from cgbg_bench.cli import main

    write_toy_task(tmp_path, extra={"reference_noise": NOISY})
    write_toy_task(tmp_path, name="final", extra={"reference_noise": QUIET})
    monkeypatch.setenv("CGBG_BENCH_TASKS", str(tmp_path))
    assert main(["list"]) == 0
    rows = {line.split("|")[1].strip(): line for line in capsys.readouterr().out.splitlines() if line.startswith("|")}
    assert "provisional" in rows["toy"] and "provisional" not in rows["final"]
    assert main(["info", "toy"]) == 0
    out = capsys.readouterr().out
    assert "toy (version 3, provisional)" in out
    assert "provisional: reference JS(1st half, 2nd half) on x 0.03 > target 0.01" in out
    assert main(["info", "final"]) == 0
    out = capsys.readouterr().out
    assert "provisional" not in out and "reference JS(1st half, 2nd half) on x 0.004 <= target 0.01" in out
    assert main(["info", "toy", "--json"]) == 0
    info = json.loads(capsys.readouterr().out)
    assert info["provisional"] is True and info["reference_noise"] == {**NOISY, "provisional": True}


def test_leaderboard_title_marks_a_provisional_task(toy_recorded, tmp_path):
    from cgbg_bench.leaderboard.render import render_markdown
    from cgbg_bench.leaderboard.schema import parse_entry

    entry = parse_entry(toy_recorded[1])
    write_toy_task(tmp_path, extra={"reference_noise": NOISY})
    assert "## toy (provisional, reference noise above target; task version 3;" in render_markdown(
        [entry], tasks_root=tmp_path)
    final = tmp_path / "final"
    write_toy_task(final, extra={"reference_noise": QUIET})
    assert "## toy (task version 3;" in render_markdown([entry], tasks_root=final)
