"""Exactness of compositing and of the layer solver, on hand-made cases with known answers."""

import numpy as np
import pytest

from add_pipeline.core.composite import alpha_over, min_alpha, recomposition_error, solve_layer
from add_pipeline.core.peel import PeelLevel, assemble_layers, clean_alpha, deshadow, extend_under


def test_alpha_over_known_values():
    bg = np.zeros((1, 1, 4), np.uint8)
    bg[..., :3] = (200, 100, 0)
    bg[..., 3] = 255
    top = np.array([[[0, 0, 255, 51]]], np.uint8)  # alpha 0.2
    out = alpha_over([bg, top]) * 255
    np.testing.assert_allclose(out[0, 0], [160, 80, 51], atol=1e-9)


def test_min_alpha_is_smallest_feasible():
    below = np.full((1, 1, 3), 0.5)
    target = np.array([[[0.75, 0.5, 0.25]]])
    a = min_alpha(target, below)[0, 0]
    assert a == pytest.approx(0.5)  # red needs F=1 at a=0.5, blue needs F=0 at a=0.5


def test_solve_layer_reproduces_target_and_keeps_estimate_where_feasible():
    rng = np.random.default_rng(1)
    below = rng.random((32, 32, 3))
    color = rng.random((32, 32, 3))
    alpha = rng.random((32, 32))
    target = alpha[..., None] * color + (1 - alpha[..., None]) * below
    rgba = solve_layer(target, below, alpha, color, np.ones((32, 32), bool))
    a = rgba[..., 3] / 255.0
    assert np.abs(a - alpha).max() <= 1 / 255 + 1e-9  # the estimate was feasible: kept (rounded up)
    comp = rgba[..., :3] / 255.0 * a[..., None] + below * (1 - a[..., None])
    assert np.abs(comp - target).max() * 255 <= 0.5 + 1e-6


def test_solve_layer_raises_alpha_where_estimate_cannot_explain_target():
    below = np.zeros((4, 4, 3))
    target = np.full((4, 4, 3), 0.8)
    rgba = solve_layer(target, below, np.zeros((4, 4)), None, np.ones((4, 4), bool))
    comp = rgba[..., :3] / 255.0 * (rgba[..., 3:] / 255.0)
    assert np.abs(comp - target).max() * 255 <= 0.5 + 1e-6
    outside = solve_layer(target, below, np.ones((4, 4)), None, np.zeros((4, 4), bool))
    assert (outside[..., 3] == 0).all()  # nothing outside the domain


def test_peel_assembly_is_exact_for_arbitrary_estimates():
    """Whatever the estimates (random here), the assembled stack recomposes to the photo."""
    rng = np.random.default_rng(0)
    h, w = 64, 80
    img = rng.integers(0, 256, (h, w, 3), dtype=np.uint8)
    yy, xx = np.mgrid[:h, :w]
    cur = img / 255.0
    levels = []
    for cy, cx, r, shadow in [(30, 50, 15, True), (25, 30, 12, False)]:  # front-most first
        alpha = clean_alpha(np.clip(1.5 - np.hypot(yy - cy, xx - cx) / r, 0, 1))
        s = np.clip(0.6 - np.hypot(yy - cy - r, xx - cx) / (2 * r), 0, 1).astype(np.float32) if shadow else \
            np.zeros((h, w), np.float32)
        s = extend_under(s * (alpha == 0), alpha > 0)
        without = cur.copy()
        without[alpha > 0] = rng.random(((alpha > 0).sum(), 3))
        levels.insert(0, PeelLevel(f"o{len(levels)}", alpha, rng.random((h, w, 3)).astype(np.float32), s, cur,
                                   without))
        cur = deshadow(without, s)
    layers = assemble_layers(cur, levels)
    assert [lay.kind for lay in layers] == ["background", "object", "shadow", "object"]
    mean, peak = recomposition_error(img, [lay.rgba for lay in layers])
    assert mean <= 0.25 and peak <= 1.0


def test_deshadow_inverts_black_shadow():
    lit = np.full((2, 2, 3), 0.6)
    matte = np.full((2, 2), 0.5)
    np.testing.assert_allclose(deshadow(lit * 0.5, matte), lit)
