"""ai500: a scalable reference implementation of the HPC AI500 benchmark suite."""

__version__ = "0.1.0"
