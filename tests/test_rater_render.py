"""What the rating page draws: compositing by its formula, the checkerboard, the overlay and the
uncertain-boundary crops."""

from __future__ import annotations

import numpy as np
import pytest

from raters.render import checkerboard, composite, overlay, uncertain_boxes, uncertainty, zoomed_crops


def test_composite_formula_and_sizes():
    rgb = np.full((4, 6, 3), 200, np.uint8)
    alpha = np.zeros((4, 6), np.float32)
    alpha[:, 3:] = 1.0
    alpha[0, 0] = 0.25
    out = composite(rgb, alpha, (0, 0, 100))
    assert out[1, 4].tolist() == [200, 200, 200] and out[1, 1].tolist() == [0, 0, 100]
    assert out[0, 0].tolist() == [50, 50, 125]  # 0.25 * 200 + 0.75 * (0, 0, 100)
    # an alpha of another size is resized to the photo
    assert composite(rgb, np.ones((2, 3), np.float32), (0, 0, 0)).tolist() == rgb.tolist()
    with pytest.raises(ValueError, match="background"):
        composite(rgb, alpha, np.zeros((5, 6, 3), np.uint8))


def test_checkerboard_and_overlay():
    b = checkerboard(4, 6, cell=2)
    assert b[0, 0, 0] == 235 and b[0, 2, 0] == 190 and b[2, 0, 0] == 190 and b[2, 2, 0] == 235
    rgb = np.full((2, 2, 3), 100, np.uint8)
    a = np.array([[1, 0], [0, 0.5]], np.float32)
    o = overlay(rgb, a, opacity=0.5, color=(200, 0, 0))
    assert o[0, 0].tolist() == [150, 50, 50] and o[0, 1].tolist() == [100, 100, 100]
    assert o[1, 1].tolist() == [125, 75, 75]  # weight 0.5 x 0.5
    with pytest.raises(ValueError, match="opacity"):
        overlay(rgb, a, opacity=1.5)


def test_uncertain_boxes_sit_on_the_boundary():
    alpha = np.zeros((200, 200), np.float32)
    alpha[50:150, 50:150] = 1.0
    u = uncertainty(alpha)
    assert u[100, 100] == pytest.approx(0, abs=1e-6) and u[5, 5] == pytest.approx(0, abs=1e-6)
    assert u[100, 49] > 0.6 and u[100, 50] > 0.6 and u[100, 40] < 0.1  # high on either side of the edge only
    boxes = uncertain_boxes(alpha, k=3, size=30)
    assert len(boxes) == 3
    for x, y, w, h in boxes:
        assert (w, h) == (30, 30)
        assert alpha[y:y + h, x:x + w].min() == 0 and alpha[y:y + h, x:x + w].max() == 1  # straddles the edge
    centres = [(x + 15, y + 15) for x, y, _, _ in boxes]
    assert all(max(abs(a[0] - b[0]), abs(a[1] - b[1])) >= 30 for i, a in enumerate(centres) for b in centres[i + 1:])
    assert uncertain_boxes(np.zeros((50, 50), np.float32)) == []
    crops = zoomed_crops(np.zeros((200, 200, 3), np.uint8), alpha, k=2, zoom=3)
    assert [c.shape for c in crops] == [(150, 150, 3)] * 2  # 25 % of the shorter side, zoomed 3x


def test_the_locator_marks_each_crop_where_it_is_in_the_photo():
    from raters.render import LOCATOR_COLOUR, crop_locator

    rgb = np.zeros((200, 400, 3), np.uint8)
    boxes = [(0, 0, 50, 50), (200, 100, 50, 50)]
    thumb = crop_locator(rgb, boxes, width=200)  # scale 0.5
    assert thumb.shape == (100, 200, 3)
    for x, y, w, h in boxes:
        x0, y0, x1, y1 = x // 2, y // 2, (x + w) // 2 - 1, (y + h) // 2 - 1
        for px, py in ((x0, y0 + 12), (x1, y0 + 12), (x0 + 12, y1), (x1, y1)):  # on the rectangle's sides
            assert tuple(thumb[py, px]) == LOCATOR_COLOUR, (px, py)
    assert not thumb[60:75, 20:80].any()  # nothing drawn away from the boxes
