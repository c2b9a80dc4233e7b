"""Benchmarks of the scanner: ``python -m benchmarks.run`` (``make bench``) and ``benchmarks/weights_scan.py``."""
