"""Real fairseq checkpoints for other test suites (the C++ engine's): a tiny attention base, the
decay model swapped from it and fine-tuned, and the base again in the legacy format.

    python tests/plugin/make_checkpoints.py OUTDIR

writes OUTDIR/{dict.txt, data-bin/, base/checkpoint_last.pt, decay/checkpoint_last.pt,
legacy/checkpoint_legacy.pt} with the real fairseq command-line tools (same as tests/plugin), in
about ten seconds on 2 cores. Existing files are kept (re-running is cheap).
"""
import os
import shutil
import sys

import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from fairseq_helpers import ROOT, TINY, TRAIN, make_dummy_data, preprocess, train_base, train_decay  # noqa: E402


def write_legacy(base_ckpt, data, out_path, extra_args=()):
    """The base as pre-0.10 fairseq wrote it: args Namespace, packed in_proj, pre-1.6 pickle.
    ``extra_args``: the architecture flags the base was trained with (e.g. adaptive input/softmax)."""
    for p in (os.path.join(ROOT, "plugin"), os.path.join(ROOT, "bindings", "python")):
        if p not in sys.path:
            sys.path.insert(0, p)
    from fairseq import checkpoint_utils, options
    state = checkpoint_utils.load_checkpoint_to_cpu(base_ckpt)
    sd = dict(state["model"])
    layers = sorted({k.split(".")[2] for k in sd if k.startswith("decoder.layers.")}, key=int)
    for i in layers:
        p = f"decoder.layers.{i}.self_attn."
        sd[p + "in_proj_weight"] = torch.cat([sd.pop(p + f"{n}_proj.weight") for n in "qkv"])
        sd[p + "in_proj_bias"] = torch.cat([sd.pop(p + f"{n}_proj.bias") for n in "qkv"])
    args = options.parse_args_and_arch(options.get_training_parser(),
                                       [data, "--arch", "transformer_lm", *TINY, *TRAIN, *extra_args])
    legacy = {"args": args, "model": sd, "extra_state": {}, "last_optimizer_state": None,
              "optimizer_history": [{"criterion_name": "CrossEntropyCriterion", "optimizer_name": "Adam",
                                     "lr_scheduler_state": {}, "num_updates": 40}]}
    torch.save(legacy, out_path, _use_new_zipfile_serialization=False)


def main(argv):
    if len(argv) != 1:
        print("usage: make_checkpoints.py OUTDIR", file=sys.stderr)
        return 2
    out = os.path.abspath(argv[0])
    os.makedirs(out, exist_ok=True)
    data = os.path.join(out, "data-bin")
    if not os.path.exists(os.path.join(data, "test.bin")):
        make_dummy_data(out)
        preprocess(out)
    shutil.copyfile(os.path.join(data, "dict.txt"), os.path.join(out, "dict.txt"))
    base = os.path.join(out, "base", "checkpoint_last.pt")
    if not os.path.exists(base):
        train_base(data, os.path.dirname(base))
    decay = os.path.join(out, "decay", "checkpoint_last.pt")
    if not os.path.exists(decay):
        train_decay(data, os.path.dirname(decay), base=base)
    legacy = os.path.join(out, "legacy", "checkpoint_legacy.pt")
    if not os.path.exists(legacy):
        os.makedirs(os.path.dirname(legacy), exist_ok=True)
        write_legacy(base, data, legacy)
    for path in (base, decay, legacy, os.path.join(out, "dict.txt")):
        print(path)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
