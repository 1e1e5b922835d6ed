"""The sections of a training run's summary, each computed by a named function of the merged run
(merge.MergedRun) and, where it depends on it, the position of the quality point:
quality.py (quality, time to quality, MLPerf validity), throughput.py (throughput, load
imbalance), flops.py (FLOPS, Valid FLOPS), energy.py, cost.py, accounting.py (initialisation,
run length, time accounting), checkpoints.py, epochs.py (per-epoch rows), reference.py (epochs
to target against the reference convergence point, ai500.references). Each module's
docstring states the definitions it computes."""
