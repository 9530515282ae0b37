"""Pictures of results: colour-mapped blur maps and edge overlays."""

from __future__ import annotations

import textwrap

import numpy as np

from .images import atomic_write, save_png, to_uint8

BLUR_MAX = 6.0  # px, largest B-NET radius
#: matplotlib colour map of every blur map drawn (previews, the gallery, their colour bars).
CMAP = "viridis"
#: Longest side (px) of the map drawn in a blur PNG; larger maps are area-averaged down to it
#: first. The .npy output keeps every pixel.
PREVIEW_SIDE = 2048
#: Rows colour-mapped at a time (matplotlib's colour mapping works in float64).
COLOUR_ROWS = 256


def colour_map(blur: np.ndarray, vmax: float = BLUR_MAX, cmap: str = CMAP) -> np.ndarray:
    """A blur map in matplotlib's colour map ``cmap`` over 0..``vmax`` px, as uint8 RGB.

    The same colours as ``imshow(blur, cmap=cmap, vmin=0, vmax=vmax)``, mapped a block of
    :data:`COLOUR_ROWS` rows at a time.

    Parameters
    ----------
    blur : ndarray, (H, W), disk radius in px
    vmax : float
        Top of the colour scale, px (the scale starts at 0).

    Returns
    -------
    rgb : ndarray, (H, W, 3) uint8
    """
    import matplotlib
    from matplotlib.colors import Normalize

    colours, norm = matplotlib.colormaps[cmap], Normalize(0.0, vmax)
    blur = np.asarray(blur)
    out = np.empty((*blur.shape, 3), np.uint8)
    for r in range(0, len(blur), COLOUR_ROWS):
        out[r : r + COLOUR_ROWS] = colours(norm(blur[r : r + COLOUR_ROWS]), bytes=True)[..., :3]
    return out


def save_blur_png(path, blur: np.ndarray, title: str | None = None, vmax: float = BLUR_MAX) -> None:
    """Write a blur map as a colour-mapped PNG with a labelled colour bar (atomic).

    The map is drawn at about 1:1 up to :data:`PREVIEW_SIDE` px on its longest side;
    larger maps are area-averaged down to that first. matplotlib draws the frame (title,
    colour bar, margins) around an empty axes box, and the colour-mapped map
    (:func:`colour_map`) is put into that box by nearest-neighbour scaling: what
    ``imshow(..., interpolation="nearest")`` draws, without its float copies of the
    picture (about 320 MB more for a 2048 x 1536 px map with matplotlib 3.11).

    Parameters
    ----------
    path : path
    blur : ndarray, (H, W), disk radius in px
    title : str, optional
    vmax : float
        Top of the colour scale, px (the scale starts at 0).
    """
    import cv2
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.cm import ScalarMappable
    from matplotlib.colors import Normalize

    h, w = blur.shape
    if max(h, w) > PREVIEW_SIDE:
        f = PREVIEW_SIDE / max(h, w)
        size = (max(1, round(w * f)), max(1, round(h * f)))
        blur = cv2.resize(np.asarray(blur, dtype=np.float32), size, interpolation=cv2.INTER_AREA)
        h, w = blur.shape
    scale = 6.0 / max(h, w)
    fig = _figure(w * scale + 1.6, h * scale + (0.5 if title else 0.2), dpi=max(100, int(max(h, w) / 6)))
    ax = fig.add_subplot()
    ax.set_xlim(0, w)
    ax.set_ylim(h, 0)
    ax.set_aspect("equal")  # the box takes the map's shape when drawn, as imshow's does
    ax.set_axis_off()
    if title:
        ax.set_title(title, fontsize=9)
    bar = fig.colorbar(ScalarMappable(Normalize(0.0, vmax), CMAP), ax=ax, fraction=0.046, pad=0.03)
    bar.set_label("defocus blur: disk radius (px)")
    fig.tight_layout()
    canvas = FigureCanvasAgg(fig)
    canvas.draw()
    frame = np.array(canvas.buffer_rgba())[:, :, :3]
    box = ax.get_window_extent()  # px, origin at the bottom left
    x0, x1 = round(box.x0), round(box.x1)
    y0, y1 = len(frame) - round(box.y1), len(frame) - round(box.y0)
    frame[y0:y1, x0:x1] = cv2.resize(colour_map(blur, vmax), (x1 - x0, y1 - y0), interpolation=cv2.INTER_NEAREST)
    save_png(path, frame)


def edge_overlay(image: np.ndarray, pattern: np.ndarray, depth: np.ndarray) -> np.ndarray:
    """The image (dimmed) with pattern edges in blue and depth edges in red.

    Returns
    -------
    overlay : ndarray, (H, W, 3) uint8 RGB
    """
    out = to_uint8(image, scale=0.6)
    out[pattern] = (40, 90, 255)
    out[depth] = (255, 30, 30)
    return out


def _figure(width: float, height: float, dpi: int = 100):
    import matplotlib

    matplotlib.use("Agg", force=False)
    from matplotlib.figure import Figure

    return Figure(figsize=(width, height), dpi=dpi)


def _save(fig, path) -> None:
    # fixed metadata: the same figure gives the same bytes
    atomic_write(path, lambda tmp: fig.savefig(tmp, format="png", metadata={"Software": None}))


def save_gallery(path, rows, vmax: float = BLUR_MAX, panel: float = 1.8) -> None:
    """A grid like the paper's Fig. 7: per row an image, its ground truth and each
    method's map, all on one colour scale (0..``vmax`` px) with one colour bar.

    Parameters
    ----------
    path : path of the PNG (written atomically)
    rows : list of (name, image (H, W, 3) in [0, 1], gt (H, W) px or None,
        [(method label, map (H, W) px or None), ...]); every row has the same methods.
    """
    if not rows:
        return
    n_cols = 2 + len(rows[0][3])
    fig = _figure(panel * n_cols + 0.8, panel * len(rows) + 0.6)
    axes = fig.subplots(len(rows), n_cols, squeeze=False)
    im = None
    for r, (name, image, gt, maps) in enumerate(rows):
        panels = [("image", image, False), ("ground truth", gt, True)] + [(lbl, m, True) for lbl, m in maps]
        for c, (label, data, is_map) in enumerate(panels):
            ax = axes[r, c]
            ax.set_xticks([])
            ax.set_yticks([])
            if r == 0:
                ax.set_title(textwrap.fill(label, 22), fontsize=6)
            if c == 0:
                ax.set_ylabel(name, fontsize=6)
            if data is None:
                ax.text(0.5, 0.5, "n/a", ha="center", va="center", fontsize=7, transform=ax.transAxes)
                continue
            if is_map:
                im = ax.imshow(data, cmap=CMAP, vmin=0.0, vmax=vmax, interpolation="nearest")
            else:
                ax.imshow(np.clip(data, 0, 1), interpolation="nearest")
    if im is not None:
        bar = fig.colorbar(im, ax=axes, fraction=0.02, pad=0.01)
        bar.set_label("disk radius (px)", fontsize=7)
    _save(fig, path)


def save_edge_figure(path, rows, panel: float = 2.4) -> None:
    """E-NET's decisions like the paper's Fig. 6: per row, one edge overlay
    (:func:`edge_overlay`) per model. ``rows``: [(name, [(label, overlay uint8), ...])]."""
    rows = [r for r in rows if r[1]]
    if not rows:
        return
    n_cols = max(len(p) for _, p in rows)
    fig = _figure(panel * n_cols, panel * len(rows) + 0.3)
    axes = fig.subplots(len(rows), n_cols, squeeze=False)
    for r, (name, panels) in enumerate(rows):
        for c in range(n_cols):
            ax = axes[r, c]
            ax.set_xticks([])
            ax.set_yticks([])
            if c < len(panels):
                label, overlay = panels[c]
                ax.imshow(overlay, interpolation="nearest")
                ax.set_title(f"{name}: {label}", fontsize=6)
    fig.suptitle("blue: pattern edges, red: depth edges (E-NET)", fontsize=7)
    _save(fig, path)


def save_pr_figure(path, curves_by_set: dict) -> None:
    """Precision-recall curves like the paper's Fig. 9, one panel per set.

    ``curves_by_set``: {set name: {method label: {"recall": [...], "precision": [...],
    "accuracy": [...]}}}; the legend gives each method's best accuracy.
    """
    sets = [(s, c) for s, c in curves_by_set.items() if c]
    if not sets:
        return
    fig = _figure(4.2 * len(sets), 3.8)
    axes = fig.subplots(1, len(sets), squeeze=False)[0]
    for ax, (name, curves) in zip(axes, sets, strict=True):
        for label, c in curves.items():
            ax.plot(c["recall"], c["precision"], label=f"{label} (best acc. {100 * max(c['accuracy']):.1f} %)")
        ax.set_xlabel("recall (blurred pixels)")
        ax.set_ylabel("precision")
        ax.set_xlim(0, 1)
        ax.set_ylim(0, 1.02)
        ax.set_title(name, fontsize=9)
        ax.legend(fontsize=5, loc="lower left")
        ax.grid(alpha=0.3)
    fig.tight_layout()
    _save(fig, path)
