"""Error paths of the native ops on this torch, without the decayfw package (diagnosis aid)."""
import faulthandler
import sys

import torch

faulthandler.enable()
torch.ops.load_library(sys.argv[1])
q = torch.randn(2, 5, 3, 4)
v = torch.randn(2, 5, 3, 8)
cases = [("aten", lambda: torch.ops.aten.mm(q[0, 0], q[0, 0])),
         ("dtype", lambda: torch.ops.decayfw.decay_fwd(q.int(), q, v, v, q)),
         ("shape", lambda: torch.ops.decayfw.decay_fwd(q, q[..., :3], v, v, q)),
         ("empty", lambda: torch.ops.decayfw.decay_fwd(q[:, :0], q[:, :0], v[:, :0], v[:, :0], q[:, :0]))]
for name, fn in cases:
    print("trying", name, flush=True)
    try:
        fn()
        print(name, "no error?!", flush=True)
    except RuntimeError as e:
        print(name, "RuntimeError ok:", str(e).splitlines()[0][:150], flush=True)
