"""Fixtures for the C++ engine tests, made with real torch and real fairseq:

    python tests/engine/make_engine_fixtures.py OUTDIR

- OUTDIR/{base,decay,legacy}/…: real fairseq checkpoints (tests/plugin/make_checkpoints.py);
- OUTDIR/adaptive_{base,decay,legacy}/…: the same with Baevski & Auli's layout at tiny dimensions
  (adaptive input, adaptive softmax with tied embeddings and projections; the legacy one with an
  args Namespace, packed in_proj and the pre-1.6 pickle format, like adaptive_lm_wiki103.v2);
- OUTDIR/expected_*.pt: fairseq's log-probabilities of fixed tokens, full-sequence
  and incremental, and a greedy continuation (beam 1) of a fixed prompt from fairseq's
  SequenceGenerator via the hub interface;
- OUTDIR/tensors_{zip,legacy}.pt: one tensor per dtype with known values, a shared storage, a
  strided view and a Namespace, in both file formats;
- OUTDIR/evil_*.pt: pickles that try to run code (must be refused, the marker must never appear).
"""
import argparse
import os
import pickle
import sys

import torch

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.abspath(os.path.join(HERE, "..", ".."))
sys.path.insert(0, os.path.join(ROOT, "tests", "plugin"))
for p in (os.path.join(ROOT, "plugin"), os.path.join(ROOT, "bindings", "python")):
    sys.path.insert(0, p)


def expected_outputs(ckpt, data, out_path, seed=0):
    import decayfw_fairseq  # noqa: F401  (registers the plugin's model)
    from fairseq import checkpoint_utils
    from fairseq.models.transformer_lm import TransformerLanguageModel

    models, _, task = checkpoint_utils.load_model_ensemble_and_task([ckpt], arg_overrides={"data": data})
    model = models[0].eval()
    g = torch.Generator().manual_seed(seed)
    tokens = torch.randint(4, len(task.target_dictionary), (2, 24), generator=g)
    with torch.no_grad():
        full = model.get_normalized_probs(model(tokens), log_probs=True)
        inc, steps = {}, []
        for t in range(tokens.shape[1]):
            out = model.decoder(tokens[:, :t + 1], incremental_state=inc)
            steps.append(model.get_normalized_probs(out, log_probs=True)[:, -1])
        inc_lp = torch.stack(steps, 1)
    lm = TransformerLanguageModel.from_pretrained(os.path.dirname(ckpt), os.path.basename(ckpt),
                                                  data_name_or_path=data,
                                                  user_dir=os.path.join(ROOT, "plugin", "decayfw_fairseq")).eval()
    prompt = "a b c d"
    hypo = lm.generate([lm.encode(prompt)], beam=1, max_len_b=12, verbose=False)[0][0]
    greedy_text = lm.decode(hypo["tokens"])
    torch.save({"tokens": tokens, "lprobs": full.float(), "lprobs_inc": inc_lp.float(),
                "prompt_ids": lm.encode(prompt), "greedy_ids": hypo["tokens"], "greedy_text": greedy_text,
                "vocab": len(task.target_dictionary)}, out_path)


def tensor_files(out):
    base = torch.arange(12, dtype=torch.float32).reshape(3, 4) / 8
    shared = torch.randn(5, 6, generator=torch.Generator().manual_seed(1))
    obj = {
        "f32": base, "f64": base.double() * 3, "f16": base.half(), "bf16": base.bfloat16(), "i64": torch.arange(7),
        "i32": torch.arange(5, dtype=torch.int32) - 2, "u8": torch.arange(4, dtype=torch.uint8), "bool": torch.tensor([True, False]),
        "shared_a": shared, "shared_b": shared,                     # one storage, two names (tied weights)
        "view": shared[1:, ::2],                                    # offset and strides into it
        "empty": torch.zeros(0, 3), "scalar": torch.tensor(2.5),
        "args": argparse.Namespace(decoder_layers=2, arch="transformer_lm", lr=[0.1], dropout=0.25, flag=True, none=None),
        "nested": {"list": [1, 2, (3, "x")], "text": "héllo", "big": 2 ** 40, "neg": -5},
    }
    torch.save(obj, os.path.join(out, "tensors_zip.pt"))
    torch.save(obj, os.path.join(out, "tensors_legacy.pt"), _use_new_zipfile_serialization=False)


class _Evil:
    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


def evil_files(out):
    marker = os.path.join(out, "PWNED")
    # as a whole file (legacy-format magic first, so the reader gets to the payload), and inside a zip archive
    with open(os.path.join(out, "evil_legacy.pt"), "wb") as fh:
        for part in (0x1950a86a20f9469cfc6c, 1001, {"protocol_version": 1001, "little_endian": True}):
            pickle.dump(part, fh, protocol=2)
        pickle.dump({"model": {}, "payload": _Evil(marker)}, fh, protocol=2)
        pickle.dump([], fh, protocol=2)
    torch.save({"model": {}, "payload": _Evil(marker)}, os.path.join(out, "evil_zip.pt"))
    with open(os.path.join(out, "marker_path.txt"), "w") as fh:
        fh.write(marker)


BPE_TEXTS = ["Hello world! It's a test, isn't it?", "  leading spaces and   runs\tof\nwhitespace ",
             "Numbers 12345 and 3.14, symbols #$%&*() and café naïve über", "they'll we've I'm you'd",
             "The history of the city began in 1850."]


def bpe_files(out):
    """A small GPT-2-style byte-level BPE (merges learned on a few sentences) and fairseq's encoding of
    BPE_TEXTS with it, through fairseq's own GPT-2 encoder (gpt2_bpe_utils.Encoder)."""
    import json
    from collections import Counter
    from fairseq.data.encoders.gpt2_bpe_utils import Encoder, bytes_to_unicode
    b2u = bytes_to_unicode()
    enc0 = Encoder({}, [])
    words = Counter()
    for text in BPE_TEXTS * 3 + ["the city the history the world it is a test"] * 5:
        for tok in enc0.re.findall(enc0.pat, text):
            words[tuple(b2u[b] for b in tok.encode("utf-8"))] += 1
    vocab = {b2u[b]: i for i, b in enumerate(range(256))}
    merges = []
    for _ in range(60):  # greedy pair merges, as BPE is learned
        pairs = Counter()
        for w, n in words.items():
            for a, b in zip(w, w[1:]):
                pairs[(a, b)] += n
        if not pairs:
            break
        (a, b), _ = pairs.most_common(1)[0]
        merges.append((a, b))
        vocab.setdefault(a + b, len(vocab))
        new = Counter()
        for w, n in words.items():
            out_w, i = [], 0
            while i < len(w):
                if i + 1 < len(w) and w[i] == a and w[i + 1] == b:
                    out_w.append(a + b)
                    i += 2
                else:
                    out_w.append(w[i])
                    i += 1
            new[tuple(out_w)] += n
        words = new
    with open(os.path.join(out, "bpe_encoder.json"), "w") as fh:
        json.dump(vocab, fh)  # ensure_ascii: non-ASCII symbols as \u escapes, like GPT-2's file
    with open(os.path.join(out, "bpe_vocab.bpe"), "w", encoding="utf-8") as fh:
        fh.write("#version: 0.2\n" + "".join(f"{a} {b}\n" for a, b in merges))
    enc = Encoder(vocab, merges)
    with open(os.path.join(out, "bpe_expected.txt"), "w") as fh:  # hex(utf-8 text) TAB ids
        for text in BPE_TEXTS:
            fh.write(text.encode("utf-8").hex() + "\t" + " ".join(map(str, enc.encode(text))) + "\n")


def main(argv):
    if len(argv) != 1:
        print(__doc__, file=sys.stderr)
        return 2
    out = os.path.abspath(argv[0])
    os.makedirs(out, exist_ok=True)
    import make_checkpoints
    from fairseq_helpers import train_base, train_decay
    make_checkpoints.main([out])
    data = os.path.join(out, "data-bin")
    adaptive = ["--adaptive-input", "--adaptive-input-cutoff", "8,16", "--adaptive-input-factor", "2",
                "--adaptive-softmax-cutoff", "8,16", "--adaptive-softmax-factor", "2", "--tie-adaptive-weights",
                "--tie-adaptive-proj", "--criterion", "adaptive_loss", "--ddp-backend", "legacy_ddp"]
    a_base = os.path.join(out, "adaptive_base", "checkpoint_last.pt")
    if not os.path.exists(a_base):
        train_base(data, os.path.dirname(a_base), updates=20, extra=adaptive)
    a_decay = os.path.join(out, "adaptive_decay", "checkpoint_last.pt")
    if not os.path.exists(a_decay):
        train_decay(data, os.path.dirname(a_decay), base=a_base, updates=20, extra=adaptive)
    a_legacy = os.path.join(out, "adaptive_legacy", "checkpoint_legacy.pt")
    if not os.path.exists(a_legacy):
        os.makedirs(os.path.dirname(a_legacy), exist_ok=True)
        make_checkpoints.write_legacy(a_base, data, a_legacy, extra_args=adaptive)
    for name, ckpt in (("base", "base/checkpoint_last.pt"), ("decay", "decay/checkpoint_last.pt"),
                       ("legacy", "legacy/checkpoint_legacy.pt"),
                       ("adaptive_base", "adaptive_base/checkpoint_last.pt"),
                       ("adaptive_decay", "adaptive_decay/checkpoint_last.pt"),
                       ("adaptive_legacy", "adaptive_legacy/checkpoint_legacy.pt")):
        path = os.path.join(out, f"expected_{name}.pt")
        if not os.path.exists(path):
            expected_outputs(os.path.join(out, ckpt), data, path)
    tensor_files(out)
    evil_files(out)
    bpe_files(out)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
