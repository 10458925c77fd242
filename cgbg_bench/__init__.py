"""cgbg-bench: score coarse-grained PMFs by importance reweighting a fixed proposal bank."""

from __future__ import annotations

__version__ = "0.1.0"
__all__ = ["__version__"]
