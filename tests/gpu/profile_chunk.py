"""One forward+backward of the CUDA chunk path per forward form, for Nsight Compute (the `profile` step of
tests/gpu/run_all.sh). Warm-up runs outside the profiled range; cudaProfilerStart/Stop enclose one call
of each form, so that

  ncu --profile-from-start off -k regex:_pass_kernel ... python tests/gpu/profile_chunk.py

reports every chunk kernel once per form and thread count, in this order: split with 512 and then 256
threads per CTA (state_pass, output_pass, dstate_pass, grad_pass each), then fused with 512 and 256
(forward_pass, dstate_pass, grad_pass): occupancy, DRAM throughput and warp
stall reasons, which say whether a kernel waits on memory, on barriers or on arithmetic (docs/cuda.md,
"What still needs a GPU run")."""
import argparse
import os
import sys

import torch

import decayfw


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--N", type=int, default=64)
    p.add_argument("--T", type=int, default=2048)
    p.add_argument("--D", type=int, default=128)
    p.add_argument("--M", type=int, default=64)
    a = p.parse_args(argv)
    if not torch.cuda.is_available():
        p.exit(1, "profile_chunk: CUDA is not available\n")
    B, H = max(1, a.N // 16), min(16, a.N)
    g = torch.Generator(device="cuda").manual_seed(0)
    r = lambda *s: torch.randn(*s, device="cuda", generator=g)
    x = [r(B, a.T, H, a.M) / a.M ** 0.5, r(B, a.T, H, a.M) / a.M ** 0.5, r(B, a.T, H, a.D), r(B, a.T, H, a.D) + 2,
         r(B, a.T, H, a.M) + 2]
    x = [t.to(torch.bfloat16).requires_grad_(True) for t in x]
    os.environ["DECAYFW_CUDA_PATH"] = "chunk"

    def call():
        y = decayfw.decay_fast_weights(*x)
        y.backward(torch.ones_like(y))

    for form in ("split", "fused"):
        for threads in ("512", "256"):
            os.environ["DECAYFW_CHUNK_FORWARD"] = form
            os.environ["DECAYFW_CHUNK_THREADS"] = threads
            for _ in range(2):
                call()
            torch.cuda.synchronize()
            torch.cuda.profiler.start()
            call()
            torch.cuda.synchronize()
            torch.cuda.profiler.stop()
            print(f"profiled the {form} forward + backward, {threads} threads: N={a.N} T={a.T} D={a.D} M={a.M} bf16",
                  flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
