"""LEADERBOARD.md and a static HTML page from the entries; ranks are computed here.

Both outputs are built from the same table cells, so they always agree. Output is a
pure function of the entries, the current tasks (versions, descriptions) and, for the
HTML page, which plot files exist: CI re-renders and compares with the committed files.

Every entry-supplied string is escaped for its output: :func:`md_escape` for LEADERBOARD.md
(HTML tags, entities, Markdown emphasis, code, links and table cells cannot break out),
``html.escape`` for the page; link targets are http(s) URLs (checked when the entry is read),
percent-encoded for Markdown.
"""

from __future__ import annotations

import html
import re
import urllib.parse
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

from cgbg_bench.errors import CgbgError, EntryPathError
from cgbg_bench.leaderboard.rank import tied_ranks
from cgbg_bench.leaderboard.schema import METRIC_ORDER, Entry, TaskResult
from cgbg_bench.report import METRIC_LABELS, format_value_error

__all__ = ["TaskTable", "task_tables", "plot_relpath", "render_markdown", "render_html", "make_plots",
           "render"]

EXPLANATION = (
    "Values are bootstrap mean(standard deviation), e.g. 0.0048(1) = 0.0048 +- 0.0001; lower JS is better. "
    "Rows are sorted by JS; entries whose JS differ by less than their combined error "
    "sqrt(e1^2 + e2^2) from the best entry of a group share its rank, shown as =r. "
    "An entry marked (from energies) was scored from its energies on the bank (cgbg-bench bank export): "
    "its scoring is reproducible, its model is not. "
    "Results whose score cannot be trusted (flags of cgbg_bench/reliability.py: ESS below 1%, JS at its "
    "floor with a low ESS, implausible energy span or forces, Pareto k-hat above 0.7) are not ranked: they "
    "follow the ranked rows, marked unreliable with their flag codes. "
    "Baselines shipped with the benchmark are marked (baseline); a dash is a metric that does not "
    "apply (e.g. no ESS for MD-histogram baselines). The JS floor is the JS a perfect PMF would score "
    "with this bank and reference: differences below it are sampling noise. A task's resolution is the JS "
    "of a PMF exact along its scored observable on its bank (docs/metrics.md): differences in JS smaller "
    "than about the resolution are not told apart by the task. "
    "Ranks are computed when rendering and never stored."
)
_TASK_COLUMNS = ("rank", "entry")
_SAFE_NAME = re.compile(r"^[a-z0-9][a-z0-9._-]*$")  # task and entry names (see the entry schema)
_TAIL_COLUMNS = ("training data", "samples", "cgbg-bench")


@dataclass(frozen=True)
class TaskTable:
    task: str
    version: int | None  # None: the task no longer exists
    description: str
    metric_names: tuple[str, ...]
    rows: tuple[tuple[str, Entry, TaskResult], ...]  # (rank label, entry, result), ranked order
    stale: tuple[tuple[Entry, TaskResult], ...]  # results for another task version: not ranked
    resolution: str = "-"  # JS(error) of a PMF exact along the headline observable (cgbg_bench.resolution)
    provisional: bool = False  # the reference's own noise is above its target (cgbg_bench.provisional)

    @property
    def floor_text(self) -> str:
        floors = sorted((r.noise_floor.value, r.noise_floor.error) for _, _, r in self.rows)
        if not floors:
            return "-"
        texts = [format_value_error(*f) for f in floors]
        return texts[0] if texts[0] == texts[-1] else f"{texts[0]} to {texts[-1]}"

    def header(self) -> list[str]:
        return [*_TASK_COLUMNS, *(METRIC_LABELS.get(m, m) for m in self.metric_names), *_TAIL_COLUMNS]

    def cells(self) -> list[list[str]]:
        out = []
        for rank, entry, result in self.rows:
            metrics = [format_value_error(result.metrics[m].value, result.metrics[m].error)
                       if m in result.metrics else "-" for m in self.metric_names]
            model = entry.models.get(self.task)
            label = entry.label + (" (from energies)" if model is not None and model.format == "energies" else "")
            out.append([rank, label, *metrics, entry.method.training_data, str(result.n_samples),
                        result.cgbg_bench_version])
        return out


def task_tables(entries: Sequence[Entry], tasks_root: Path | None = None) -> list[TaskTable]:
    """One table per task that has results, ranked by JS (entries in name order break exact ties)."""
    from cgbg_bench.task import load_task

    names = sorted({t for e in entries for t in e.results})
    tables = []
    for task_name in names:
        resolution, provisional = "-", False
        try:
            task = load_task(task_name, root=tasks_root)
            version, description, provisional = task.version, task.description, task.provisional
            if task.resolution is not None:
                resolution = format_value_error(*task.resolution.js)
        except CgbgError:
            version, description = None, "this task no longer exists"
        current, stale = [], []
        for e in sorted(entries, key=lambda e: e.name):
            r = e.results.get(task_name)
            if r is None:
                continue
            (current if r.task_version == version else stale).append((e, r))
        # A result whose score cannot be trusted (cgbg_bench.reliability) is not ranked among the
        # reliable ones: it follows them, marked with its flag codes.
        reliable = [(e, r) for e, r in current if not result_flags(r)]
        flagged = [(e, r) for e, r in current if result_flags(r)]
        order, labels = tied_ranks([r.metrics["js"].value for _, r in reliable],
                                   [r.metrics["js"].error for _, r in reliable])
        rows = tuple((labels[i], *reliable[i]) for i in order)
        rows += tuple((f"unreliable ({', '.join(result_flags(r))})", e, r)
                      for e, r in sorted(flagged, key=lambda er: er[1].metrics["js"].value))
        metric_names = tuple(m for m in METRIC_ORDER if any(m in r.metrics for _, r in current))
        tables.append(TaskTable(task_name, version, description, metric_names, rows, tuple(stale), resolution,
                                provisional))
    return tables


def result_flags(result: TaskResult) -> tuple[str, ...]:
    """Reliability flag codes of a stored result: those recorded with it, and those its stored
    metrics show (ESS below 1%, JS at its floor with a low ESS; cgbg_bench.reliability)."""
    from cgbg_bench.reliability import assess

    metrics = {k: {"value": m.value, "error": m.error} for k, m in result.metrics.items()}
    codes = list(result.reliability) + [f.code for f in assess(metrics)]
    return tuple(dict.fromkeys(codes))


def _overview(entries: Sequence[Entry], tables: Sequence[TaskTable]) -> tuple[list[str], list[list[str]]]:
    """One row per model (entries of the same label and kind, e.g. a baseline shipped per task,
    share a row), one column per task with the model's rank there."""
    rank = {(t.task, e.name): label for t in tables for label, e, _ in t.rows}
    header = ["entry", "kind", "training data", *(f"rank on {t.task} (resolution JS {t.resolution})" for t in tables)]
    groups: dict[tuple[str, str, str], list[Entry]] = {}
    for e in sorted(entries, key=lambda e: (e.is_baseline, e.name)):
        groups.setdefault((e.label, e.kind, e.method.training_data), []).append(e)
    rows = []
    for (label, kind, training), members in groups.items():
        cells = []
        for t in tables:
            found = [rank[(t.task, e.name)] for e in members if (t.task, e.name) in rank]
            cells.append(found[0] if len(found) == 1 else ", ".join(found) if found else "-")
        rows.append([label, kind, training, *cells])
    return header, rows


def _entries_table(entries: Sequence[Entry]) -> tuple[list[str], list[list[str]]]:
    header = ["entry", "file", "authors", "date", "approach", "architecture", "training data", "parameters",
              "license", "links", "description"]
    rows = []
    for e in sorted(entries, key=lambda e: (e.is_baseline, e.name)):
        links = tuple((k, v) for k, v in e.links.items() if v)  # formatted per output, see _links
        rows.append([e.label, f"submissions/{e.name}.yaml", ", ".join(e.authors), e.date, e.method.approach,
                     e.method.architecture or "-", e.method.training_data,
                     "-" if e.method.n_parameters is None else str(e.method.n_parameters), e.license,
                     links or "-", e.description])
    return header, rows


_MD_SPECIAL = re.compile(r"([\\`*_\[\]|~])")  # "(" only links after "]", "!" only before "["
_URL_SAFE = ":/?#@!$&*+,;=%-._~"  # percent-encode the rest: ( ) [ ] < > | " ' ` \ spaces


def md_escape(text: str) -> str:
    """``text`` as literal Markdown (GitHub-flavoured) inline text on one line.

    HTML is neutralised (``& < >`` become entities, so no tag, comment or entity survives),
    and every character that starts emphasis, code, a link or image, or ends a table cell is
    backslash-escaped; line breaks become spaces.
    """
    text = " ".join(str(text).split("\n")).replace("\r", " ")
    text = _MD_SPECIAL.sub(r"\\\1", text)
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def md_url(url: str) -> str:
    """An http(s) URL as a Markdown link target that cannot end the link or the table cell."""
    return urllib.parse.quote(url, safe=_URL_SAFE)


def _md_cell(c) -> str:
    if isinstance(c, tuple):  # links: ((label, url), ...)
        return " ".join(f"[{md_escape(k)}]({md_url(v)})" for k, v in c)
    return md_escape(c)


def _html_cell(c) -> str:
    if isinstance(c, tuple):
        return " ".join(f'<a href="{html.escape(v)}">{html.escape(k)}</a>' for k, v in c)
    return html.escape(str(c))


def _md_table(header: Sequence[str], rows: Sequence[Sequence[str]]) -> list[str]:
    def line(cells):
        return "| " + " | ".join(_md_cell(c) for c in cells) + " |"

    return [line(header), "|" + "|".join("---" for _ in header) + "|", *(line(r) for r in rows)]


def _task_title(t: TaskTable) -> str:
    version = f"task version {t.version}" if t.version is not None else "task removed"
    # provisional: its MD reference is noisier than its target (cgbg_bench.provisional); scores will move
    status = "provisional, reference noise above target; " if t.provisional else ""
    return f"{t.task} ({status}{version}; noise floor JS {t.floor_text}; resolution JS {t.resolution})"


def render_markdown(entries: Sequence[Entry], tasks_root: Path | None = None) -> str:
    tables = task_tables(entries, tasks_root)
    out = ["# cgbg-bench leaderboard", "",
           "<!-- generated by `cgbg-bench leaderboard render` from leaderboard/submissions/*.yaml: "
           "edit the entries, not this file -->", "", EXPLANATION, "",
           "The HTML page [index.html](index.html) has the same tables and each entry's free-energy "
           "profiles.", "", "## Overview", ""]
    out += _md_table(*_overview(entries, tables))
    for t in tables:
        out += ["", f"## {md_escape(_task_title(t))}", "", md_escape(t.description), ""]
        out += _md_table(t.header(), t.cells())
        if t.stale:
            out += ["", "Not ranked (results for another task version; re-evaluate): "
                    + ", ".join(f"{md_escape(e.label)} (v{r.task_version})" for e, r in t.stale) + "."]
    out += ["", "## Entries", ""]
    out += _md_table(*_entries_table(entries))
    return "\n".join(out) + "\n"


# ------------------------------------------------------------------ plots and HTML


def plot_relpath(task: str, version: int | None, entry: str, sha256: str) -> str:
    """Where an entry's plot for a task lives, relative to the leaderboard folder.

    The task version and the model's hash are in the name, so a changed model or task
    never shows an old figure.
    """
    for part in (task, entry):
        if not _SAFE_NAME.match(part):
            raise EntryPathError(f"{part!r} cannot name a plot (not a task or entry name)")
    if not re.fullmatch(r"[0-9a-f]{12,64}", sha256):
        raise EntryPathError(f"{sha256!r} is not a sha256 (hex digits)")
    return f"plots/{task}-v{version}/{entry}-{sha256[:12]}.png"


_CSS = """
body { font-family: system-ui, sans-serif; margin: 2em auto; max-width: 1200px; padding: 0 1em; color: #222; }
table { border-collapse: collapse; margin: 0.8em 0; font-size: 0.9em; }
th, td { border: 1px solid #ccc; padding: 0.25em 0.6em; text-align: left; }
th { background: #f2f2f2; }
tr.baseline td { color: #555; font-style: italic; }
figure { display: inline-block; margin: 0.5em; width: 560px; max-width: 100%; vertical-align: top; }
figure img { width: 100%; border: 1px solid #ddd; }
figcaption { font-size: 0.85em; }
"""


def _html_table(header: Sequence[str], rows: Sequence[Sequence[str]], *, table_id: str,
                baseline_rows: Sequence[bool] = ()) -> list[str]:
    out = [f'<table class="leaderboard" id="{html.escape(table_id)}">',
           "<thead><tr>" + "".join(f"<th>{html.escape(h)}</th>" for h in header) + "</tr></thead>", "<tbody>"]
    for i, row in enumerate(rows):
        cls = ' class="baseline"' if i < len(baseline_rows) and baseline_rows[i] else ""
        out.append(f"<tr{cls}>" + "".join(f"<td>{_html_cell(c)}</td>" for c in row) + "</tr>")
    out.append("</tbody></table>")
    return out


def render_html(entries: Sequence[Entry], tasks_root: Path | None = None, lb_dir: Path | None = None) -> str:
    """The page; a plot is shown where ``lb_dir / plot_relpath(...)`` exists."""
    tables = task_tables(entries, tasks_root)
    esc = html.escape
    out = ["<!DOCTYPE html>", '<html lang="en">', "<head>", '<meta charset="utf-8">',
           "<title>cgbg-bench leaderboard</title>", f"<style>{_CSS}</style>", "</head>", "<body>",
           "<!-- generated by `cgbg-bench leaderboard render`: edit the entries, not this file -->",
           "<h1>cgbg-bench leaderboard</h1>", f"<p>{esc(EXPLANATION)}</p>", "<h2>Overview</h2>"]
    header, rows = _overview(entries, tables)
    out += _html_table(header, rows, table_id="overview")
    for t in tables:
        out += [f'<h2 id="task-{esc(t.task)}">{esc(_task_title(t))}</h2>', f"<p>{esc(t.description)}</p>"]
        out += _html_table(t.header(), t.cells(), table_id=f"table-{t.task}",
                           baseline_rows=[e.is_baseline for _, e, _ in t.rows])
        if t.stale:
            out.append("<p>Not ranked (results for another task version; re-evaluate): "
                       + esc(", ".join(f"{e.label} (v{r.task_version})" for e, r in t.stale)) + ".</p>")
        figures = []
        for rank, e, _ in t.rows:
            model = e.models.get(t.task)
            rel = plot_relpath(t.task, t.version, e.name, model.sha256) if model else None
            if rel and lb_dir is not None and (Path(lb_dir) / rel).is_file():
                figures.append(f'<figure><a href="{esc(rel)}" target="_blank" rel="noopener" title="full size">'
                               f'<img src="{esc(rel)}" alt="free-energy profiles of {esc(e.label)} on '
                               f'{esc(t.task)}"></a><figcaption>{esc(rank)}. {esc(e.label)} '
                               f'(click to enlarge)</figcaption></figure>')
            else:
                why = ("MD-histogram baseline" if model and model.format == "md-histogram" else
                       "scored from energies" if model and model.format == "energies" else "no plot rendered")
                figures.append(f"<figure><figcaption>{esc(rank)}. {esc(e.label)}: {why}</figcaption></figure>")
        out += ['<div class="plots">', *figures, "</div>"]
    out.append("<h2>Entries</h2>")
    header, rows = _entries_table(entries)
    out += _html_table(header, rows, table_id="entries")
    out += ["</body>", "</html>"]
    return "\n".join(out) + "\n"


def make_plots(entries: Sequence[Entry], lb_dir: Path, *, root: Path, tasks_root: Path | None = None,
               replot: bool = False, device: str = "cpu", log=print) -> list[Path]:
    """Draw the missing free-energy plots of in-repo PMF models (whole bank); delete orphaned ones."""

    from cgbg_bench import metrics as M
    from cgbg_bench.evaluate import compute_energies, observable_index
    from cgbg_bench.pmf import load_pmf
    from cgbg_bench.plot import plot_profiles
    from cgbg_bench.leaderboard.paths import model_file
    from cgbg_bench.task import load_task

    lb_dir = Path(lb_dir)
    wanted, made = set(), []
    for t in task_tables(entries, tasks_root):
        if t.version is None:
            continue
        todo = []
        for _, e, _ in t.rows:
            model = e.models.get(t.task)
            if model is None or model.path is None or model.format != "pmf":
                continue
            rel = plot_relpath(t.task, t.version, e.name, model.sha256)
            wanted.add(rel)
            if replot or not (lb_dir / rel).is_file():
                todo.append((e, model, lb_dir / rel))
        if not todo:
            continue
        task = load_task(t.task, root=tasks_root)
        proposal, reference = task.load_proposal(), task.load_reference()
        index = observable_index(task, proposal.positions)
        for e, model, out in todo:
            module = load_pmf(model_file(root, model.path, f"{e.name}: models.{t.task}"), device)
            energies = compute_energies(module, proposal.positions, device=device)
            log_w = M.log_weights(energies, proposal.log_q, task.kT)
            out.parent.mkdir(parents=True, exist_ok=True)
            made.append(plot_profiles(task, reference, index, log_w, out, label=e.label))
            log(f"wrote {out}")
    plots = lb_dir / "plots"
    if plots.is_dir():
        for p in sorted(plots.glob("*/*.png")):
            if p.relative_to(lb_dir).as_posix() not in wanted:
                p.unlink()
                log(f"removed orphaned plot {p}")
        for d in plots.iterdir():
            if d.is_dir() and not any(d.iterdir()):
                d.rmdir()
    return made


def render(lb_dir: Path, entries: Sequence[Entry], *, root: Path, tasks_root: Path | None = None,
           plots: bool = True, replot: bool = False, log=print) -> list[Path]:
    """Write LEADERBOARD.md and index.html atomically (after drawing missing plots if ``plots``)."""
    from cgbg_bench._io import atomic_write_text
    from cgbg_bench.leaderboard.paths import HTML, MARKDOWN

    lb_dir = Path(lb_dir)
    if plots:
        make_plots(entries, lb_dir, root=root, tasks_root=tasks_root, replot=replot, log=log)
    md, page = lb_dir / MARKDOWN, lb_dir / HTML
    atomic_write_text(md, render_markdown(entries, tasks_root))
    atomic_write_text(page, render_html(entries, tasks_root, lb_dir))
    return [md, page]
