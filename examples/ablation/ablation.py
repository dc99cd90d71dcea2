"""The paper's ablations (Mao 2022, Tables 1 and 2), rerun on one small attention base.

Table 1: every update rule (add, gated, delta, decay) × three configurations at m = 4:
  Baseline — the rule as proposed: ReLU feature map (Kasai et al.) + its normalisation
             (attention normaliser; the delta rule's sum normalisation);
  Norm ×   — the same without normalisation;
  φ ×      — no feature map (a linear projection to m) and no normalisation.
Table 2: gated (Baseline configuration) and decay (φ ×) at m = 16 and 32, and local attention
         with a window of 32.

Every cell is swapped from the same attention base (``--finetune-from-model``) and fine-tuned with
the same budget, learning rate and seed, then scored with ``fairseq-eval-lm`` on the validation set.
A cell whose loss turns NaN/inf (fairseq stops with "gradients are Nan/Inf") or whose perplexity is
not finite is reported as "diverged"; the run goes on. Results: ``OUT/results.md`` (the paper's
layout) and ``OUT/results.json``; re-running reuses finished cells.

Defaults run on a 2-core CPU in well under an hour on the WikiText-103 sample shipped in data/
(a 2-layer, 128-dim base over the sample's words seen at least 3 times). On a GPU scale up with
``--gpu --layers 16 --dim 1024 --heads 8 --base-updates ... --updates ...`` and ``--data`` pointing
at the full WikiText-103 (examples/wikitext-103/download.sh).
"""
import argparse
import json
import math
import os
import re
import shutil
import subprocess
import sys
import time

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
PLUGIN = os.path.join(ROOT, "plugin", "decayfw_fairseq")
BIN = os.path.dirname(sys.executable)
RULES = ("add", "gated", "delta", "decay")
COLUMNS = ("baseline", "no-norm", "no-phi")
COLUMN_TITLES = {"baseline": "Baseline", "no-norm": "Norm ×", "no-phi": "φ ×"}
ATTENTION = "@attention-base"  # cell marker (not a flag): fairseq's transformer_lm, no swap


def log(msg):
    print(msg, file=sys.stderr, flush=True)


def cell_flags(rule, column, m, head_dim):
    """fairseq flags of one cell."""
    if rule == "local":
        return ["--fw-rule", "local", "--fw-window", str(m)]
    if column == "baseline":
        norm = "sum" if rule == "delta" else "attention"
        return ["--fw-rule", rule, "--fw-key-dim", str(m), "--fw-feature-map", "relu", "--fw-normalization", norm]
    if column == "no-norm":
        return ["--fw-rule", rule, "--fw-key-dim", str(m), "--fw-feature-map", "relu", "--fw-normalization", "none"]
    fm = "none" if m == head_dim else "linear"
    return ["--fw-rule", rule, "--fw-key-dim", str(m), "--fw-feature-map", fm, "--fw-normalization", "none"]


def all_cells(head_dim, table1_m, table2_ms, window):
    cells = {}
    for rule in RULES:
        for col in COLUMNS:
            cells[f"t1-{rule}-{col}"] = cell_flags(rule, col, table1_m, head_dim)
    for m in table2_ms:
        cells[f"t2-gated-m{m}"] = cell_flags("gated", "baseline", m, head_dim)
        cells[f"t2-decay-m{m}"] = cell_flags("decay", "no-phi", m, head_dim)
    cells[f"t2-local-w{window}"] = cell_flags("local", None, window, head_dim)
    # the reference: the attention base itself, trained on for the same budget (its fine-tuning
    # gain is not the swap's)
    cells["ref-attention-continued"] = [ATTENTION]
    return cells


def run(cmd, logfile, env):
    with open(logfile, "w") as fh:
        r = subprocess.run([str(c) for c in cmd], env=env, stdout=fh, stderr=subprocess.STDOUT)
    with open(logfile) as fh:
        return r.returncode, fh.read()


def diverged(text):
    return bool(re.search(r"FloatingPointError|gradients are Nan/Inf|loss=(nan|inf)|Minimum loss scale", text))


def perplexity(text):
    m = re.findall(r"Perplexity: ([0-9.e+]+|nan|inf)", text)
    return float(m[-1]) if m else None


def fmt(r):
    if r is None:
        return "—"
    if r["status"] == "ok":
        return f"{r['ppl']:.1f}"
    return r["status"]


def write_tables(results, a, head_dim, base_ppl, path_md):
    t1 = ["| Update rule | " + " | ".join(COLUMN_TITLES[c] for c in COLUMNS) + " |",
          "|---|" + "---:|" * len(COLUMNS)]
    for rule in RULES:
        t1.append(f"| {rule.capitalize()} | " + " | ".join(fmt(results.get(f"t1-{rule}-{c}")) for c in COLUMNS) + " |")
    t2 = ["| Model | " + " | ".join(f"m = {m}" for m in a.table2_m) + " |", "|---|" + "---:|" * len(a.table2_m)]
    t2.append("| Gated (Baseline) | " + " | ".join(fmt(results.get(f"t2-gated-m{m}")) for m in a.table2_m) + " |")
    t2.append("| Decay (φ ×) | " + " | ".join(fmt(results.get(f"t2-decay-m{m}")) for m in a.table2_m) + " |")
    t2.append(f"| Local attention (window {a.window}) | "
              + " | ".join([fmt(results.get(f"t2-local-w{a.window}"))] * len(a.table2_m)) + " |")
    lines = [
        "# Ablation results (validation perplexity, lower is better)", "",
        f"Base: attention `transformer_lm`, {a.layers} layers, dim {a.dim}, {a.heads} heads (head dim {head_dim}), "
        f"{a.base_updates} updates; validation perplexity of the base itself: {base_ppl:.1f}. Every cell: swapped "
        f"from that base and fine-tuned {a.updates} updates, lr {a.lr}, seed {a.seed}, "
        f"{a.max_tokens} tokens per batch, blocks of {a.tokens_per_sample} tokens. The attention base trained on "
        f"for the same {a.updates} updates: {fmt(results.get('ref-attention-continued'))}.", "",
        f"## Table 1: update rules at m = {a.table1_m}", "", *t1, "",
        "## Table 2: state size m, and local attention", "", *t2, "",
        "\"diverged\": the loss became NaN/inf during fine-tuning, or the perplexity was not finite; "
        "\"failed\": the run stopped for another reason (see the cell's log).", ""]
    with open(path_md, "w") as fh:
        fh.write("\n".join(lines))
    return "\n".join(lines)


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--data", default=os.path.join(ROOT, "data", "wikitext-103-sample"),
                   help="folder with wiki.{train,valid,test}.tokens")
    p.add_argument("--out", default=os.path.join(ROOT, "runs", "ablation"))
    p.add_argument("--base-checkpoint", help="reuse this attention checkpoint (and its --data-bin) as the base")
    p.add_argument("--data-bin", help="preprocessed data of --base-checkpoint")
    p.add_argument("--layers", type=int, default=2)
    p.add_argument("--dim", type=int, default=128)
    p.add_argument("--heads", type=int, default=4)
    p.add_argument("--ffn", type=int, default=512)
    p.add_argument("--vocab-threshold", type=int, default=3, help="keep words seen at least this often in train")
    p.add_argument("--base-updates", type=int, default=400)
    p.add_argument("--updates", type=int, default=100, help="fine-tuning updates of every cell")
    p.add_argument("--lr", type=float, default=0.001, help="fine-tuning learning rate of every cell")
    p.add_argument("--base-lr", type=float, default=0.002)
    p.add_argument("--max-tokens", type=int, default=2048)
    p.add_argument("--tokens-per-sample", type=int, default=256)
    p.add_argument("--seed", type=int, default=1)
    p.add_argument("--table1-m", type=int, default=4)
    p.add_argument("--table2-m", type=int, nargs="+", default=[16, 32])
    p.add_argument("--window", type=int, default=32)
    p.add_argument("--only", help="comma-separated cell names to run (default: all; see --list)")
    p.add_argument("--list", action="store_true", help="print the cells and their flags, then exit")
    p.add_argument("--cell-args", action="append", default=[], metavar="CELL=ARGS",
                   help="extra fairseq-train arguments for one cell (e.g. to provoke a divergence)")
    p.add_argument("--gpu", action="store_true")
    p.add_argument("--fresh", action="store_true")
    a = p.parse_args(argv)

    if a.dim % a.heads:
        raise SystemExit(f"ablation: --dim {a.dim} must be divisible by --heads {a.heads}")
    head_dim = a.dim // a.heads
    cells = all_cells(head_dim, a.table1_m, a.table2_m, a.window)
    if a.list:
        for name, flags in cells.items():
            print(name, " ".join(flags))
        return 0
    if a.only:
        unknown = [c for c in a.only.split(",") if c not in cells]
        if unknown:
            raise SystemExit(f"ablation: unknown cell(s) {', '.join(unknown)}; --list shows them")
        cells = {c: cells[c] for c in a.only.split(",")}
    extra = {}
    for spec in a.cell_args:
        name, _, args = spec.partition("=")
        if name not in cells:
            raise SystemExit(f"ablation: --cell-args names an unknown or unselected cell {name!r}")
        extra[name] = args.split()

    if a.fresh and os.path.isdir(a.out):
        shutil.rmtree(a.out)
    logs = os.path.join(a.out, "logs")
    os.makedirs(logs, exist_ok=True)
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([os.path.join(ROOT, "bindings", "python"),
                                                        os.path.join(ROOT, "plugin"),
                                                        os.environ.get("PYTHONPATH", "")]))
    env.setdefault("OMP_NUM_THREADS", str(os.cpu_count() or 1))
    device = [] if a.gpu else ["--cpu"]
    t0 = time.time()

    # 1. data and base
    if a.base_checkpoint:
        if not a.data_bin:
            raise SystemExit("ablation: --base-checkpoint needs --data-bin (the data it was trained on)")
        base_ckpt, data_bin = a.base_checkpoint, a.data_bin
        for path in (base_ckpt, os.path.join(data_bin, "dict.txt")):
            if not os.path.exists(path):
                raise SystemExit(f"ablation: {path} not found")
    else:
        for name in ("wiki.train.tokens", "wiki.valid.tokens"):
            if not os.path.exists(os.path.join(a.data, name)):
                raise SystemExit(f"ablation: {name} not found in {a.data} (set --data)")
        data_bin = os.path.join(a.out, "data-bin")
        if not os.path.exists(os.path.join(data_bin, "valid.bin")):
            log("[data] fairseq-preprocess")
            rc, text = run([f"{BIN}/fairseq-preprocess", "--only-source", "--thresholdsrc", a.vocab_threshold,
                            "--trainpref", os.path.join(a.data, "wiki.train.tokens"),
                            "--validpref", os.path.join(a.data, "wiki.valid.tokens"), "--destdir", data_bin,
                            "--workers", "1"], f"{logs}/preprocess.log", env)
            if rc:
                raise SystemExit(f"ablation: preprocessing failed, see {logs}/preprocess.log\n{text[-2000:]}")
        base_dir = os.path.join(a.out, "base")
        base_ckpt = os.path.join(base_dir, "checkpoint_last.pt")
        if not os.path.exists(base_ckpt):  # an existing base is reused as is: every cell starts from it
            log(f"[base] attention transformer_lm, {a.layers} layers, dim {a.dim}, {a.base_updates} updates")
            rc, text = run([f"{BIN}/fairseq-train", data_bin, "--arch", "transformer_lm", *arch_args(a),
                            *train_args(a), "--lr", a.base_lr, "--max-update", a.base_updates, "--save-dir", base_dir,
                            *device], f"{logs}/train_base.log", env)
            if rc:
                raise SystemExit(f"ablation: training the base failed, see {logs}/train_base.log\n{text[-2000:]}")
    rc, text = run(eval_cmd(data_bin, base_ckpt, a, device), f"{logs}/eval_base.log", env)
    base_ppl = perplexity(text) if rc == 0 else float("nan")

    # 2. cells
    results_path = os.path.join(a.out, "results.json")
    results = {}
    if os.path.exists(results_path):
        with open(results_path) as fh:
            results = json.load(fh).get("cells", {})
    for i, (name, flags) in enumerate(cells.items()):
        flags = flags + extra.get(name, [])
        if name in results and results[name].get("flags") == flags:
            log(f"[{i + 1}/{len(cells)}] {name}: {fmt(results[name])} (cached)")
            continue
        t_cell = time.time()
        save = os.path.join(a.out, "cells", name)
        shutil.rmtree(save, ignore_errors=True)
        model = (["--arch", "transformer_lm"] if flags[:1] == [ATTENTION]
                 else ["--user-dir", PLUGIN, "--arch", "decay_transformer_lm"])
        cell_args = [f for f in flags if f != ATTENTION]
        rc, text = run([f"{BIN}/fairseq-train", data_bin, *model, *arch_args(a), *train_args(a), "--lr", a.lr,
                        "--max-update", a.updates, "--finetune-from-model", base_ckpt, "--save-dir", save,
                        "--no-save-optimizer-state", *cell_args, *device], f"{logs}/train_{name}.log", env)
        r = {"flags": flags}
        if rc != 0 or diverged(text):
            r["status"] = "diverged" if diverged(text) else "failed"
        else:
            rc, text = run(eval_cmd(data_bin, os.path.join(save, "checkpoint_last.pt"), a, device),
                           f"{logs}/eval_{name}.log", env)
            ppl = perplexity(text) if rc == 0 else None
            if ppl is None:
                r["status"] = "failed"
            elif not math.isfinite(ppl):
                r["status"] = "diverged"
            else:
                r["status"], r["ppl"] = "ok", ppl
        r["seconds"] = round(time.time() - t_cell, 1)
        results[name] = r
        shutil.rmtree(save, ignore_errors=True)  # checkpoints of every cell would fill the disk
        log(f"[{i + 1}/{len(cells)}] {name}: {fmt(r)} ({r['seconds']} s)")
        with open(results_path, "w") as fh:
            json.dump({"base_ppl": base_ppl, "cells": results}, fh, indent=1)

    with open(results_path, "w") as fh:
        json.dump({"base_ppl": base_ppl, "cells": results, "args": vars(a)}, fh, indent=1)
    print(write_tables(results, a, head_dim, base_ppl, os.path.join(a.out, "results.md")))
    log(f"ablation: done in {(time.time() - t0) / 60:.1f} min; {a.out}/results.md")
    return 0


def arch_args(a):
    return ["--decoder-layers", a.layers, "--decoder-embed-dim", a.dim, "--decoder-input-dim", a.dim,
            "--decoder-output-dim", a.dim, "--decoder-ffn-embed-dim", a.ffn, "--decoder-attention-heads", a.heads,
            "--decoder-normalize-before", "--share-decoder-input-output-embed", "--dropout", "0.1"]


def train_args(a):
    return ["--task", "language_modeling", "--optimizer", "adam", "--adam-betas", "(0.9,0.98)",
            "--lr-scheduler", "inverse_sqrt", "--warmup-updates", "20", "--max-tokens", a.max_tokens,
            "--tokens-per-sample", a.tokens_per_sample, "--sample-break-mode", "none", "--no-progress-bar",
            "--num-workers", "0", "--log-interval", "10", "--no-epoch-checkpoints", "--seed", a.seed, "--validate-interval-updates", "1000000", "--disable-validation"]


def eval_cmd(data_bin, ckpt, a, device):
    return [f"{BIN}/fairseq-eval-lm", data_bin, "--user-dir", PLUGIN, "--path", ckpt, "--gen-subset", "valid",
            "--tokens-per-sample", a.tokens_per_sample, "--max-tokens", a.max_tokens, "--num-workers", "0",
            "--no-progress-bar", *device]


if __name__ == "__main__":
    sys.exit(main())
