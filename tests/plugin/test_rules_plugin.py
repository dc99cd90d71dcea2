"""Every layer the paper compares, end to end through real fairseq: swap from the attention base,
a few fine-tuning updates, fairseq-eval-lm, fairseq-generate, and incremental decoding equal to the
full pass; invalid flag combinations are refused with a message naming the flags."""
import os
import re
import sys

import pytest
import torch

from fairseq_helpers import PLUGIN, ROOT, TINY, TRAIN, make_dummy_data, preprocess, run, train_base

sys.path.insert(0, os.path.join(ROOT, "plugin"))

import decayfw_fairseq  # noqa: E402,F401
from fairseq import checkpoint_utils  # noqa: E402

# (name, flags): the three columns of Table 1 for every rule at m = 4 (TINY has head dim 8),
# identity feature maps at m = head dim, and the local-attention baseline of Table 2.
CONFIGS = [
    (f"{rule}-{col}", ["--fw-rule", rule, "--fw-key-dim", "4", *flags])
    for rule in ("decay", "gated", "add", "delta")
    for col, flags in (
        ("baseline", ["--fw-feature-map", "relu", "--fw-normalization", "sum" if rule == "delta" else "attention"]),
        ("no-norm", ["--fw-feature-map", "relu", "--fw-normalization", "none"]),
        ("no-phi", ["--fw-feature-map", "linear", "--fw-normalization", "none"]),
    )
] + [
    (f"{rule}-identity", ["--fw-rule", rule, "--fw-feature-map", "none"]) for rule in ("gated", "add", "delta")
] + [("local-4", ["--fw-rule", "local", "--fw-window", "4"])]


@pytest.fixture(scope="module")
def base(tmp_path_factory):
    d = str(tmp_path_factory.mktemp("rules"))
    make_dummy_data(d)
    data = preprocess(d)
    train_base(data, f"{d}/base")
    return {"dir": d, "data": data, "base": f"{d}/base/checkpoint_last.pt"}


@pytest.mark.parametrize("name,flags", CONFIGS, ids=[c[0] for c in CONFIGS])
def test_finetune_eval_generate_and_incremental(base, name, flags):
    save = os.path.join(base["dir"], name)
    r = run("fairseq-train", [base["data"], "--user-dir", PLUGIN, "--arch", "decay_transformer_lm_tiny", *TINY, *TRAIN,
                              "--max-update", "4", "--log-interval", "1", "--save-dir", save, "--finetune-from-model", base["base"], *flags])
    losses = [float(x) for x in re.findall(r"train_inner \|.*?loss=([0-9.]+)", r.stderr + r.stdout)]
    assert len(losses) >= 1 and all(l == l and l < 20 for l in losses), losses
    ckpt = os.path.join(save, "checkpoint_last.pt")
    ev = run("fairseq-eval-lm", [base["data"], "--user-dir", PLUGIN, "--path", ckpt, "--cpu", "--num-workers", "0",
                                 "--max-tokens", "512", "--tokens-per-sample", "64", "--gen-subset", "valid"])
    ppl = float(re.findall(r"Perplexity: ([0-9.]+)", ev.stdout + ev.stderr)[-1])
    assert 1 < ppl < 100, ppl  # the letter data has a 30-symbol vocabulary
    gen = run("fairseq-generate", [base["data"], "--user-dir", PLUGIN, "--task", "language_modeling", "--path", ckpt,
                                   "--cpu", "--num-workers", "0", "--max-len-b", "5", "--gen-subset", "valid",
                                   "--sample-break-mode", "eos", "--tokens-per-sample", "64", "--batch-size", "8",
                                   "--beam", "2", "--max-sentences", "8"])
    assert len(re.findall(r"^H-\d+\t", gen.stdout, re.M)) == 40
    models, _, task = checkpoint_utils.load_model_ensemble_and_task([ckpt], arg_overrides={"data": base["data"]})
    model = models[0].eval()
    sa = model.decoder.layers[0].self_attn
    rule = flags[flags.index("--fw-rule") + 1]
    assert getattr(sa, "rule", "local") == rule
    torch.manual_seed(0)
    tokens = torch.randint(4, len(task.target_dictionary), (2, 11))
    with torch.no_grad():
        full, _ = model(tokens)
        inc, steps = {}, []
        for t in range(tokens.shape[1]):
            out, _ = model.decoder(tokens[:, :t + 1], incremental_state=inc)
            steps.append(out[:, -1])
    assert torch.allclose(torch.stack(steps, 1), full, atol=1e-4)


@pytest.mark.parametrize("flags,message", [
    (["--fw-rule", "delta", "--fw-feature-map", "relu", "--fw-normalization", "attention"],
     "--fw-normalization attention is not defined for the delta rule"),
    (["--fw-rule", "add", "--fw-key-dim", "4", "--fw-normalization", "attention"],
     "--fw-normalization attention needs a positive feature map"),
    (["--fw-rule", "gated", "--fw-feature-map", "relu", "--fw-normalization", "sum"], "sum is the delta rule's"),
    (["--fw-rule", "local"], "--fw-rule local needs --fw-window >= 1"),
    (["--fw-rule", "decay", "--fw-window", "32"], "--fw-window applies to --fw-rule local only"),
    (["--fw-rule", "local", "--fw-window", "8", "--fw-feature-map", "relu"], "--fw-rule local is softmax attention"),
    (["--fw-rule", "lstm"], "--fw-rule: invalid choice"),
])
def test_invalid_combinations_are_refused(base, tmp_path, flags, message):
    r = run("fairseq-train", [base["data"], "--user-dir", PLUGIN, "--arch", "decay_transformer_lm_tiny", *TINY, *TRAIN,
                              "--max-update", "1", "--save-dir", str(tmp_path / "bad"), *flags], check=False)
    assert r.returncode != 0
    assert re.search(re.escape(message) if "invalid choice" not in message else message, r.stderr), r.stderr[-2000:]
