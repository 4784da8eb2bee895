"""The admin results as pictures: what each chart draws is the data it was given."""

from __future__ import annotations

import numpy as np

from raters import charts


def test_reliability_diagram_puts_confidence_on_x_and_the_share_on_y():
    gate = {"n": 30, "ece": 0.123, "reliability": {"lower": [0.0, 0.5], "upper": [0.5, 1.0], "count": [10, 20],
                                                    "accuracy": [0.2, 0.9], "mean_confidence": [0.3, 0.8]}}
    fig = charts.reliability(gate)
    ax, axc = fig.axes
    line = next(ln for ln in ax.get_lines() if ln.get_label().startswith("share"))
    np.testing.assert_allclose(line.get_xdata(), [0.3, 0.8])
    np.testing.assert_allclose(line.get_ydata(), [0.2, 0.9])
    assert [p.get_height() for p in axc.patches] == [10, 20]
    assert "ECE 0.123 over 30 items" in ax.get_title()
    assert charts.png(fig)[:8] == b"\x89PNG\r\n\x1a\n"


def test_mismatches_are_the_red_points():
    points = [{"sample_key": "a", "iou": 0.95, "overall": 1.5}, {"sample_key": "b", "iou": 0.9, "overall": 4.5},
              {"sample_key": "c", "iou": 0.2, "overall": 4.8}]
    mismatches = {"metric_high_rating_low": [{"sample_key": "a"}], "metric_low_rating_high": [{"sample_key": "c"}], "rule": "r"}
    fig = charts.human_vs_metric(points, mismatches)
    ok, off = fig.axes[0].collections
    np.testing.assert_allclose(ok.get_offsets(), [[0.9, 4.5]])
    np.testing.assert_allclose(off.get_offsets(), [[0.95, 1.5], [0.2, 4.8]])
    assert sorted(t.get_text() for t in fig.axes[0].texts) == ["a", "c"]


def test_bradley_terry_chart_shows_each_score_with_its_interval():
    scores = {"old": {"value": 0.3, "lo": 0.2, "hi": 0.45}, "new": {"value": 0.7, "lo": 0.55, "hi": 0.8}}
    fig = charts.bradley_terry(scores)
    ax = fig.axes[0]
    np.testing.assert_allclose(ax.get_lines()[0].get_xdata(), [0.3, 0.7])
    segments = [seg for c in ax.collections for seg in c.get_segments()]
    assert sorted((round(s[0][0], 6), round(s[1][0], 6)) for s in segments) == [(0.2, 0.45), (0.55, 0.8)]
    assert [t.get_text() for t in ax.get_yticklabels()] == ["old", "new"]
