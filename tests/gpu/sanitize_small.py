"""Small forward/backward/step calls for compute-sanitizer (memcheck, racecheck)."""
import os

import torch

import decayfw

# The recurrent path (fp32 default) at odd sizes, and the chunk path (bf16, and forced for fp32 as
# tf32) across chunk boundaries, several row tiles and every compiled key dimension; then unaligned views.
CASES = [("recurrent", torch.float32, (1, 37, 2, 64, 32)), ("recurrent", torch.float32, (2, 5, 1, 33, 5)),
         ("recurrent", torch.float32, (1, 9, 2, 128, 128)), ("chunk", torch.bfloat16, (1, 130, 2, 128, 64)),
         ("chunk", torch.float16, (1, 70, 1, 64, 16)), ("chunk", torch.float32, (1, 65, 1, 64, 32)),
         ("chunk", torch.bfloat16, (1, 40, 1, 192, 128)), ("chunk-mixed", torch.bfloat16, (1, 130, 2, 128, 64)),
         ("chunk-mixed-tensor", torch.bfloat16, (1, 130, 2, 128, 64)), ("chunk-whole", torch.bfloat16, (1, 130, 2, 128, 64)),
         ("chunk-whole", torch.float32, (1, 65, 1, 128, 32)), ("chunk-whole-factored", torch.bfloat16, (1, 130, 2, 128, 64))]
for path, dtype, (B, T, H, D, M) in CASES:
    # chunk-mixed: gate logits N(−2, 3²), so that every sub-chunk has both narrow columns (the diagonal
    # blocks factored in fp32: the default, or on tensor cores: DECAYFW_CHUNK_DIAGONAL=tensor) and wide
    # ones (per pair); the other cases' gates leave nearly every column narrow
    # chunk-whole: gate logits N(2, 1) and DECAYFW_CHUNK_DIAGONAL=chunk: every chunk taken whole; -factored: the
    # default form, which takes them whole too, its diagonal blocks apart in fp32
    mixed, whole = path.startswith("chunk-mixed"), path.startswith("chunk-whole")
    os.environ["DECAYFW_CUDA_PATH"] = "chunk" if mixed or whole else path
    os.environ["DECAYFW_CHUNK_DIAGONAL"] = ("tensor" if path == "chunk-mixed-tensor" else "chunk" if path == "chunk-whole"
                                            else "auto")
    x = [torch.randn(B, T, H, X, device="cuda", dtype=dtype) for X in (M, M, D, D, M)]
    if mixed:
        x[3], x[4] = -2 + 3 * x[3], -2 + 3 * x[4]
    if whole:
        x[3], x[4] = 2 + x[3], 2 + x[4]
    x = [t.requires_grad_(True) for t in x]
    s0 = torch.randn(B, H, D, M, device="cuda", requires_grad=True)
    # Both forms of the chunk forward (ignored on the recurrent path); for each, the backward reusing
    # the forward's chunk states and recomputing them, and the inference forward (the fused one keeps
    # no states).
    for form in ("split", "fused"):
        os.environ["DECAYFW_CHUNK_FORWARD"] = form
        for save in (True, False):
            y, s = decayfw.decay_fast_weights(*x, initial_state=s0, output_final_state=True, save_chunk_states=save)
            (y.sum() + s.sum()).backward()
        with torch.no_grad():
            decayfw.decay_fast_weights(*x, initial_state=s0, output_final_state=True)
    state = s0.detach().clone()
    decayfw.decay_step(*(t.detach()[:, 0].contiguous() for t in x), state)
os.environ.pop("DECAYFW_CHUNK_FORWARD")
os.environ.pop("DECAYFW_CHUNK_DIAGONAL")
# The chunk path's element-load fallback and the adapter's copy of an unaligned state: every input and
# the state one element into their storage.
os.environ["DECAYFW_CUDA_PATH"] = "chunk"
shifted = lambda t: torch.empty(t.numel() + 1, device="cuda", dtype=t.dtype)[1:].view_as(t).copy_(t)
x = [shifted(torch.randn(1, 70, 2, X, device="cuda", dtype=torch.bfloat16)).requires_grad_(True) for X in (64, 64, 128, 128, 64)]
s0 = shifted(torch.randn(1, 2, 128, 64, device="cuda")).requires_grad_(True)
y, s = decayfw.decay_fast_weights(*x, initial_state=s0, output_final_state=True)
(y.sum() + s.sum()).backward()
torch.cuda.synchronize()
print("sanitize run ok")
