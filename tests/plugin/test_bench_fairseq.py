"""benchmarks/bench_fairseq_gpu.py (issue 8's end-to-end fairseq numbers) in its CPU smoke mode: real fairseq
training steps and SequenceGenerator decoding of a tiny attention LM and its decay counterpart, on the shipped
WikiText-103 sample. Run with scikit-learn, SciPy and lxml stubbed out, as on the GPU machine where they are
absent, so this also checks that the benchmark's fairseq path never needs them."""
import json
import os
import subprocess
import sys

from fairseq_helpers import ENV, ROOT

SCRIPT = os.path.join(ROOT, "benchmarks", "bench_fairseq_gpu.py")


def tables(markdown):
    """{section title: [row dicts keyed by the header]} for every Markdown table under a ### heading."""
    out, title, header = {}, None, None
    for line in markdown.splitlines():
        if line.startswith("### "):
            title, header = line[4:].strip(), None
            out[title] = []
        elif line.startswith("|") and title:
            cells = [c.strip() for c in line.strip().strip("|").split("|")]
            if header is None:
                header = cells
            elif not set("".join(cells)) <= set("-: "):
                out[title].append(dict(zip(header, cells)))
    return out


def number(cell):
    return float(cell.replace(",", "").rstrip("×"))


def test_smoke_mode_prints_both_models_with_positive_throughput(tmp_path):
    js = tmp_path / "bench.json"
    env = dict(ENV, DECAYFW_FORCE_STUBS="sklearn,scipy,lxml")
    r = subprocess.run([sys.executable, SCRIPT, "--device", "cpu", "--smoke", "--work", str(tmp_path),
                        "--json", str(js)], env=env, capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-6000:]
    assert "Import stubs for absent, unused modules: sklearn, scipy, lxml" in r.stdout
    t = tables(r.stdout)
    train = next(rows for title, rows in t.items() if title.startswith("Training"))
    gen = next(rows for title, rows in t.items() if title.startswith("Generation"))

    assert sorted((row["arch"], row["tokens-per-sample"]) for row in train) == [
        ("decay_transformer_lm_tiny", "128"), ("decay_transformer_lm_tiny", "64"),
        ("transformer_lm", "128"), ("transformer_lm", "64")]
    for row in train:
        assert number(row["tokens/s"]) > 0 and number(row["fairseq wps"]) > 0, row
        seqs = number(row["batch (seqs × tokens)"].split("×")[0])
        assert seqs * int(row["tokens-per-sample"]) <= 128, row  # the same --max-tokens for every run
        if row["arch"].startswith("decay"):
            assert number(row["decay / attention"]) > 0, row
    assert sorted(row["arch"] for row in gen) == ["decay_transformer_lm_tiny", "transformer_lm"]
    for row in gen:
        assert row["context"] == "96" and row["new tokens"] == "16", row
        assert number(row["tokens/s (new)"]) > 0 and number(row["prompt tokens/s (forced)"]) > 0, row

    data = json.loads(js.read_text())
    assert data["environment"]["stubbed_modules"] == ["sklearn", "scipy", "lxml"]
    rows = data["rows"]
    assert len(rows) == 6 and not any("error" in row for row in rows), rows
    for row in rows:
        assert row["tokens_per_s"] > 0
        if row["kind"] == "train":
            assert row["tokens"] == row["steps"] * row["max_tokens"], row  # full batches of target tokens
            assert row["skipped_steps"] == 0, row
        else:
            assert row["output_tokens"] == row["context"] + row["new_tokens"] + 1, row  # prompt, new, </s>
