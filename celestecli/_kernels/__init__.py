"""Compiled kernels (sources in pyx/celestecli/_kernels/)."""
