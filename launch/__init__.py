"""Ways of starting ranks (launchers.py) and scaling sweeps built on them (sweep.py)."""
