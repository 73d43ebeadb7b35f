"""Mixtures of sources: each weighted source gets its share of the training rows.

Rows are sampled without replacement, so the mixture is the largest one whose shares
match the weights; sources without a weight keep all their rows. Validation and test
splits are never reweighted: they measure each source as it is.
"""

from __future__ import annotations

import random

from medft.runtime.errors import DataError


def apply_weights(per_source: dict[str, dict[str, list[dict]]], weights: dict[str, float | None], *, seed: int):
    """Subsample the train split of weighted sources in place; return what was done."""
    weighted = {name: float(w) for name, w in weights.items() if w is not None}
    if not weighted:
        return {}
    for name, weight in weighted.items():
        if weight <= 0:
            raise DataError(f"data.sources.{name}.weight={weight:g} must be > 0 (leave it unset to use every row)")
    total = sum(weighted.values())
    available = {name: len(per_source[name].get("train", [])) for name in weighted}
    # The largest mixture N with N * share_i <= available_i for every weighted source.
    size = min(available[n] / (weighted[n] / total) for n in weighted)
    plan = {}
    for name, weight in weighted.items():
        take = min(available[name], int(round(size * weight / total)))
        rows = per_source[name].get("train", [])
        if take < len(rows):
            chosen = sorted(random.Random(f"{seed}|{name}|mixture").sample(range(len(rows)), take))
            per_source[name]["train"] = [rows[i] for i in chosen]
        plan[name] = {"weight": weight, "share": round(weight / total, 4), "available": available[name], "used": take}
    return plan
