"""bplab: learn and do neural networks, from a NumPy back-propagation engine to PyTorch models."""

__version__ = "0.1.0"
