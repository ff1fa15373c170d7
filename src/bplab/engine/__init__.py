"""bplab.engine."""
