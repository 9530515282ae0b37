"""Put this folder on PYTHONPATH to make `import tensorflow` fail in every Python process, as on a GPU
machine that has JAX and no TensorFlow (the end-to-end test's JAX run; test.sh's JAX pass)."""

import sys

sys.modules["tensorflow"] = None
