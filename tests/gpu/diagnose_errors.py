"""Error paths of the native ops on this torch, without the decayfw package (diagnosis aid)."""
import faulthandler
import sys

import torch

faulthandler.enable()
torch.ops.load_library(sys.argv[1])
q = torch.randn(2, 5, 3, 4)
v = torch.randn(2, 5, 3, 8)
for name, args in [("shape", (q, q[..., :3], v, v, q)), ("empty", (q[:, :0], q[:, :0], v[:, :0], v[:, :0], q[:, :0]))]:
    try:
        torch.ops.decayfw.decay_fwd(*args)
        print(name, "no error?!")
    except RuntimeError as e:
        print(name, "RuntimeError ok:", str(e).splitlines()[0][:120], flush=True)
