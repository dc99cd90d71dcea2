"""Draws the decode-latency figure of the README (the paper's Figure 1, on CPU) from the JSON of
bench_cpu_ops (needs matplotlib; install it without upgrading numpy, e.g. `pip install matplotlib --no-deps`
plus its small dependencies).

    ./build/benchmarks/bench_cpu_ops --benchmark_filter='Attention_DecodeStep|DecayLayer_DecodeStep' \
        --benchmark_repetitions=3 --benchmark_report_aggregates_only=true \
        --benchmark_out=decode.json --benchmark_out_format=json
    python benchmarks/plot_decode.py decode.json docs/img/decode_latency.png
"""
import json
import re
import sys

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402


def main(src, dst):
    with open(src) as fh:
        doc = json.load(fh)
    attn, decay = {}, {}
    for b in doc["benchmarks"]:
        if b.get("aggregate_name", "median") != "median":
            continue
        m = re.match(r"BM_Attention_DecodeStep/(\d+)", b["name"])
        if m:
            attn[int(m.group(1))] = b["real_time"]
        m = re.match(r"BM_DecayLayer_DecodeStep/\d+/(\d+)", b["name"])
        if m:
            decay[int(m.group(1))] = b["real_time"]
    ctx = sorted(attn)
    fig, ax = plt.subplots(figsize=(6.4, 4.0), dpi=150)
    ax.plot(ctx, [attn[c] for c in ctx], "o-", label="softmax attention (KV cache)")
    for M, us in sorted(decay.items()):
        ax.plot(ctx, [us] * len(ctx), "s--", label=f"decaying fast weights, M = {M}")
    ax.set_xscale("log", base=2)
    ax.set_yscale("log")
    ax.set_xlabel("context length (tokens)")
    ax.set_ylabel("time per generated token (µs)")
    ax.set_title("Decode step, one layer (8 heads, D = 128), 2-core CPU")
    ax.grid(True, which="both", alpha=0.3)
    ax.legend()
    fig.tight_layout()
    fig.savefig(dst)
    print(f"wrote {dst}")


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2])
