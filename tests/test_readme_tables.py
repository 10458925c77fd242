"""The README's results tables are generated from the shipped baseline scores, never edited by hand."""

from pathlib import Path

import pytest

from cgbg_bench.errors import CgbgError
from cgbg_bench.leaderboard.readme import (
    END, SPEEDUP_END, SPEEDUP_FILE, SPEEDUP_START, START, fill_readme, results_markdown, speedup_markdown,
    update_readme,
)

ROOT = Path(__file__).resolve().parents[1]
RERENDER = "run `cgbg-bench leaderboard render` (it refills the README's tables) and commit README.md"


def test_readme_tables_equal_the_shipped_scores():
    text = (ROOT / "README.md").read_text()
    assert text.count(START) == 1 and text.count(END) == 1, "README.md lost its results markers"
    assert fill_readme(text, results_markdown(ROOT / "tasks")) == text, RERENDER


def test_readme_speedup_equals_the_measurement():
    text = (ROOT / "README.md").read_text()
    assert text.count(SPEEDUP_START) == 1 and text.count(SPEEDUP_END) == 1, "README.md lost its speedup markers"
    body = speedup_markdown(ROOT / SPEEDUP_FILE)
    assert fill_readme(text, body, SPEEDUP_START, SPEEDUP_END) == text, RERENDER
    assert "x**" in body and "python -m cgbg_bench.speedup" in body


def test_every_task_with_scores_has_a_table():
    tables = results_markdown(ROOT / "tasks")
    for task_dir in sorted((ROOT / "tasks").iterdir()):
        if (task_dir / "baseline_scores.json").is_file():
            assert f"`{task_dir.name}` (v" in tables


def test_fill_replaces_only_between_the_markers(tmp_path):
    readme = tmp_path / "README.md"
    readme.write_text(f"# title\n\nintro\n{START}\nold table\n{END}\n\nafter\n")
    assert fill_readme(readme.read_text(), "| a |\n") == f"# title\n\nintro\n{START}\n\n| a |\n\n{END}\n\nafter\n"
    with pytest.raises(CgbgError):
        fill_readme("no markers here\n", "| a |\n")
    with pytest.raises(CgbgError):
        fill_readme(f"{END}\n{START}\n", "| a |\n")
    (tmp_path / "plain.md").write_text("no markers\n")
    assert update_readme(tmp_path / "plain.md", ROOT / "tasks") is False  # left alone
    assert update_readme(tmp_path / "missing.md", ROOT / "tasks") is False


def test_a_provisional_task_says_so_in_its_table(tmp_path):
    import shutil

    import yaml

    tasks = tmp_path / "tasks"
    shutil.copytree(ROOT / "tasks" / "ala2-core-beta", tasks / "ala2-core-beta")
    (tmp_path / "baselines").symlink_to(ROOT / "baselines")
    final = results_markdown(tasks)
    assert "provisional" not in final
    meta = tasks / "ala2-core-beta" / "task.yaml"
    raw = yaml.safe_load(meta.read_text())
    raw["reference_noise"] = {"observable": "ala1", "js_halves": 0.034, "target": 0.01}
    meta.write_text(yaml.safe_dump(raw, sort_keys=False))
    header = results_markdown(tasks).splitlines()[0]
    assert header.startswith(f"`ala2-core-beta` (v{raw['version']}, **provisional: reference JS(1st half, "
                             "2nd half) on ala1 0.034 > target 0.01**; 10^6 proposals")
