"""benchmarks/throughput.py's roofline and synthesis modes run end to end and report what they promise."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

SCRIPT = Path(__file__).resolve().parents[2] / "benchmarks" / "throughput.py"
TINY = ["--configs", "small", "--text-length", "8", "--pairs", "1", "--warmup", "0", "--threads", "1"]


def run(*args: str) -> str:
    done = subprocess.run([sys.executable, str(SCRIPT), *TINY, *args], capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    return done.stdout


def test_roofline_counts_flops_and_profiles_each_arm(tmp_path):
    out = run("--batch-size", "2", "--mel-length", "12", "--roofline", "--profile-dir", str(tmp_path / "profiles"),
              "--json", str(tmp_path / "results.json"))
    lines = [line for line in out.splitlines() if line.startswith("roofline:")]
    assert [re.search(r"arm=(\w+)", line).group(1) for line in lines] == ["baseline", "ours"]
    rows = json.loads((tmp_path / "results.json").read_text())["roofline"]
    for row, line in zip(rows, lines, strict=True):
        assert f"config=small batch=2 arm={row['arm']}" in line
        assert row["gflop_per_step"] > 0 and row["gemm_gflops"] > 0
        assert abs(row["fraction"] - row["achieved_gflops"] / row["gemm_gflops"]) < 1e-9
        assert "aten::" in Path(row["profile"]).read_text()
    # Same maths: the two arms count about the same FLOPs (ours composes the location layer's two maps).
    assert abs(rows[0]["gflop_per_step"] - rows[1]["gflop_per_step"]) < 0.1 * rows[0]["gflop_per_step"]


def test_inference_mode_reports_the_real_time_factor(tmp_path):
    out = run("--inference", "--inference-batch", "1", "2", "--inference-steps", "5", "--json",
              str(tmp_path / "inference.json"))
    results = json.loads((tmp_path / "inference.json").read_text())["inference"]
    assert [r["batch"] for r in results] == [1, 2]
    for result in results:
        assert result["steps"] == 5 and result["audio_s"] > 0
        assert abs(result["ours_rtf"] - result["ours_s"] / result["audio_s"]) < 1e-12
    assert "ours RTF" in out


def test_a_bad_step_count_is_refused_naming_the_option():
    done = subprocess.run([sys.executable, str(SCRIPT), "--inference", "--inference-steps", "0"], capture_output=True,
                          text=True, timeout=120)
    assert done.returncode == 2 and "--inference-steps must be >= 1, got 0" in done.stderr
