"""bplab.models."""
