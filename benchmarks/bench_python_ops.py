"""The decay op from Python: torch.ops (native) vs the pure-PyTorch reference vs causal softmax
attention, forward and forward+backward, and one decode step vs attention over a KV cache.

Same sizes as the C++ benchmark (benchmarks/bench_cpu_ops.cpp): one layer of H = 8 heads,
D = 128, M in {32, 64}, T = 128 ... 8192. Prints Markdown tables (median of --reps runs).

    python benchmarks/bench_python_ops.py [--max-t 8192] [--reference-max-t 512] [--threads N]
"""
import argparse
import os
import platform
import statistics
import sys
import time

import torch
import torch.nn.functional as F

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), ".."))
sys.path.insert(0, os.path.join(ROOT, "bindings", "python"))

import decayfw  # noqa: E402
from decayfw.reference import decay_fast_weights_reference  # noqa: E402

H, D = 8, 128


def timeit(fn, reps):
    fn()  # warm-up
    times = []
    for _ in range(reps):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def inputs(T, M, grad):
    g = torch.Generator().manual_seed(0)
    q, k, f = (torch.randn(1, T, H, M, generator=g) for _ in range(3))
    v, z = (torch.randn(1, T, H, D, generator=g) for _ in range(2))
    q, k, z, f = q / M ** 0.5, k / M ** 0.5, z + 2, f + 2
    return [t.requires_grad_(grad) for t in (q, k, v, z, f)]


def attention(q, k, v):
    if hasattr(F, "scaled_dot_product_attention"):
        return F.scaled_dot_product_attention(q, k, v, is_causal=True)
    T = q.shape[-2]  # torch < 2.0: the same math by hand
    s = (q @ k.transpose(-1, -2)) / q.shape[-1] ** 0.5
    s = s.masked_fill(torch.ones(T, T, dtype=torch.bool).triu(1), float("-inf"))
    return torch.softmax(s, -1) @ v


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--max-t", type=int, default=8192)
    p.add_argument("--reference-max-t", type=int, default=512)
    p.add_argument("--reps", type=int, default=5)
    p.add_argument("--threads", type=int, default=os.cpu_count())
    a = p.parse_args(argv)
    torch.set_num_threads(a.threads)
    print(f"Machine: {platform.processor() or platform.machine()}, {os.cpu_count()} CPUs, torch {torch.__version__}, "
          f"{torch.get_num_threads()} threads, decayfw native: {decayfw.HAS_EXTENSION}\n")
    print("### Whole sequence: tokens/s of one 8-head layer, D = 128\n")
    print("| T | M | torch.ops fwd | reference fwd | attention fwd | torch.ops fwd+bwd | reference fwd+bwd | "
          "attention fwd+bwd |")
    print("|---|---|---|---|---|---|---|---|")
    T = 128
    while T <= a.max_t:
        for M in (32, 64):
            cells = []
            for grad in (False, True):
                q, k, v, z, f = inputs(T, M, grad)

                def native():
                    y = decayfw.decay_fast_weights(q, k, v, z, f)
                    if grad:
                        y.sum().backward()

                def reference():
                    y, _ = decay_fast_weights_reference(q, k, v, z, f)
                    if grad:
                        y.sum().backward()

                qa, ka, va = (torch.randn(1, H, T, D).requires_grad_(grad) for _ in range(3))

                def attn():
                    y = attention(qa, ka, va)
                    if grad:
                        y.sum().backward()

                ctx = torch.enable_grad() if grad else torch.no_grad()
                with ctx:
                    r = [timeit(native, a.reps),
                         timeit(reference, 1) if T <= a.reference_max_t else None,
                         timeit(attn, a.reps) if T <= 4096 or not grad else None]
                cells += [f"{T / x:,.0f}" if x else "—" for x in r]
            print(f"| {T} | {M} | " + " | ".join(cells[0:3]) + " | " + " | ".join(cells[3:6]) + " |")
        T *= 4

    print("\n### Decode: one token, batch 1, 8 heads, D = 128 (µs per step)\n")
    print("| context T | attention over a KV cache | decay_step M=32 | decay_step M=64 |")
    print("|---|---|---|---|")
    steps = {}
    for M in (32, 64):
        x = [torch.randn(1, H, X) for X in (M, M, D, D, M)]
        state = torch.zeros(1, H, D, M)
        with torch.no_grad():
            steps[M] = timeit(lambda: decayfw.decay_step(*x, state), 200) * 1e6
    for T in (128, 512, 2048, 8192):
        qd = torch.randn(1, H, 1, D)
        K, V = torch.randn(1, H, T, D), torch.randn(1, H, T, D)
        with torch.no_grad():
            if hasattr(F, "scaled_dot_product_attention"):
                us = timeit(lambda: F.scaled_dot_product_attention(qd, K, V), 200) * 1e6
            else:
                us = timeit(lambda: torch.softmax((qd @ K.transpose(-1, -2)) / D ** 0.5, -1) @ V, 200) * 1e6
        print(f"| {T} | {us:.1f} | {steps[32]:.1f} | {steps[64]:.1f} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
