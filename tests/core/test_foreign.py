"""Made-up foreign images: every kind, the same for the same seed, varied within a kind."""

from __future__ import annotations

import numpy as np

from jewelry_pipeline.core.foreign import KINDS, foreign_images


def test_foreign_images_are_seeded_rgb_of_every_kind():
    images = foreign_images(3 * len(KINDS), 48, seed=1)
    assert images.shape == (15, 48, 48, 3) and images.dtype == np.uint8
    assert np.array_equal(images, foreign_images(15, 48, seed=1))
    assert not np.array_equal(images, foreign_images(15, 48, seed=2))
    plain, noise = images[KINDS.index("plain")], images[KINDS.index("noise")]
    assert plain.reshape(-1, 3).std(axis=0).max() == 0  # one colour
    assert noise.reshape(-1, 3).std(axis=0).min() > 5
    text = images[KINDS.index("text")]
    assert len(np.unique(text.reshape(-1, 3), axis=0)) > 1  # ink on a page
    assert len({images[i].tobytes() for i in range(0, 15, len(KINDS))}) == 3  # plain ones differ
