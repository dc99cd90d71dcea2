"""Streaming evaluation of a decay LM: the whole split as one text, state carried across blocks.

``fairseq-eval-lm --context-window C`` gives every block at most ``C`` tokens of context. A decay
model can do better for free: it reads the split block after block, carrying its recurrent state,
so every token sees everything before it (unbounded context at O(1) memory). Usage::

    python -m decayfw_fairseq.eval_streaming DATA_BIN --path CKPT [--gen-subset test]
        [--tokens-per-sample 512] [--num-streams 1] [--cpu]

(with ``plugin/`` on PYTHONPATH). Prints fairseq-eval-lm's line format: ``Loss (base 2): ...,
Perplexity: ...``; ``--json`` prints a machine-readable summary instead. The split's tokens are
concatenated in order (line ends are ``</s>``, as fairseq binarizes them); token 0 has no context
and is not scored, every other token is.
"""
import argparse
import json
import math
import os
import sys
import time

import torch

from fairseq import checkpoint_utils, utils
from fairseq.data import data_utils
from fairseq.sequence_scorer import SequenceScorer

from decayfw_fairseq.modules.streaming import carry_state


def load_stream(data: str, subset: str, dictionary) -> torch.Tensor:
    ds = data_utils.load_indexed_dataset(os.path.join(data, subset), dictionary)
    if ds is None:
        raise FileNotFoundError(f"no binarized split '{subset}' in {data} (expected {subset}.bin/.idx)")
    return torch.cat([ds[i] for i in range(len(ds))])


@torch.no_grad()
def evaluate_streaming(model, dictionary, stream: torch.Tensor, block: int, num_streams: int = 1,
                       device: str = "cpu", progress=None):
    """Returns (sum of natural-log probabilities, number of scored tokens, seconds)."""
    if block <= 0:
        raise ValueError(f"--tokens-per-sample must be positive, got {block}")
    n = (stream.numel() - 1) // num_streams  # each stream scores n tokens
    if n <= 0:
        raise ValueError(f"the split has {stream.numel()} tokens: too few for {num_streams} streams")
    src = torch.stack([stream[i * n:(i + 1) * n] for i in range(num_streams)]).to(device)
    tgt = torch.stack([stream[i * n + 1:(i + 1) * n + 1] for i in range(num_streams)]).to(device)
    scorer = SequenceScorer(dictionary)
    total, count, t0 = 0.0, 0, time.time()
    with carry_state(model):
        for start in range(0, n, block):
            s, t = src[:, start:start + block], tgt[:, start:start + block]
            sample = {"net_input": {"src_tokens": s, "src_lengths": torch.full((num_streams,), s.shape[1])},
                      "target": t, "ntokens": t.numel()}
            hypos = scorer.generate([model], sample)
            for h in hypos:
                scores = h[0]["positional_scores"]
                total += scores.sum().item()
                count += scores.numel()
            if progress:
                progress(min(start + block, n), n)
    return total, count, time.time() - t0


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("data", help="fairseq data-bin folder (with dict.txt and <subset>.bin/.idx)")
    p.add_argument("--path", required=True, help="decay_transformer_lm checkpoint")
    p.add_argument("--gen-subset", default="test")
    p.add_argument("--tokens-per-sample", type=int, default=512, help="block length fed per forward call")
    p.add_argument("--num-streams", type=int, default=1, help="split the text into this many parallel streams")
    p.add_argument("--cpu", action="store_true")
    p.add_argument("--json", action="store_true")
    args = p.parse_args(argv)
    here = os.path.dirname(os.path.abspath(__file__))
    utils.import_user_module(argparse.Namespace(user_dir=here))
    models, _cfg, task = checkpoint_utils.load_model_ensemble_and_task([args.path], arg_overrides={"data": args.data})
    model = models[0].eval()
    device = "cuda" if torch.cuda.is_available() and not args.cpu else "cpu"
    model.to(device)
    try:
        stream = load_stream(args.data, args.gen_subset, task.source_dictionary)
        total, count, secs = evaluate_streaming(model, task.target_dictionary, stream, args.tokens_per_sample,
                                                args.num_streams, device)
    except (ValueError, FileNotFoundError) as exc:
        print(f"eval_streaming: error: {exc}", file=sys.stderr)
        return 2
    loss2 = -total / count / math.log(2)
    if args.json:
        print(json.dumps({"tokens": count, "loss_base2": loss2, "perplexity": 2 ** loss2, "seconds": secs}))
    else:
        print(f"Evaluated {count} tokens in {secs:.1f}s ({count / max(secs, 1e-9):.2f} tokens/s)")
        print(f"Loss (base 2): {loss2:.4f}, Perplexity: {2 ** loss2:.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
