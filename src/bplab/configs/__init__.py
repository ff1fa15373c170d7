"""Study files and other configs shipped with bplab (read with importlib.resources)."""
