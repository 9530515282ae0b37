"""Class grids of the two networks.

B-NET class ``k`` (k = 0..22) is a disk PSF of radius ``0.5 + 0.25 k`` px, so
0.5 .. 6.0 px: the RTF ground-truth grid. E-NET class 0 is a pattern edge
(same depth on both sides), class 1 a depth edge.
"""

import numpy as np

#: Disk radii in px of the 23 blur classes: 0.5, 0.75, ..., 6.0.
BLUR_RADII = (0.5 + 0.25 * np.arange(23)).astype(np.float32)
N_BLUR = len(BLUR_RADII)
PATTERN, DEPTH = 0, 1
