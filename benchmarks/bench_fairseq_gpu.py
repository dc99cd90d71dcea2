"""End-to-end fairseq throughput, decay vs attention (issue 8): ``decay_transformer_lm_wiki103`` against
``transformer_lm_wiki103`` on one GPU, through fairseq's own code.

- **Training**: for each arch x ``--tokens-per-sample``: real fairseq training steps — ``fairseq.trainer.Trainer``
  built from the ordinary ``fairseq-train`` command line (``--user-dir plugin/decayfw_fairseq``, adaptive loss,
  the Baevski & Auli recipe's NAG optimizer and clipping, ``--fp16``), ``--warmup`` untimed steps, then target
  tokens/s over ``--steps`` steps (CUDA-synchronised wall time; fairseq's own ``wps`` meter alongside) and the
  peak GPU memory of the whole run (weights, optimizer state, activations). The batch (``--max-tokens``) is the
  same for both models and every sequence length.
- **Generation**: fairseq's ``SequenceGenerator`` (greedy, beam 1, batch 1; what ``fairseq-generate`` and the hub
  ``sample()`` use) with a prompt of ``--gen-context`` tokens forced through incremental decoding, then
  ``--gen-tokens`` new tokens; tokens/s of the new tokens, from per-step timestamps (CUDA-synchronised) taken in
  the decoder's ``forward``.

The data is the WikiText-103 sample shipped in ``data/`` binarised with its real 267,744-word dictionary
(``fairseq-preprocess --srcdict``, in process, cached). Weights are randomly initialised: this measures speed,
not quality. ``--bf16`` is not used because fairseq 0.12 turns it into ``--tpu``.

    python benchmarks/bench_fairseq_gpu.py [--json out.json]                 # the GPU run (cuda, fp16)
    python benchmarks/bench_fairseq_gpu.py --device cpu --smoke              # tiny models, CPU, a minute

Prints Markdown tables; ``--json`` also writes every row (rewritten after each configuration, so a run cut
short by a time limit keeps what it measured).
"""
import argparse
import gc
import json
import logging
import os
import platform
import sys
import time
import traceback

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), ".."))
PLUGIN = os.path.join(ROOT, "plugin", "decayfw_fairseq")
DATA = os.path.join(ROOT, "data", "wikitext-103-sample")
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
for _p in (os.path.join(ROOT, "bindings", "python"), os.path.join(ROOT, "plugin")):
    if _p not in sys.path:
        sys.path.append(_p)  # after PYTHONPATH: an explicitly chosen decayfw build wins

import fairseq_offline  # noqa: E402  (stubs for fairseq's unused imports, when absent)

ATTENTION, DECAY = "attention", "decay"
FULL_ARCHS = {ATTENTION: ["--arch", "transformer_lm_wiki103"],
              DECAY: ["--arch", "decay_transformer_lm_wiki103", "--user-dir", PLUGIN]}
# --smoke: the same code paths (adaptive input/softmax over the real vocabulary) at toy sizes
SMOKE_DIMS = ["--decoder-layers", "2", "--decoder-embed-dim", "32", "--decoder-input-dim", "32",
              "--decoder-output-dim", "32", "--decoder-ffn-embed-dim", "64", "--decoder-attention-heads", "4",
              "--adaptive-input", "--adaptive-input-cutoff", "20000,60000", "--adaptive-softmax-cutoff",
              "20000,60000", "--tie-adaptive-weights", "--tie-adaptive-proj", "--adaptive-input-factor", "4",
              "--adaptive-softmax-factor", "4"]
SMOKE_ARCHS = {ATTENTION: ["--arch", "transformer_lm", *SMOKE_DIMS],
               DECAY: ["--arch", "decay_transformer_lm_tiny", "--user-dir", PLUGIN, *SMOKE_DIMS]}


def log(msg):
    print(f"[bench_fairseq] {msg}", file=sys.stderr, flush=True)


# -- data --------------------------------------------------------------------------------------------

def binarise(data_bin, smoke, workers):
    """fairseq-preprocess --only-source --srcdict dict.txt on the shipped train sample (in process)."""
    if os.path.exists(os.path.join(data_bin, "train.bin")) and os.path.exists(os.path.join(data_bin, "dict.txt")):
        return data_bin
    os.makedirs(data_bin, exist_ok=True)
    train = os.path.join(DATA, "wiki.train.tokens")
    if smoke:  # the first ~60k tokens are plenty for a few tiny steps
        head = os.path.join(data_bin, "wiki.train.head.tokens")
        with open(train) as src, open(head, "w") as dst:
            n = 0
            for line in src:
                if n > 60000:
                    break
                dst.write(line)
                n += len(line.split()) + 1
        train = head
    from fairseq import options
    from fairseq_cli import preprocess
    parser = options.get_preprocessing_parser()
    args = parser.parse_args(["--only-source", "--srcdict", os.path.join(DATA, "dict.txt"), "--trainpref", train,
                              "--destdir", data_bin, "--workers", str(workers)])
    t0 = time.perf_counter()
    preprocess.main(args)
    log(f"binarised {train} into {data_bin} in {time.perf_counter() - t0:.1f} s")
    return data_bin


# -- helpers -----------------------------------------------------------------------------------------

def sync(device):
    import torch
    if device == "cuda":
        torch.cuda.synchronize()


def reset_memory(device):
    import torch
    gc.collect()
    if device == "cuda":
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats()


def peak_gib(device):
    import torch
    if device == "cuda":
        return torch.cuda.max_memory_allocated() / 2 ** 30
    return None


def is_oom(exc):
    import torch
    oom = getattr(torch.cuda, "OutOfMemoryError", ())
    return (oom and isinstance(exc, oom)) or "out of memory" in str(exc).lower()


def fairseq_cfg(a, model, tokens_per_sample, extra=()):
    from fairseq import options
    from fairseq.dataclass.utils import convert_namespace_to_omegaconf
    archs = SMOKE_ARCHS if a.smoke else FULL_ARCHS
    argv = [a.data_bin, *archs[model], "--task", "language_modeling", "--criterion", "adaptive_loss",
            "--tokens-per-sample", str(tokens_per_sample), "--sample-break-mode", "none",
            "--max-tokens", str(a.max_tokens), "--required-batch-size-multiple", "1",
            # the Baevski & Auli wiki103 recipe: NAG, lr 1e-4, clip 0.1 (update-freq 1 here)
            "--optimizer", "nag", "--lr", "0.0001", "--clip-norm", "0.1",
            "--seed", "1", "--no-progress-bar", "--log-interval", "1000000", "--num-workers", str(a.num_workers),
            "--ddp-backend", "legacy_ddp", "--save-dir", os.path.join(a.work, "checkpoints"),
            "--no-save", "--disable-validation", *extra]
    if a.device == "cpu":
        argv.append("--cpu")
    if a.precision == "fp16":
        argv.append("--fp16")
    elif a.precision == "amp":
        argv.append("--amp")
    parser = options.get_training_parser()
    args = options.parse_args_and_arch(parser, input_args=argv)
    return convert_namespace_to_omegaconf(args), argv


# -- training ----------------------------------------------------------------------------------------

def bench_train(a, model_name, tps):
    import numpy as np
    import torch
    from fairseq import tasks, utils
    from fairseq.data import iterators
    from fairseq.logging import metrics
    from fairseq.trainer import Trainer

    cfg, argv = fairseq_cfg(a, model_name, tps)
    utils.import_user_module(cfg.common)
    metrics.reset()
    np.random.seed(cfg.common.seed)
    utils.set_torch_seed(cfg.common.seed)
    reset_memory(a.device)
    task = tasks.setup_task(cfg.task)
    model = task.build_model(cfg.model)
    criterion = task.build_criterion(cfg.criterion)
    params = sum(p.numel() for p in model.parameters())
    trainer = Trainer(cfg, task, model, criterion)
    epoch_itr = trainer.get_train_iterator(epoch=1, load_dataset=True)
    trainer.begin_epoch(epoch_itr.epoch)
    need = a.warmup + a.steps
    row = {"kind": "train", "model": model_name, "arch": cfg.model._name, "tokens_per_sample": tps,
           "max_tokens": a.max_tokens, "params": params, "warmup_steps": a.warmup, "steps": a.steps,
           "fairseq_args": " ".join(argv[1:])}
    done, skipped, tokens, seqs, t0, wps = 0, 0, 0, [], None, None
    with metrics.aggregate("train"):
        while done < need:
            itr = iterators.GroupedIterator(epoch_itr.next_epoch_itr(shuffle=True), 1)
            if len(itr) == 0:
                raise RuntimeError(f"no training batches at --tokens-per-sample {tps}, --max-tokens {a.max_tokens}")
            for samples in itr:
                if done == a.warmup:
                    sync(a.device)
                    metrics.reset_meters("train_inner")
                    t0 = time.perf_counter()
                with metrics.aggregate("train_inner"):
                    out = trainer.train_step(samples)
                if out is None:
                    skipped += 1  # fp16 overflow (update skipped) or OOM recovery
                if done >= a.warmup:
                    tokens += sum(s["ntokens"] for s in samples if s)
                    seqs.append(sum(s["nsentences"] for s in samples if s))
                done += 1
                if done >= need:
                    break
        sync(a.device)
        secs = time.perf_counter() - t0
        smoothed = metrics.get_smoothed_values("train_inner")
        wps = float(smoothed["wps"]) if "wps" in smoothed else None
    scaler = getattr(trainer.optimizer, "scaler", None)
    row.update({"seconds": secs, "tokens": tokens, "tokens_per_s": tokens / secs, "ms_per_step": 1000 * secs / a.steps,
                "sequences_per_step": (sum(seqs) / len(seqs)) if seqs else None, "fairseq_wps": wps,
                "skipped_steps": skipped, "peak_gib": peak_gib(a.device),
                "loss_scale": getattr(scaler, "loss_scale", None)})
    del trainer, model, criterion, task
    return row


# -- generation --------------------------------------------------------------------------------------

def bench_generate(a, model_name):
    import numpy as np
    import torch
    from fairseq import tasks, utils
    from fairseq.data import data_utils

    P, N = a.gen_context, a.gen_tokens
    cfg, argv = fairseq_cfg(a, model_name, P + N + 8)  # max positions must exceed prompt + new tokens
    utils.import_user_module(cfg.common)
    np.random.seed(1)
    utils.set_torch_seed(1)
    reset_memory(a.device)
    task = tasks.setup_task(cfg.task)
    model = task.build_model(cfg.model)
    if a.precision == "fp16" and a.device == "cuda":
        model = model.half()
    model = model.to(a.device).eval()
    ds = data_utils.load_indexed_dataset(os.path.join(a.data_bin, "train"), task.source_dictionary)
    eos = task.source_dictionary.eos()
    parts, n = [], 0
    for i in range(len(ds)):  # lines of text without their </s>: a forced </s> would end the hypothesis
        parts.append(ds[i][ds[i] != eos])
        n += parts[-1].numel()
        if n > P:
            break
    prompt = torch.cat(parts)
    if prompt.numel() < P:
        prompt = prompt.repeat(P // max(1, prompt.numel()) + 1)
    prompt = prompt[:P]
    # src_tokens as build_dataset_for_inference makes them (a leading </s>, stripped again as the bos by
    # LanguageModelingTask.inference_step, which passes the rest as prefix_tokens)
    src = torch.cat([prompt.new_tensor([eos]), prompt]).unsqueeze(0).to(a.device)
    sample = {"id": torch.tensor([0]), "nsentences": 1, "ntokens": P,
              "net_input": {"src_tokens": src, "src_lengths": torch.tensor([P + 1])}}
    gen_args = argparse.Namespace(beam=1, sampling=False, max_len_a=0, max_len_b=P + N, min_len=P + N,
                                  nbest=1, temperature=1.0, unnormalized=False, lenpen=1, unkpen=0,
                                  no_repeat_ngram_size=0, match_source_len=False, diverse_beam_groups=-1,
                                  diverse_beam_strength=0.5, sampling_topk=-1, sampling_topp=-1.0)
    generator = task.build_generator([model], gen_args)
    stamps = []
    decoder_forward = model.decoder.forward

    def timed_forward(*args, **kwargs):
        sync(a.device)
        stamps.append(time.perf_counter())
        return decoder_forward(*args, **kwargs)

    model.decoder.forward = timed_forward
    row = {"kind": "generate", "model": model_name, "arch": cfg.model._name, "context": P, "new_tokens": N,
           "batch": 1, "beam": 1}
    for rep in range(2):  # the first run warms up (allocator, kernels); the second is measured
        stamps.clear()
        sync(a.device)
        t0 = time.perf_counter()
        hypos = task.inference_step(generator, [model], sample)
        sync(a.device)
        total = time.perf_counter() - t0
        if rep == 0 and not a.gen_warmup:
            break
    out_len = int(hypos[0][0]["tokens"].numel())
    if len(stamps) < P + N + 1:
        raise RuntimeError(f"generation stopped after {len(stamps)} decoder calls, expected {P + N + 1}")
    new_secs = stamps[P + N] - stamps[P]  # steps P .. P+N-1: one new token each, context P+1 .. P+N
    row.update({"tokens_per_s": N / new_secs, "ms_per_token": 1000 * new_secs / N,
                "prefill_tokens_per_s": P / (stamps[P] - stamps[0]), "generate_seconds": total,
                "output_tokens": out_len, "peak_gib": peak_gib(a.device)})
    model.decoder.forward = decoder_forward
    del model, generator, task
    return row


# -- report ------------------------------------------------------------------------------------------

def environment(a):
    import torch
    import fairseq
    import decayfw
    env = {"python": platform.python_version(), "torch": torch.__version__, "cuda": torch.version.cuda,
           "fairseq": getattr(fairseq, "__version__", "?"), "fairseq_path": os.path.dirname(fairseq.__file__),
           "decayfw_native": bool(decayfw.HAS_EXTENSION), "decayfw_cuda": bool(decayfw.BUILT_WITH_CUDA),
           "device": a.device, "precision": a.precision, "smoke": a.smoke, "stubbed_modules": fairseq_offline.STUBBED,
           "weights": "random initialisation (throughput only)", "data": "data/wikitext-103-sample train, "
           "binarised with its 267,744-word dictionary"}
    if a.device == "cuda":
        env["gpu"] = torch.cuda.get_device_name(0)
        env["gpu_memory_gib"] = torch.cuda.get_device_properties(0).total_memory / 2 ** 30
    else:
        env["gpu"] = None
        model = platform.processor() or platform.machine()
        try:
            with open("/proc/cpuinfo") as fh:
                model = next(l.split(":", 1)[1].strip() for l in fh if l.startswith("model name"))
        except (OSError, StopIteration):
            pass
        env["cpu"] = f"{model}, {os.cpu_count()} CPUs, {torch.get_num_threads()} torch threads"
    return env


def fmt(x, digits=0):
    if x is None:
        return "—"
    if isinstance(x, str):
        return x
    return f"{x:,.{digits}f}"


def render(env, rows):
    lines = ["## fairseq end to end: decay vs attention", ""]
    where = env["gpu"] or env.get("cpu")
    lines.append(f"Machine: {where}; torch {env['torch']} (CUDA {env['cuda']}), Python {env['python']}, "
                 f"fairseq {env['fairseq']}; decayfw native ops: {env['decayfw_native']}, CUDA kernels: "
                 f"{env['decayfw_cuda']}; precision {env['precision']}; {env['weights']}; data: {env['data']}."
                 + (" SMOKE MODE: tiny models, not the wiki103 arch." if env["smoke"] else "")
                 + (f" Import stubs for absent, unused modules: {', '.join(env['stubbed_modules'])}."
                    if env["stubbed_modules"] else ""))
    if env["device"] == "cuda" and not env["decayfw_cuda"]:
        lines.append("")
        lines.append("**WARNING: decayfw's CUDA kernels are not loaded — the decay rows ran the pure-PyTorch "
                     "reference and do not measure this project's kernels.**")
    train = [r for r in rows if r["kind"] == "train"]
    if train:
        lines += ["", "### Training (fairseq Trainer.train_step: forward, backward, NAG step)", "",
                  "| arch | params | tokens-per-sample | batch (seqs × tokens) | steps | tokens/s | fairseq wps | "
                  "ms/step | peak memory GiB | decay / attention |", "|---|---:|---:|---|---:|---:|---:|---:|---:|---:|"]
        base = {r["tokens_per_sample"]: r for r in train if r["model"] == ATTENTION and "tokens_per_s" in r}
        for r in train:
            if "error" in r:
                lines.append(f"| {r['arch']} | — | {r['tokens_per_sample']} | max-tokens {r['max_tokens']} | — | "
                             f"{r['error']} | — | — | — | — |")
                continue
            ratio = "—"
            if r["model"] == DECAY and r["tokens_per_sample"] in base:
                ratio = f"{r['tokens_per_s'] / base[r['tokens_per_sample']]['tokens_per_s']:.2f}×"
            batch = f"{r['sequences_per_step']:g} × {r['tokens_per_sample']}"
            skipped = f" ({r['skipped_steps']} skipped)" if r["skipped_steps"] else ""
            lines.append(f"| {r['arch']} | {r['params'] / 1e6:.1f}M | {r['tokens_per_sample']} | {batch} | "
                         f"{r['steps']}{skipped} | "
                         f"{fmt(r['tokens_per_s'])} | {fmt(r['fairseq_wps'])} | {fmt(r['ms_per_step'], 1)} | "
                         f"{fmt(r['peak_gib'], 2)} | {ratio} |")
    gen = [r for r in rows if r["kind"] == "generate"]
    if gen:
        lines += ["", "### Generation (SequenceGenerator, greedy, batch 1: prompt forced token by token, then new "
                      "tokens)", "",
                  "| arch | context | new tokens | tokens/s (new) | ms/token | prompt tokens/s (forced) | "
                  "peak memory GiB | decay / attention |", "|---|---:|---:|---:|---:|---:|---:|---:|"]
        base = next((r for r in gen if r["model"] == ATTENTION and "tokens_per_s" in r), None)
        for r in gen:
            if "error" in r:
                lines.append(f"| {r['arch']} | {r['context']} | {r['new_tokens']} | {r['error']} | — | — | — | — |")
                continue
            ratio = f"{r['tokens_per_s'] / base['tokens_per_s']:.2f}×" if r["model"] == DECAY and base else "—"
            lines.append(f"| {r['arch']} | {r['context']} | {r['new_tokens']} | {fmt(r['tokens_per_s'], 1)} | "
                         f"{fmt(r['ms_per_token'], 2)} | {fmt(r['prefill_tokens_per_s'], 1)} | "
                         f"{fmt(r['peak_gib'], 2)} | {ratio} |")
    return "\n".join(lines)


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--device", choices=["cuda", "cpu"], default="cuda")
    p.add_argument("--smoke", action="store_true", help="tiny models and sizes (a CPU test of the whole path)")
    p.add_argument("--models", nargs="+", choices=[ATTENTION, DECAY], default=[ATTENTION, DECAY])
    p.add_argument("--tokens-per-sample", type=int, nargs="+", default=None, help="default 512 3072 (smoke: 64 128)")
    p.add_argument("--max-tokens", type=int, default=None,
                   help="tokens per batch, the same for every run (default: the largest --tokens-per-sample)")
    p.add_argument("--warmup", type=int, default=None, help="untimed steps first (default 3; smoke 1)")
    p.add_argument("--steps", type=int, default=None, help="timed steps (default 10; smoke 4)")
    p.add_argument("--gen-context", type=int, default=None, help="prompt tokens (default 3072; smoke 96; 0: skip)")
    p.add_argument("--gen-tokens", type=int, default=None, help="new tokens timed (default 64; smoke 16)")
    p.add_argument("--gen-warmup", type=int, default=None, help="1: run generation twice, time the second "
                                                                 "(default 0: the prompt's steps warm it up)")
    p.add_argument("--precision", choices=["fp16", "amp", "fp32"], default=None, help="default fp16 (CPU: fp32)")
    p.add_argument("--skip-train", action="store_true")
    p.add_argument("--num-workers", type=int, default=None, help="fairseq --num-workers (default 1; smoke 0)")
    p.add_argument("--work", default=os.path.join(ROOT, "runs", "bench_fairseq"))
    p.add_argument("--data-bin", default=None, help="binarised data (default: WORK/data-bin[-smoke], made if absent)")
    p.add_argument("--json", default=None, help="write the environment and every row as JSON")
    p.add_argument("--md", default=None, help="also write the Markdown tables to this file (after each run)")
    p.add_argument("--time-budget", type=float, default=0,
                   help="seconds; configurations not started within it are reported as skipped (0: no limit)")
    p.add_argument("--verbose", action="store_true", help="fairseq's INFO logging")
    a = p.parse_args(argv)
    smoke = a.smoke
    a.tokens_per_sample = a.tokens_per_sample or ([64, 128] if smoke else [512, 3072])
    a.max_tokens = a.max_tokens or max(a.tokens_per_sample)
    a.warmup = (1 if smoke else 3) if a.warmup is None else a.warmup
    a.steps = (4 if smoke else 10) if a.steps is None else a.steps
    a.gen_context = (96 if smoke else 3072) if a.gen_context is None else a.gen_context
    a.gen_tokens = (16 if smoke else 64) if a.gen_tokens is None else a.gen_tokens
    a.gen_warmup = 0 if a.gen_warmup is None else a.gen_warmup
    a.precision = a.precision or ("fp16" if a.device == "cuda" else "fp32")
    a.num_workers = (0 if smoke else 1) if a.num_workers is None else a.num_workers
    if a.device == "cpu" and a.precision != "fp32":
        p.error("on the CPU only --precision fp32 (fairseq's --fp16 needs CUDA)")
    if a.steps < 1:
        p.error("--steps must be >= 1")
    if max(a.tokens_per_sample) > a.max_tokens:
        p.error("--max-tokens must hold one sequence of the largest --tokens-per-sample")
    os.makedirs(a.work, exist_ok=True)
    a.data_bin = a.data_bin or os.path.join(a.work, "data-bin-smoke" if smoke else "data-bin")
    logging.basicConfig(level=logging.INFO if a.verbose else logging.WARNING, stream=sys.stderr,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")

    import torch
    if a.device == "cuda" and not torch.cuda.is_available():
        raise SystemExit("bench_fairseq_gpu: CUDA is not available (use --device cpu --smoke on a CPU)")
    t_start = time.perf_counter()
    binarise(a.data_bin, smoke, workers=max(1, min(8, (os.cpu_count() or 1) - 1)))
    env = environment(a)
    rows = []

    def flush():
        if a.json:
            with open(a.json, "w") as fh:
                json.dump({"environment": env, "rows": rows, "seconds": time.perf_counter() - t_start}, fh, indent=1)
        if a.md:
            with open(a.md, "w") as fh:
                fh.write(render(env, rows) + "\n")

    flush()
    plan = [] if a.skip_train else [("train", m, t) for t in a.tokens_per_sample for m in a.models]
    if a.gen_context > 0:
        plan += [("generate", m, a.gen_context) for m in a.models]
    for kind, m, size in plan:
        t0 = time.perf_counter()
        arch = (SMOKE_ARCHS if smoke else FULL_ARCHS)[m][1]
        sizes = ({"tokens_per_sample": size, "max_tokens": a.max_tokens} if kind == "train"
                 else {"context": size, "new_tokens": a.gen_tokens})
        if a.time_budget and t0 - t_start > a.time_budget:
            rows.append({"kind": kind, "model": m, "arch": arch, "error": "skipped (time budget)", **sizes})
            log(f"{kind} {m} {size}: skipped, {t0 - t_start:.0f} s > --time-budget {a.time_budget:g}")
            flush()
            continue
        try:
            row = bench_train(a, m, size) if kind == "train" else bench_generate(a, m)
        except Exception as exc:  # one failing configuration (e.g. out of memory) must not lose the others
            if not is_oom(exc) and a.device == "cpu":
                raise
            row = {"kind": kind, "model": m, "arch": arch, **sizes,
                   "error": "OOM" if is_oom(exc) else f"error: {type(exc).__name__}",
                   "message": traceback.format_exc()[-4000:], "peak_gib": peak_gib(a.device)}
            log(f"{kind} {m} {size}: {row['error']}:\n{row['message']}")
        row["wall_seconds"] = time.perf_counter() - t0
        rows.append(row)
        log(f"{kind} {m} {size}: " + ", ".join(f"{k}={v:.4g}" if isinstance(v, float) else f"{k}={v}"
                                               for k, v in row.items() if k in ("tokens_per_s", "peak_gib",
                                                                                "wall_seconds", "error")))
        flush()
        reset_memory(a.device)
    print(render(env, rows))
    flush()
    return 0 if rows and all("error" not in r for r in rows) else 1


if __name__ == "__main__":
    sys.exit(main())
