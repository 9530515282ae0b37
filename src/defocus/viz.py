"""Pictures of results: colour-mapped blur maps and edge overlays."""

from __future__ import annotations

import numpy as np

from .images import atomic_write, to_uint8

BLUR_MAX = 6.0  # px, largest B-NET radius


def save_blur_png(path, blur: np.ndarray, title: str | None = None, vmax: float = BLUR_MAX) -> None:
    """Write a blur map as a colour-mapped PNG with a labelled colour bar (atomic).

    Parameters
    ----------
    path : path
    blur : ndarray, (H, W), disk radius in px
    title : str, optional
    vmax : float
        Top of the colour scale, px (the scale starts at 0).
    """
    import matplotlib

    matplotlib.use("Agg", force=False)
    from matplotlib.figure import Figure

    h, w = blur.shape
    scale = 6.0 / max(h, w)
    fig = Figure(figsize=(w * scale + 1.6, h * scale + (0.5 if title else 0.2)), dpi=max(100, int(max(h, w) / 6)))
    ax = fig.add_subplot()
    im = ax.imshow(blur, cmap="viridis", vmin=0.0, vmax=vmax, interpolation="nearest")
    ax.set_axis_off()
    if title:
        ax.set_title(title, fontsize=9)
    bar = fig.colorbar(im, ax=ax, fraction=0.046, pad=0.03)
    bar.set_label("defocus blur: disk radius (px)")
    fig.tight_layout()
    atomic_write(path, lambda tmp: fig.savefig(tmp, format="png"))


def edge_overlay(image: np.ndarray, pattern: np.ndarray, depth: np.ndarray) -> np.ndarray:
    """The image (dimmed) with pattern edges in blue and depth edges in red.

    Returns
    -------
    overlay : ndarray, (H, W, 3) uint8 RGB
    """
    out = to_uint8(np.asarray(image) * 0.6)
    out[pattern] = (40, 90, 255)
    out[depth] = (255, 30, 30)
    return out
