"""The rule bench/model_runs.py uses to choose the shipped shadow_seed, on hand-made LayerD reports."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "bench"))

from model_runs import cells_won, mean_cost, rank_seeds  # noqa: E402


def report(l1: list[float], iou: list[float]) -> dict:
    """A LayerD report with only what the rule reads: per-level RGB L1, Alpha IoU and pair cost."""
    return {"levels": [{"rgb_l1": a, "alpha_iou": b, "cost": (a + 1 - b) / 2} for a, b in zip(l1, iou, strict=True)]}


PIPELINE = report([0.10, 0.10, 0.10], [0.50, 0.50, 0.50])


def test_cells_won_counts_strict_wins_only() -> None:
    assert cells_won(report([0.09, 0.10, 0.11], [0.51, 0.50, 0.49]), PIPELINE) == 2  # ties win nothing
    assert cells_won(report([0.0] * 3, [1.0] * 3), PIPELINE) == 6
    assert cells_won(PIPELINE, PIPELINE) == 0


def test_mean_cost_averages_levels() -> None:
    assert mean_cost(report([0.1, 0.3], [0.5, 0.7])) == pytest.approx((0.3 + 0.3) / 2)


def test_rank_seeds_most_cells_then_lower_mean_cost() -> None:
    scored = {
        0.0: report([0.05, 0.05, 0.05], [0.45, 0.45, 0.45]),  # wins 3 cells (L1), cost 0.30
        0.4: report([0.09, 0.09, 0.09], [0.55, 0.55, 0.55]),  # wins all 6, cost 0.27
        0.6: report([0.09, 0.09, 0.11], [0.60, 0.60, 0.60]),  # wins 5, lowest cost 0.25...
    }
    chosen, rank = rank_seeds(scored, PIPELINE)
    assert chosen == 0.4  # ...but fewer cells won come first
    assert rank[0.0][0] == 3 and rank[0.4][0] == 6 and rank[0.6][0] == 5
    tie = {0.3: report([0.09] * 3, [0.55] * 3), 0.5: report([0.08] * 3, [0.56] * 3)}
    assert rank_seeds(tie, PIPELINE)[0] == 0.5  # same cells won: the lower mean cost
