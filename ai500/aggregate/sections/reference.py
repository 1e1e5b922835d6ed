"""The summary's `reference` section: the run's epochs to target against the reference
convergence point of its benchmark, preset and global batch (ai500.references, whose docstring
states the rule; the references file is $AI500_REFERENCES or ai500/configs/references.yaml, read
when the run is aggregated)."""

from __future__ import annotations

from typing import Any

from ai500 import references


def reference_section(summary: dict[str, Any]) -> dict[str, Any]:
    """Verdict (faster, within, slower, not reached, no reference, unknown), its one-line reason,
    the run's epochs to target and completed, and the reference's numbers (None without one);
    `summary` is the run summary built so far (benchmark, preset, global batch, quality, epochs)."""
    return references.compare_run(summary)
