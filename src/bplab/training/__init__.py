"""bplab.training."""
