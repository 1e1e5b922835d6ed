"""MLPerf's own compliance checker accepts ai500's mllog.txt: a real 2-rank run of each component
benchmark, checked with `python -m mlperf_logging.compliance_checker --usage hpc --ruleset 3.0.0`
against rules that differ from MLPerf's HPC 3.0.0 rules only in the benchmark-name list (ai500's
names added) and, so that the checker reads them, in where the rules it chains to are found: the
copies here, plus an empty per-benchmark file for each ai500 benchmark (MLPerf has rules for its
own benchmarks only)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import mlperf_logging.compliance_checker as checker
import pytest
from conftest import mpirun, only_run_dir

RULES = Path(checker.__file__).parent / "hpc_3.0.0"
OURS = ("resnet", "dcgan", "faster_rcnn")


def relaxed_rules(where: Path) -> Path:
    mlperf_names = "['deepcam', 'cosmoflow', 'oc20', 'openfold']"
    common = (RULES / "common.yaml").read_text()
    division = (RULES / "open_common.yaml").read_text()
    assert "'hpc_3.0.0/{}_common.yaml'" in common and mlperf_names in division
    (where / "common.yaml").write_text(
        common.replace("'hpc_3.0.0/{}_common.yaml'", f"'{where}/{{}}_common.yaml'"))
    (where / "open_common.yaml").write_text(
        division.replace(mlperf_names, mlperf_names[:-1] + ", " + ", ".join(map(repr, OURS)) + "]")
        .replace("'hpc_3.0.0/open_{}.yaml'", f"'{where}/open_{{}}.yaml'"))
    for name in OURS:
        (where / f"open_{name}.yaml").write_text("[]\n")
    return where / "common.yaml"


@pytest.mark.parametrize("benchmark", OURS)
def test_mlperf_hpc_checker_accepts_the_log(tmp_path, benchmark):
    result = mpirun(2, ["--benchmark", benchmark, "--preset", "ci", "--out", str(tmp_path / "runs"),
                        "--epochs", "2"])
    assert result.returncode == 0, result.stderr[-3000:]
    log = only_run_dir(tmp_path / "runs") / "mllog.txt"
    rules = relaxed_rules(tmp_path)
    check = subprocess.run([sys.executable, "-m", "mlperf_logging.compliance_checker", "--usage",
                            "hpc", "--ruleset", "3.0.0", "--config", str(rules), str(log)],
                           capture_output=True, text=True, timeout=120, cwd=tmp_path, check=False)
    output = check.stdout + check.stderr
    assert check.returncode == 0 and "SUCCESS" in output, output
    assert "WARNING" not in output, output  # cache_clear and the rest, not only the errors
