"""Per-token generation speed of a fairseq LM checkpoint against context length.

Loads the checkpoint with fairseq, reads ``context`` tokens of real text into the model's
incremental state one token at a time (what generation does), then times ``--new-tokens`` greedy
steps. Attention's cost per token grows with the context (its KV cache); a decay model's does not.
Prints one JSON line per context length.

    python examples/main_job/generation_speed.py DATA_BIN CKPT [--contexts 128 512 2048] [--user-dir P]
"""
import argparse
import json
import os
import sys
import time

import torch


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("data")
    p.add_argument("path")
    p.add_argument("--user-dir", default=None)
    p.add_argument("--contexts", type=int, nargs="+", default=[128, 512, 1024, 2048])
    p.add_argument("--new-tokens", type=int, default=32)
    p.add_argument("--subset", default="test")
    a = p.parse_args(argv)

    from fairseq import checkpoint_utils, utils
    from fairseq.data import data_utils

    if a.user_dir:
        utils.import_user_module(argparse.Namespace(user_dir=a.user_dir))
    models, _, task = checkpoint_utils.load_model_ensemble_and_task([a.path], arg_overrides={"data": a.data})
    model = models[0].eval()
    # fairseq rebuilds its sinusoidal table one row longer per step past the trained length; give
    # both models the doubling table so the numbers measure the models, not that artefact
    from decayfw_fairseq.modules.growing_positions import use_growing_positions
    use_growing_positions(model.decoder)
    ds = data_utils.load_indexed_dataset(os.path.join(a.data, a.subset), task.source_dictionary)
    text = torch.cat([ds[i] for i in range(min(len(ds), 2000))])
    need = max(a.contexts) + 1
    if text.numel() < need:
        text = text.repeat(need // text.numel() + 1)
    with torch.no_grad():
        for ctx in sorted(a.contexts):
            tokens = text[:ctx].unsqueeze(0)
            inc = {}
            t0 = time.perf_counter()
            for t in range(ctx):  # prefill, token by token, as incremental generation does
                out, _ = model.decoder(tokens[:, :t + 1], incremental_state=inc)
            prefill = time.perf_counter() - t0
            t0 = time.perf_counter()
            for _ in range(a.new_tokens):
                nxt = model.get_normalized_probs((out, None), log_probs=True)[:, -1].argmax(-1, keepdim=True)
                tokens = torch.cat([tokens, nxt], 1)
                out, _ = model.decoder(tokens, incremental_state=inc)
            secs = time.perf_counter() - t0
            print(json.dumps({"context": ctx, "tokens_per_s": a.new_tokens / secs,
                              "ms_per_token": 1000 * secs / a.new_tokens, "prefill_s": prefill}), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
