"""bplab.data."""
