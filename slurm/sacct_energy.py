"""Record the energy Slurm accounted to a job, as JSON beside the run's own energy figures.

    python slurm/sacct_energy.py JOBID RUN_DIR/slurm_energy.json

Runs `sacct -j JOBID -n -P -o JobID,ConsumedEnergyRaw` (joules) and writes

    {"source": "sacct ConsumedEnergyRaw", "job_id": "123", "joules": 5120.0 | null,
     "steps": {"123": 5120.0, "123.batch": null, "123.0": 5120.0}, "reason": null | "why not",
     "recorded_at": "...", "note": "..."}

`joules` is null, with the reason, when accounting is off, sacct is missing, or no energy plugin
(AcctGatherEnergyType) reports anything. It is read at the end of the batch script, while the
job still runs: Slurm has accounted the completed job steps (an `srun` launch), not yet the
batch step (which holds an `mpirun` launch on the batch node).
Standard library only, so any python3 runs it.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time

NOTE = ("read at the end of the batch script while the job is still running: covers the job "
        "steps that had completed (an srun launch), not the batch step itself")


def _joules(text: str) -> float | None:
    try:
        value = float(text)
    except ValueError:
        return None
    return value if value > 0 else None


def summarise(job_id: str, returncode: int, stdout: str, stderr: str) -> dict:
    """The JSON record for one sacct call's result."""
    record = {"source": "sacct ConsumedEnergyRaw", "job_id": job_id, "joules": None,
              "steps": {}, "reason": None, "note": NOTE,
              "recorded_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())}
    if returncode != 0:
        message = (stderr.strip() or stdout.strip() or f"exit status {returncode}").splitlines()
        record["reason"] = f"sacct failed: {message[0].removeprefix('sacct: ').strip()}"
        return record
    for line in stdout.splitlines():
        if "|" not in line:
            continue
        step, energy = line.split("|")[:2]
        record["steps"][step.strip()] = _joules(energy.strip())
    steps = record["steps"]
    if not steps:
        record["reason"] = "sacct returned no rows for this job"
    elif steps.get(job_id) is not None:
        record["joules"] = steps[job_id]
    else:
        launched = [v for k, v in steps.items()
                    if v is not None and not k.endswith((".batch", ".extern")) and k != job_id]
        if launched:
            record["joules"] = sum(launched)
        else:
            record["reason"] = ("sacct reports no energy for this job (ConsumedEnergyRaw empty or "
                                "0): the site has no AcctGatherEnergyType plugin, or only the "
                                "still-running batch step used energy")
    return record


def query(job_id: str) -> dict:
    if not job_id:
        return {**summarise("", 0, "", ""), "reason": "not inside a Slurm job (no SLURM_JOB_ID)"}
    cmd = ["sacct", "-j", job_id, "-n", "-P", "-o", "JobID,ConsumedEnergyRaw"]
    try:
        result = subprocess.run(cmd, check=False, capture_output=True, text=True, timeout=60)
    except FileNotFoundError:
        return summarise(job_id, 127, "", "sacct is not on PATH")
    except subprocess.TimeoutExpired:
        return summarise(job_id, 124, "", "sacct did not answer within 60 s")
    return summarise(job_id, result.returncode, result.stdout, result.stderr)


def main(argv: list[str]) -> int:
    if len(argv) != 2:
        print(__doc__.strip().splitlines()[2].strip(), file=sys.stderr)
        return 2
    job_id, path = argv
    record = query(job_id)
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
