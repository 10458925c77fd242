"""Ranking with ties within error bars (computed at render time, never stored)."""

from __future__ import annotations

import math
from typing import Sequence

from cgbg_bench.errors import UsageError

__all__ = ["tied_ranks"]


def tied_ranks(values: Sequence[float], errors: Sequence[float]) -> tuple[list[int], list[str]]:
    """Order (lowest value first) and rank labels, in input order.

    Walking down the sorted list, an entry joins the current group when its value differs
    from the group's leader (its best entry) by less than the combined error
    sqrt(e_leader^2 + e_i^2); otherwise it starts a new group. Ranks are competition
    ranks (1, =2, =2, 4): a group of several shows its rank as "=r". Comparing with the
    leader, not the previous entry, keeps a chain of small steps from tying everything.
    Non-finite values rank last with label "-". Ties in value keep input order.
    """
    n = len(values)
    if len(errors) != n:
        raise UsageError(f"tied_ranks: {n} values but {len(errors)} errors")
    finite = [math.isfinite(v) for v in values]
    order = sorted(range(n), key=lambda i: (not finite[i], values[i] if finite[i] else 0.0))
    groups: list[tuple[int, int, list[int]]] = []  # (rank, leader, members)
    for pos, i in enumerate(order):
        if not finite[i]:
            continue
        if groups:
            leader = groups[-1][1]
            if abs(values[i] - values[leader]) < math.hypot(errors[i], errors[leader]):
                groups[-1][2].append(i)
                continue
        groups.append((pos + 1, i, [i]))
    labels = ["-"] * n
    for rank, _, members in groups:
        for i in members:
            labels[i] = f"={rank}" if len(members) > 1 else str(rank)
    return order, labels
