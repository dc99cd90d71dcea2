"""Small forward/backward/step calls for compute-sanitizer (memcheck, racecheck)."""
import torch

import decayfw

for (B, T, H, D, M) in [(1, 37, 2, 64, 32), (2, 5, 1, 33, 5), (1, 9, 2, 128, 128)]:
    x = [torch.randn(B, T, H, X, device="cuda", requires_grad=True) for X in (M, M, D, D, M)]
    s0 = torch.randn(B, H, D, M, device="cuda", requires_grad=True)
    y, s = decayfw.decay_fast_weights(*x, initial_state=s0, output_final_state=True)
    (y.sum() + s.sum()).backward()
    state = s0.detach().clone()
    decayfw.decay_step(*(t.detach()[:, 0].contiguous() for t in x), state)
torch.cuda.synchronize()
print("sanitize run ok")
