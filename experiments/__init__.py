"""One module per study; each runs with ``python -m experiments.NAME`` and writes HDF5 + PNG + markdown."""
