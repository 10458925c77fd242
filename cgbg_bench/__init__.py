"""cgbg-bench: score coarse-grained PMFs by importance reweighting a fixed proposal bank.

Public API (imported lazily, so that ``import cgbg_bench`` stays cheap)::

    from cgbg_bench import load_task, load_pmf, evaluate, check_pmf, export_pmf
"""

from __future__ import annotations

__version__ = "0.1.0"

_EXPORTS = {
    "load_task": "cgbg_bench.task",
    "list_tasks": "cgbg_bench.task",
    "load_pmf": "cgbg_bench.pmf",
    "check_pmf": "cgbg_bench.pmf",
    "export_pmf": "cgbg_bench.pmf",
    "evaluate": "cgbg_bench.evaluate",
}
__all__ = ["__version__", *_EXPORTS]


def __getattr__(name: str):
    if name in _EXPORTS:
        import importlib

        return getattr(importlib.import_module(_EXPORTS[name]), name)
    raise AttributeError(f"module 'cgbg_bench' has no attribute {name!r}")


def __dir__():
    return sorted(__all__)
