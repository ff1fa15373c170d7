"""bplab.report."""
