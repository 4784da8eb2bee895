"""The compositing equation and layer stacking on hand-made arrays."""

import numpy as np
import pytest

from synth.compositing import Layer, alpha_union, composite, composite_layers, cover_crop, occluder_layer, subject_alpha, warp_layer


def test_composite_equation_by_hand():
    fg = np.array([[[1.0, 0.0, 0.0], [0.2, 0.4, 0.6]]], np.float32)
    bg = np.array([[[0.0, 0.0, 1.0], [1.0, 1.0, 1.0]]], np.float32)
    alpha = np.array([[0.25, 1.0]], np.float32)
    out = composite(fg, alpha, bg)
    # I = aF + (1-a)B: 0.25*(1,0,0) + 0.75*(0,0,1); alpha 1 keeps F
    np.testing.assert_allclose(out[0, 0], [0.25, 0.0, 0.75], atol=1e-7)
    np.testing.assert_allclose(out[0, 1], [0.2, 0.4, 0.6], atol=1e-7)


def test_composite_rejects_shape_mismatch():
    with pytest.raises(ValueError, match="shape mismatch"):
        composite(np.zeros((2, 2, 3)), np.zeros((2, 3)), np.zeros((2, 2, 3)))


def test_layers_union_and_occlusion_order():
    bg = np.full((1, 1, 3), 0.0, np.float32)
    f1, a1 = np.full((1, 1, 3), 1.0, np.float32), np.full((1, 1), 0.5, np.float32)
    f2, a2 = np.full((1, 1, 3), 0.5, np.float32), np.full((1, 1), 0.5, np.float32)
    image, alpha = composite_layers(bg, [Layer(f1 * a1[..., None], a1), Layer(f2 * a2[..., None], a2)])
    # back layer: 0.5*1 + 0.5*0 = 0.5; front: 0.5*0.5 + 0.5*0.5 = 0.5
    np.testing.assert_allclose(image[0, 0], [0.5] * 3, atol=1e-7)
    # union of alphas: 0.5 + (1-0.5)*0.5
    assert alpha[0, 0] == pytest.approx(0.75)
    assert alpha_union(np.float32(0.5), np.float32(0.5)) == pytest.approx(0.75)
    # an occluder of coverage 0.5 on top halves the visible subject
    occ = Layer(np.zeros((1, 1, 3), np.float32), np.full((1, 1), 0.5, np.float32), is_subject=False)
    _, alpha2 = composite_layers(bg, [Layer(f1 * 1.0, np.ones((1, 1), np.float32)), occ])
    assert alpha2[0, 0] == pytest.approx(0.5)


def test_warp_identity_places_crop_exactly():
    rng = np.random.default_rng(0)
    f = rng.uniform(size=(20, 10, 3)).astype(np.float32)
    a = np.ones((20, 10), np.float32)
    # longer side 20 -> scale * min(40, 40) = 20 px: s = 1; centre at (0.5, 0.5) puts the crop at [10:30, 15:25]
    boxed = warp_layer(f, a, (40, 40), 0.5, 0.0, (0.5, 0.5))
    # the layer holds the crop's box grown by the pixel bilinear interpolation can still reach
    assert boxed.box == (slice(9, 31), slice(14, 26))
    layer = boxed.full((40, 40))
    np.testing.assert_allclose(layer.alpha[10:30, 15:25], 1.0, atol=1e-6)
    assert layer.alpha.sum() == pytest.approx(200.0, abs=1e-3)
    np.testing.assert_allclose(layer.colours()[10:30, 15:25], f, atol=1e-5)
    whole = warp_layer(f, a, (40, 40), 0.5, 0.0, (0.5, 0.5), boxed=False)
    np.testing.assert_array_equal(whole.alpha, layer.alpha)
    np.testing.assert_array_equal(whole.premult, layer.premult)


def test_anchor_pins_crop_edge_to_output_border():
    f = np.ones((20, 10, 3), np.float32)
    a = np.ones((20, 10), np.float32)
    layer = warp_layer(f, a, (40, 40), 0.5, 0.0, (0.5, 0.3), anchor=["bottom", "left"]).full((40, 40))
    rows = np.flatnonzero(layer.alpha.max(axis=1) > 0.5)
    cols = np.flatnonzero(layer.alpha.max(axis=0) > 0.5)
    assert rows[-1] == 39 and rows[0] == 20
    assert cols[0] == 0 and cols[-1] == 9


def test_cover_crop_fills_output():
    img = np.arange(4 * 8 * 3, dtype=np.float32).reshape(4, 8, 3)
    out = cover_crop(img, (8, 8), (0.0, 0.0))
    assert out.shape == (8, 8, 3)


def test_occluder_covers_requested_fraction():
    subject = np.zeros((100, 100), np.float32)
    subject[20:80, 20:80] = 1.0
    plate = np.zeros((100, 100, 3), np.float32)
    occ = occluder_layer(plate, subject, coverage=0.25, angle_deg=0.0, side=0.0, feather_px=0.5)
    covered = (occ.alpha * subject).sum() / subject.sum()
    assert covered == pytest.approx(0.25, abs=0.03)


def test_boxed_layers_composite_exactly_as_whole_frame_layers():
    rng = np.random.default_rng(4)
    f = rng.uniform(size=(30, 22, 3)).astype(np.float32)
    a = np.clip(rng.uniform(-0.3, 1.3, size=(30, 22)), 0, 1).astype(np.float32)
    bg = rng.uniform(size=(64, 80, 3)).astype(np.float32)
    kept = bg.copy()
    layers = [warp_layer(f, a, (64, 80), 0.6, 17.0, (0.3, 0.4)), warp_layer(f[::-1], a[::-1], (64, 80), 0.5, -8.0, (0.9, 0.9))]
    occ = Layer(np.full((10, 12, 3), 0.2, np.float32), np.full((10, 12), 0.7, np.float32), False, (20, 25))
    assert layers[1].box[1].stop == 80  # cut by the frame's right edge
    boxed = composite_layers(bg, layers + [occ])
    whole = composite_layers(bg, [layer.full((64, 80)) for layer in layers + [occ]])
    np.testing.assert_array_equal(boxed[0], whole[0])
    np.testing.assert_array_equal(boxed[1], whole[1])
    np.testing.assert_array_equal(subject_alpha(layers + [occ], (64, 80)), whole[1])
    # a region of the frame composites as the frame does there
    region, ralpha = composite_layers(bg[10:50, 5:60], layers + [occ], (10, 5))
    np.testing.assert_array_equal(region, whole[0][10:50, 5:60])
    np.testing.assert_array_equal(ralpha, whole[1][10:50, 5:60])
    # by default the background is kept; in place, the same image is written into it
    np.testing.assert_array_equal(bg, kept)
    own = bg.copy()
    image, alpha = composite_layers(own, layers + [occ], in_place=True)
    assert image is own and not np.array_equal(own, kept)
    np.testing.assert_array_equal(image, whole[0])
    np.testing.assert_array_equal(alpha, whole[1])


def test_boxed_warp_is_the_whole_frame_warp_within_opencvs_coordinate_rounding():
    # both round source coordinates to 1/32 pixel, from different origins: values agree to the
    # change over 1/32 pixel, and the box holds all of the whole-frame warp's support
    rng = np.random.default_rng(5)
    for angle, scale, centre in ((0.0, 0.5, (0.5, 0.5)), (23.0, 0.8, (0.4, 0.6)), (-71.0, 0.35, (0.95, 0.1)), (5.0, 1.3, (0.5, 0.5))):
        f = rng.uniform(size=(41, 29, 3)).astype(np.float32)
        a = (rng.uniform(size=(41, 29)) > 0.3).astype(np.float32)
        boxed = warp_layer(f, a, (90, 70), scale, angle, centre)
        whole = warp_layer(f, a, (90, 70), scale, angle, centre, boxed=False)
        assert whole.alpha.sum() == pytest.approx(boxed.alpha.sum(), rel=1e-3)
        outside = np.ones((90, 70), bool)
        outside[boxed.box] = False
        assert not whole.alpha[outside].any()
        assert np.abs(boxed.full((90, 70)).alpha - whole.alpha).max() <= 1 / 16
        assert np.abs(boxed.full((90, 70)).premult - whole.premult).max() <= 1 / 16
