"""Overlays show ignored (unannotated) pixels: shaded and hatched, not drawn as background."""

import numpy as np
from PIL import Image

from noisyseg.report.figures import plot_overlays


def test_ignored_pixels_are_drawn(tmp_path):
    img = np.zeros((1, 40, 40), np.float32)
    lab = np.zeros((40, 40), np.int64)
    lab[10:20, 10:20] = 1
    ignored = lab.copy()
    ignored[:, 30:] = -1
    a = plot_overlays([("c", img, {"label": lab})], tmp_path / "a.png", 2)
    b = plot_overlays([("c", img, {"label": ignored})], tmp_path / "b.png", 2)
    pa, pb = (np.asarray(Image.open(p).convert("L"), dtype=float) for p in (a, b))
    assert pa.shape == pb.shape
    right = slice(pa.shape[1] * 3 // 4 + 5, pa.shape[1] - 15)  # the ignored strip of the overlay column
    mid = slice(pa.shape[0] // 3, pa.shape[0] * 2 // 3)
    assert pb[mid, right].mean() > pa[mid, right].mean() + 20  # lighter: shaded where nobody annotated
