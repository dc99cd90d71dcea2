"""Turns bench_cpu_ops' JSON into the Markdown tables of docs/benchmarks.md."""
import json
import re
import sys
from collections import defaultdict


def load(path):
    with open(path) as fh:
        doc = json.load(fh)
    rows = {}
    for b in doc["benchmarks"]:
        if b.get("run_type") == "aggregate" and b.get("aggregate_name") != "median":
            continue
        name = re.sub(r"_(median|mean|stddev|cv)$", "", b["name"])
        rows[name] = b
    return doc["context"], rows


def fmt_rate(x):
    return "—" if x is None else (f"{x / 1e3:,.1f}k" if x >= 1e3 else f"{x:,.0f}")


def main(path):
    ctx, rows = load(path)
    bw = float(ctx.get("copy_bandwidth_GBps", "nan"))
    print(f"Machine: {ctx.get('num_cpus')} CPUs at {ctx.get('mhz_per_cpu')} MHz, "
          f"torch threads {ctx.get('torch_threads')}, measured copy bandwidth {bw:.1f} GB/s (read + write).\n")

    def rate(kind, T, M):
        b = rows.get(f"BM_{kind}/{T}/{M}")
        return b["tokens/s"] if b else None

    print("### Training-style passes: one layer, H = 8 heads, D = 128 (tokens/s, higher is better)\n")
    print("| T | M | decay fwd | naive loop fwd | attention fwd | decay fwd+bwd | naive loop fwd+bwd | attention fwd+bwd | fwd+bwd vs naive |")
    print("|---|---|---|---|---|---|---|---|---|")
    seen = sorted({tuple(int(x) for x in k.split("/")[1:3]) for k in rows if k.startswith("BM_Decay_Forward/")},
                  key=lambda x: (x[1], x[0]))
    for T, M in seen:
        dfb, nfb = rate("Decay_ForwardBackward", T, M), rate("NaiveLoop_ForwardBackward", T, M)
        speed = f"{dfb / nfb:.0f}×" if dfb and nfb else "—"
        print(f"| {T} | {M} | {fmt_rate(rate('Decay_Forward', T, M))} | {fmt_rate(rate('NaiveLoop_Forward', T, M))} | "
              f"{fmt_rate(rate('Attention_Forward', T, M))} | {fmt_rate(dfb)} | {fmt_rate(nfb)} | "
              f"{fmt_rate(rate('Attention_ForwardBackward', T, M))} | {speed} |")

    print("\n### Decode step: N sequences × D = 128 × M, fp32 state read and written once\n")
    print("| N | M | state | time/step | state bytes/s | of copy bandwidth |")
    print("|---|---|---|---|---|---|")
    decode = []
    for k, b in rows.items():
        m = re.match(r"BM_Decay_DecodeStep/(\d+)/(\d+)$", k)
        if m:
            decode.append((int(m.group(2)), int(m.group(1)), b))
    for M, N, b in sorted(decode, key=lambda x: (x[0], x[1])):
        bps = b["bytes/s"]
        print(f"| {N} | {M} | {b['state_bytes'] / 2**20:.1f} MiB | {b['real_time']:.1f} {b['time_unit']} | "
              f"{bps / 1e9:.1f} GB/s | {100 * bps / (bw * 1e9):.0f}% |")

    print("\n### Decode latency per token, one sequence of 8 heads, D = 128: decay vs attention over a KV cache\n")
    decay = {int(re.match(r"BM_DecayLayer_DecodeStep/\d+/(\d+)", k).group(1)): b["real_time"]
             for k, b in rows.items() if k.startswith("BM_DecayLayer_DecodeStep/")}
    attn = {int(k.split("/")[1]): b["real_time"] for k, b in rows.items() if k.startswith("BM_Attention_DecodeStep/")}
    cols = sorted(decay)
    print("| context T | attention (µs) | " + " | ".join(f"decay M={M} (µs)" for M in cols) + " |")
    print("|---|---|" + "---|" * len(cols))
    for T in sorted(attn):
        print(f"| {T} | {attn[T]:.1f} | " + " | ".join(f"{decay[M]:.1f}" for M in cols) + " |")
    for M in cols:
        beaten = [T for T in sorted(attn) if attn[T] > decay[M]]
        first = beaten[0] if beaten else None
        print(f"\nDecay (M = {M}) decode is faster than attention decode from context {first} on"
              if first else f"\nDecay (M = {M}) decode did not beat attention in the measured range")


if __name__ == "__main__":
    main(sys.argv[1] if len(sys.argv) > 1 else "build/bench/cpu.json")
