"""examples/ablation/ablation.py end to end at a toy scale: a base, two cells through real fairseq,
the Markdown table in the paper's layout, and a cell made to blow up reported as "diverged"."""
import json
import os
import subprocess
import sys

from fairseq_helpers import ENV, ROOT, make_dummy_data

SCRIPT = os.path.join(ROOT, "examples", "ablation", "ablation.py")


def test_cells_run_and_a_blow_up_is_reported_as_diverged(tmp_path):
    data = tmp_path / "data"
    data.mkdir()
    make_dummy_data(str(data))
    for split in ("train", "valid", "test"):
        os.rename(data / f"{split}.txt", data / f"wiki.{split}.tokens")
    out = tmp_path / "out"
    # v scaled by 1e30 in the additive rule without normalisation: the state overflows fp32 and
    # fairseq stops with "gradients are Nan/Inf".
    cmd = [sys.executable, SCRIPT, "--data", str(data), "--out", str(out), "--layers", "1", "--dim", "32",
           "--heads", "4", "--ffn", "64", "--vocab-threshold", "1", "--base-updates", "6", "--updates", "3",
           "--max-tokens", "512", "--tokens-per-sample", "64", "--only", "t1-decay-no-phi,t1-add-no-phi",
           "--cell-args", "t1-add-no-phi=--fw-value-scale 1e30"]
    r = subprocess.run(cmd, env=ENV, capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, r.stderr[-3000:]
    res = json.loads((out / "results.json").read_text())["cells"]
    assert res["t1-decay-no-phi"]["status"] == "ok" and 1 < res["t1-decay-no-phi"]["ppl"] < 1e4
    assert res["t1-add-no-phi"]["status"] == "diverged"
    table = (out / "results.md").read_text()
    assert "| Update rule | Baseline | Norm × | φ × |" in table
    assert "| Add | — | — | diverged |" in table
    assert f"| Decay | — | — | {res['t1-decay-no-phi']['ppl']:.1f} |" in table
    # an unknown cell is a usage error naming it
    bad = subprocess.run(cmd[:2] + ["--only", "t1-lstm-baseline", "--out", str(out)], env=ENV, capture_output=True,
                         text=True, timeout=120)
    assert bad.returncode != 0 and "unknown cell(s) t1-lstm-baseline" in bad.stderr
