"""Classic superpixels from scikit-image with the paper's settings as defaults."""

from __future__ import annotations

import numpy as np


class SLIC:
    """SLIC (Achanta et al.) in Lab space.

    Parameters
    ----------
    n_segments:
        Approximate number of regions; the search tries at most ``max_regions`` of them, so a
        few dozen keep each region a sub-object. Paper: 25.
    compactness:
        Balance of colour against position; low values follow colour edges closely. Paper: 1.
    sigma:
        Gaussian pre-smoothing width in pixels.
    """

    name = "slic"

    def __init__(self, n_segments: int = 25, compactness: float = 1.0, sigma: float = 0.0) -> None:
        self.n_segments = n_segments
        self.compactness = compactness
        self.sigma = sigma

    def segment(self, image: np.ndarray, attribution: np.ndarray | None = None) -> np.ndarray:
        from skimage.segmentation import slic

        return np.asarray(
            slic(
                image,
                n_segments=self.n_segments,
                compactness=self.compactness,
                sigma=self.sigma,
                start_label=0,
                channel_axis=-1,
            )
        )


class Felzenszwalb:
    """Felzenszwalb-Huttenlocher graph segmentation.

    Parameters
    ----------
    scale:
        Higher means larger regions. Paper: 500.
    sigma:
        Gaussian pre-smoothing width. Paper: 0.5.
    min_size:
        Smallest region in pixels (at the working resolution). Paper: 200.
    """

    name = "felzenszwalb"

    def __init__(self, scale: float = 500.0, sigma: float = 0.5, min_size: int = 200) -> None:
        self.scale = scale
        self.sigma = sigma
        self.min_size = min_size

    def segment(self, image: np.ndarray, attribution: np.ndarray | None = None) -> np.ndarray:
        from skimage.segmentation import felzenszwalb

        return np.asarray(
            felzenszwalb(
                image, scale=self.scale, sigma=self.sigma, min_size=self.min_size, channel_axis=-1
            )
        )


class CompactWatershed:
    """Compact watershed (Neubert & Protzel) on the Sobel gradient of the grey image.

    Parameters
    ----------
    markers:
        Number of seeds placed on a grid. Paper: 25.
    compactness:
        Higher values give more regularly shaped regions. Paper: 0.001.
    """

    name = "watershed"

    def __init__(self, markers: int = 25, compactness: float = 0.001) -> None:
        self.markers = markers
        self.compactness = compactness

    def segment(self, image: np.ndarray, attribution: np.ndarray | None = None) -> np.ndarray:
        from skimage.color import rgb2gray
        from skimage.filters import sobel
        from skimage.segmentation import watershed

        gradient = sobel(rgb2gray(image))
        return np.asarray(watershed(gradient, markers=self.markers, compactness=self.compactness))
