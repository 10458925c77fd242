"""Human-readable output: values with bootstrap errors and the score table."""

from __future__ import annotations

import math
from typing import Mapping, Sequence

from tabulate import tabulate

__all__ = ["format_value_error", "score_table", "per_observable_table", "resolution_line", "METRIC_LABELS"]

METRIC_LABELS = {
    "js": "JS",
    "pmf_error": "PMF err (kT^2)",
    "fe_rmse": "FE RMSE (kT)",
    "ess": "ESS",
    "js_floor": "JS floor",
    "js_clip99": "JS (99% clip)",
}


def format_value_error(value: float, error: float) -> str:
    """Concise notation: 0.00483 +- 0.00012 -> '0.0048(1)'; 12.3 +- 1.5 -> '12(2)'."""
    if value is None or not math.isfinite(value):
        return "n/a"
    if error is None or not math.isfinite(error) or error <= 0:
        return f"{value:.4g}"
    exponent = math.floor(math.log10(error))
    digit = round(error / 10**exponent)
    if digit == 10:  # 0.096 rounds to 0.1
        exponent += 1
        digit = 1
    decimals = max(0, -exponent)
    shown = round(value, decimals) if decimals else round(value / 10**exponent) * 10**exponent
    if decimals:
        return f"{shown:.{decimals}f}({digit})"
    return f"{shown:.0f}({digit * 10**exponent:.0f})"


def score_table(rows: Sequence[tuple[str, Mapping[str, Mapping[str, float]]]], metric_names: Sequence[str]) -> str:
    """rows: (label, {metric: {"value", "error"}}); missing metrics print as '-'."""
    header = ["entry"] + [METRIC_LABELS.get(m, m) for m in metric_names]
    body = []
    for label, metrics in rows:
        line = [label]
        for m in metric_names:
            v = metrics.get(m)
            line.append(format_value_error(v["value"], v["error"]) if v else "-")
        body.append(line)
    return tabulate(body, headers=header, tablefmt="github")


def per_observable_table(rows: Sequence[tuple[str, Mapping[str, Mapping[str, Mapping[str, float]]]]]) -> str:
    """Per-residue JS beside its floor, one line per entry, one column per observable, the first (the
    headline, ranked) marked; '' when no entry has more than one observable (the score table says it all).

    rows: (label, per_observable) with per_observable {observable: {metric: {"value", "error"}}}, as in
    the result JSON (:meth:`cgbg_bench.bootstrap.Scores.as_dict`).
    """
    names: list[str] = []
    for _, per in rows:
        names += [o for o in per if o not in names]
    if len(names) < 2:
        return ""

    def cell(metrics) -> str:
        if not metrics or "js" not in metrics:
            return "-"
        js, floor = metrics["js"], metrics.get("js_floor")
        text = format_value_error(js["value"], js["error"])
        return text + (f" / {format_value_error(floor['value'], floor['error'])}" if floor else "")

    header = ["per residue: JS / JS floor"] + [f"{o} (headline)" if i == 0 else o for i, o in enumerate(names)]
    body = [[label] + [cell(per.get(o)) for o in names] for label, per in rows]
    return tabulate(body, headers=header, tablefmt="github", disable_numparse=True) + (
        "\nthe headline (ranked) is the scored residue; the others are reported, not ranked")


def resolution_line(task) -> str:
    """The task's resolution in one line (:mod:`cgbg_bench.resolution`); '' when the task has none."""
    r = task.resolution
    if r is None:
        return ""
    return (f"resolution of {task.name} v{task.version}: JS {format_value_error(*r.js)} for a PMF exact along "
            f"{r.observable} (made from {r.base}), floor {format_value_error(*r.js_floor)}: differences in JS "
            f"smaller than about {r.js[0]:.2g} are not resolved by this task")
