"""Offline swap: a softmax-attention ``transformer_lm`` checkpoint → a ``decay_transformer_lm``
checkpoint, before any training.

Every weight of the base is kept (q/k/v/out, layer norms, FFN, adaptive input/softmax); the gate
(and feature-map) parameters get their fresh initialisation (UGI) and W_v is rescaled by
1 − σ(b_z), exactly what ``--finetune-from-model`` does at the start of fine-tuning. Evaluating the
result with ``fairseq-eval-lm`` gives the zero-shot (swapped, not fine-tuned) perplexity::

    python -m decayfw_fairseq.convert_base_checkpoint BASE.pt OUT.pt [--data DATA_BIN]
        [--fw-key-dim M] [--fw-feature-map auto|none|linear|relu] [--seed 1]

Works for new (``cfg``) and legacy (``args`` Namespace, ``in_proj_weight``, pre-1.6 pickle)
checkpoints alike.
"""
import argparse
import os
import sys

import torch
from omegaconf import OmegaConf, open_dict

from fairseq import checkpoint_utils, tasks, utils

PLUGIN_DIR = os.path.dirname(os.path.abspath(__file__))


def convert(base_path: str, out_path: str, data=None, key_dim: int = 0, feature_map: str = "auto", seed: int = 1):
    utils.import_user_module(argparse.Namespace(user_dir=PLUGIN_DIR))
    state = checkpoint_utils.load_checkpoint_to_cpu(base_path)
    cfg = state["cfg"]
    if cfg is None or "model" not in cfg:
        raise ValueError(f"{base_path}: no model configuration (neither 'cfg' nor 'args') in the checkpoint")
    name = cfg.model.get("_name", "") or ""
    if name.startswith("decay_transformer_lm"):
        raise ValueError(f"{base_path} is already a decay_transformer_lm checkpoint")
    with open_dict(cfg):
        cfg.model._name = "decay_transformer_lm"
        if "arch" in cfg.model:
            cfg.model.arch = "decay_transformer_lm"
        cfg.model.fw_key_dim = key_dim
        cfg.model.fw_feature_map = feature_map
        cfg.model.fw_gate_init = "ugi"
        cfg.model.fw_no_value_rescale = False
        cfg.model.fw_no_query_scaling = False
        cfg.common.user_dir = PLUGIN_DIR
        if data is not None:
            cfg.task.data = data
    torch.manual_seed(seed)
    task = tasks.setup_task(cfg.task)
    model = task.build_model(cfg.model)
    model.load_state_dict(state["model"], strict=True, model_cfg=cfg.model)
    out = {
        "args": None,
        "cfg": OmegaConf.to_container(cfg, resolve=True, enum_to_str=True),
        "model": model.state_dict(),
        "optimizer_history": [{"criterion_name": "CrossEntropyCriterion", "optimizer_name": "Adam",
                               "lr_scheduler_state": {}, "num_updates": 0}],
        "extra_state": {"converted_from": os.path.abspath(base_path)},
    }
    torch.save(out, out_path)
    return model


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("base")
    p.add_argument("out")
    p.add_argument("--data", help="data-bin folder (if the one recorded in the checkpoint is not here)")
    p.add_argument("--fw-key-dim", type=int, default=0)
    p.add_argument("--fw-feature-map", default="auto", choices=["auto", "none", "linear", "relu"])
    p.add_argument("--seed", type=int, default=1)
    a = p.parse_args(argv)
    try:
        convert(a.base, a.out, a.data, a.fw_key_dim, a.fw_feature_map, a.seed)
    except (ValueError, FileNotFoundError, RuntimeError) as exc:
        print(f"convert_base_checkpoint: error: {exc}", file=sys.stderr)
        return 2
    print(f"wrote {a.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
