"""defocus: depth-edge-aware defocus blur estimation from a single photo.

After Karaali, Harte & Jung, "Deep Multi-Scale Feature Learning for Defocus Blur
Estimation", IEEE TIP 2022. Blur is always the radius, in px, of a disk PSF.

The heavy parts (TensorFlow) load only when a network is built; importing the
package is cheap.
"""

__version__ = "0.1.0"
