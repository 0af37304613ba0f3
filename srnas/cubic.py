"""MATLAB's bicubic kernel in numpy, below every layer: `srnas.data.imresize` resizes images with
it and `srnas.arch.blocks.BicubicUpsample` turns it into fixed convolution weights.

numpy only, so that resizing an image never imports torch.

>>> import numpy as np
>>> matlab_cubic(np.array([0.0, 0.5, 1.0, 1.5, 2.0]))
array([ 1.    ,  0.5625,  0.    , -0.0625,  0.    ])
>>> bicubic_upsample_kernel(2).shape
(4, 5, 5)
"""

from __future__ import annotations

import numpy as np

__all__ = ["bicubic_upsample_kernel", "matlab_cubic"]


def matlab_cubic(x: "np.ndarray | float") -> np.ndarray:
    """MATLAB's bicubic kernel (Keys, a = -0.5), elementwise, as float64."""
    ax = np.abs(np.asarray(x, dtype=np.float64))
    ax2, ax3 = ax * ax, ax * ax * ax
    return (1.5 * ax3 - 2.5 * ax2 + 1.0) * (ax <= 1) + (
        -0.5 * ax3 + 2.5 * ax2 - 4.0 * ax + 2.0
    ) * ((ax > 1) & (ax <= 2))


def bicubic_upsample_kernel(scale: int) -> np.ndarray:
    """5x5 kernels, one per output phase, reproducing MATLAB ``imresize(x, scale)`` (bicubic).

    Output pixel j = scale*i + p samples input coordinate i + (p + 0.5)/scale - 0.5; its four
    taps lie within i-2..i+2. Returns an array of shape (scale*scale, 5, 5) in PixelShuffle order.
    """
    taps = np.zeros((scale, 5))
    for p in range(scale):
        u = (p + 0.5) / scale - 0.5
        for t in range(-2, 3):
            taps[p, t + 2] = matlab_cubic(u - t)
        taps[p] /= taps[p].sum()
    return np.einsum("ph,qw->pqhw", taps, taps).reshape(scale * scale, 5, 5)
