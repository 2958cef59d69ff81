"""The benchmark's sections, one module each (see run.py)."""
