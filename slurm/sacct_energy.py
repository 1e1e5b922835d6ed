"""Record the energy Slurm accounted to a job, as JSON beside the run's own energy figures.

    python slurm/sacct_energy.py JOBID RUN_DIR/slurm_energy.json

Runs `sacct -j JOBID -n -P -o JobID,ConsumedEnergyRaw` (joules) and writes

    {"source": "sacct ConsumedEnergyRaw", "job_id": "123", "joules": 5120.0 | null,
     "steps": {"123": 5120.0, "123.batch": null, "123.0": 5120.0}, "reason": null | "why not",
     "recorded_at": "...", "note": "..."}

`joules` is null, with the reason, when accounting is off, sacct is missing, or no energy plugin
(AcctGatherEnergyType) reports anything: an empty field, 0 and Slurm's "no value" marker
(NO_VAL64, 18446744073709551614) are no energy. It is read at the end of the batch script, while
the job still runs: Slurm has accounted the completed job steps (an `srun` launch), not yet the
batch step (which holds an `mpirun` launch on the batch node).
The parsing is ai500.metrics.energy's (the one sacct parser): slurm/common.sh runs this with the
python that runs ai500, and the checkout is put on the path, so a plain checkout works too.
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

if __package__ in (None, ""):  # run as `python slurm/sacct_energy.py`
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from ai500.metrics.energy import sacct_energy


def main(argv: list[str]) -> int:
    if len(argv) != 2:
        print(__doc__.strip().splitlines()[2].strip(), file=sys.stderr)
        return 2
    job_id, path = argv
    record = sacct_energy(job_id)
    tmp = path + ".tmp"
    with open(tmp, "w") as f:
        json.dump(record, f, indent=2)
        f.write("\n")
    os.replace(tmp, path)
    joules = record["joules"]
    shown = f"{joules:.1f} J" if joules is not None else f"null ({record['reason']})"
    print(f"ai500: job energy from sacct: {shown} -> {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
