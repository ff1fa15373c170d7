"""bplab.experiments."""
