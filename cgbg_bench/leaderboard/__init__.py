"""The leaderboard: entries as YAML files, validated, rendered, reproduced.

Layout: ``leaderboard/submissions/<name>.yaml`` (one entry each, see
:mod:`cgbg_bench.leaderboard.schema`), ``leaderboard/LEADERBOARD.md`` and
``leaderboard/index.html`` (rendered, never edited), ``leaderboard/plots/``.
"""

from __future__ import annotations

from cgbg_bench.leaderboard.baselines import add_baselines, baseline_entries
from cgbg_bench.leaderboard.paths import leaderboard_dir, repo_root, submissions_dir
from cgbg_bench.leaderboard.rank import tied_ranks
from cgbg_bench.leaderboard.record import check_record, record_result
from cgbg_bench.leaderboard.render import render, render_html, render_markdown, task_tables
from cgbg_bench.leaderboard.reproduce import Reproduction, reproduce_entry
from cgbg_bench.leaderboard.schema import Entry, load_entries, load_entry, parse_entry, write_entry
from cgbg_bench.leaderboard.validate import check_entry, validate_all

__all__ = [
    "Entry", "parse_entry", "load_entry", "load_entries", "write_entry",
    "check_entry", "validate_all",
    "tied_ranks", "task_tables", "render_markdown", "render_html", "render",
    "Reproduction", "reproduce_entry",
    "check_record", "record_result",
    "baseline_entries", "add_baselines",
    "repo_root", "leaderboard_dir", "submissions_dir",
]
