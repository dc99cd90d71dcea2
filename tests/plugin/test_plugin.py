"""The fairseq plugin with real, pip-installed fairseq on CPU: train an attention base, swap it into
decay fast weights and fine-tune, evaluate (context 0, a window, streaming), generate (beam, sampling,
interactive, hub), incremental decoding, beam reordering, strict and legacy loading, resume,
distributed training and bad flags."""
import argparse
import math
import os
import re
import sys

import pytest
import torch

from fairseq_helpers import PLUGIN, ROOT, TINY, TRAIN, make_dummy_data, preprocess, run, train_base, train_decay

sys.path.insert(0, os.path.join(ROOT, "plugin"))

import decayfw_fairseq  # noqa: E402,F401  (registers decay_transformer_lm)
from decayfw_fairseq.modules import FairseqDecayFastWeights, carry_state  # noqa: E402
from fairseq import checkpoint_utils  # noqa: E402


@pytest.fixture(scope="module")
def work(tmp_path_factory):
    d = str(tmp_path_factory.mktemp("fairseq"))
    make_dummy_data(d)
    data = preprocess(d)
    train_base(data, f"{d}/base")
    r = train_decay(data, f"{d}/decay", base=f"{d}/base/checkpoint_last.pt")
    log = r.stdout + r.stderr
    return {"dir": d, "data": data, "base": f"{d}/base/checkpoint_last.pt",
            "decay": f"{d}/decay/checkpoint_last.pt", "decay_log": log}


def load(path, data):
    models, cfg, task = checkpoint_utils.load_model_ensemble_and_task([path], arg_overrides={"data": data})
    return models[0].eval(), task


def perplexity(output: str) -> float:
    m = re.findall(r"Perplexity: ([0-9.]+)", output)
    assert m, output[-2000:]
    return float(m[-1])


# -- swap-then-finetune ----------------------------------------------------------------------------

def test_swap_fills_gates_and_rescales_values_from_the_base(work):
    base, _ = load(work["base"], work["data"])
    decay, _ = load(work["decay"], work["data"])
    # the decay checkpoint has its own gate parameters and the base's layer norms/FFN shapes
    sd_decay, sd_base = decay.state_dict(), base.state_dict()
    assert "decoder.layers.0.self_attn.gate_z.bias" in sd_decay
    assert "decoder.layers.0.self_attn.gate_z.bias" not in sd_base
    assert set(sd_base) <= set(sd_decay)
    # and loading the base into a fresh decay model fills exactly the gates, rescaling W_v
    fresh = decay.__class__.build_model(decay.decoder.args, _task_for(work)).eval()
    state = checkpoint_utils.load_checkpoint_to_cpu(work["base"])
    base_sd = {k: v.clone() for k, v in state["model"].items()}
    fresh.load_state_dict(state["model"], strict=True, model_cfg=None)
    layer = fresh.decoder.layers[0].self_attn
    scale = 1 - torch.sigmoid(layer.gate_z.bias)
    assert torch.allclose(layer.v_proj.weight, base_sd["decoder.layers.0.self_attn.v_proj.weight"] * scale[:, None])
    assert torch.allclose(layer.v_proj.bias, base_sd["decoder.layers.0.self_attn.v_proj.bias"] * scale)
    assert torch.equal(layer.q_proj.weight, base_sd["decoder.layers.0.self_attn.q_proj.weight"])
    assert torch.equal(fresh.decoder.layers[1].fc1.weight, base_sd["decoder.layers.1.fc1.weight"])
    u = torch.sigmoid(layer.gate_f.bias.view(4, -1))
    assert (u >= 1 / 8 - 1e-6).all() and (u <= 1 - 1 / 8 + 1e-6).all()  # UGI over M = 8


def _task_for(work):
    from fairseq import tasks
    from fairseq.dataclass.utils import convert_namespace_to_omegaconf
    from fairseq import options
    parser = options.get_training_parser()
    args = options.parse_args_and_arch(parser, [work["data"], "--user-dir", PLUGIN, "--arch",
                                                 "decay_transformer_lm_tiny", *TINY, *TRAIN])
    return tasks.setup_task(convert_namespace_to_omegaconf(args).task)


def test_finetuning_lowers_the_loss_and_restart_resumes(work):
    # the fine-tuning log starts from the base's weights and its loss goes down
    losses = [float(x) for x in re.findall(r"train_inner \|.*?loss=([0-9.]+)", work["decay_log"])]
    assert len(losses) >= 2 and losses[-1] < losses[0], losses
    # the same command again resumes from checkpoint_last.pt (ignores --finetune-from-model)
    r = train_decay(work["data"], os.path.join(work["dir"], "decay"), base=work["base"], updates=45)
    out = r.stdout + r.stderr
    assert re.search(r"Loaded checkpoint .*decay/checkpoint_last\.pt \(epoch \d+ @ 40 updates\)", out), out[-3000:]
    assert re.search(r"num_updates[ =]45", out), out[-2000:]


# -- evaluation --------------------------------------------------------------------------------------

def test_eval_lm_context_windows_and_streaming(work):
    common = [work["data"], "--user-dir", PLUGIN, "--path", work["decay"], "--tokens-per-sample", "64", "--cpu",
              "--num-workers", "0", "--no-progress-bar"]
    ppl0 = perplexity(run("fairseq-eval-lm", common + ["--context-window", "0"]).stderr)
    ppl48 = perplexity(run("fairseq-eval-lm", common + ["--context-window", "48"]).stderr)
    stream = run("decayfw_fairseq.eval_streaming", [work["data"], "--path", work["decay"], "--tokens-per-sample",
                                                    "64", "--cpu", "--json"]).stdout
    import json
    s = json.loads(stream.strip().splitlines()[-1])
    for p in (ppl0, ppl48, s["perplexity"]):
        assert 1 < p < 30, (ppl0, ppl48, s)  # vocabulary of 26 letters + specials: must beat uniform
    assert s["tokens"] > 500
    # streaming gives more context than windows of 64: it must not be worse than context 0
    assert s["perplexity"] <= ppl0 * 1.02


def test_streaming_equals_one_long_pass(work):
    """Carrying the state block to block reproduces one long pass through the whole model. Positions
    restart in every block (as in training), so they are switched off to compare like for like."""
    model, task = load(work["decay"], work["data"])
    model.decoder.embed_positions = None
    from decayfw_fairseq.eval_streaming import evaluate_streaming, load_stream
    stream = load_stream(work["data"], "test", task.source_dictionary)[:201]
    totals = {}
    for block in (7, 50, 200):
        total, n, _ = evaluate_streaming(model, task.target_dictionary, stream, block=block)
        assert n == 200
        totals[block] = total
    assert math.isfinite(totals[200])
    assert abs(totals[7] - totals[200]) < 1e-3 and abs(totals[50] - totals[200]) < 1e-3, totals
    # and the layer mechanism on its own
    layer = next(m for m in model.modules() if isinstance(m, FairseqDecayFastWeights))
    x = torch.randn(30, 2, layer.embed_dim)
    with torch.no_grad():
        full, _ = layer(x, x, x)
        with carry_state(model):
            a, _ = layer(x[:13])
            b, _ = layer(x[13:])
    assert torch.allclose(torch.cat([a, b]), full, atol=1e-5)


def test_growing_positions_equal_fairseq_and_keep_steps_cheap(work):
    """The decay decoder's doubling position table gives fairseq's positions exactly."""
    from fairseq.modules import SinusoidalPositionalEmbedding
    from decayfw_fairseq.modules import GrowingSinusoidalPositionalEmbedding
    model, task = load(work["decay"], work["data"])
    pe = model.decoder.embed_positions
    assert isinstance(pe, GrowingSinusoidalPositionalEmbedding)
    ref = SinusoidalPositionalEmbedding(pe.embedding_dim, pe.padding_idx, init_size=pe.weights.size(0))
    tokens = torch.randint(4, len(task.target_dictionary), (2, 300))
    assert torch.equal(pe(tokens), ref(tokens))
    inc, size = {}, pe.weights.size(0)
    with torch.no_grad():
        for t in range(300):  # past the initial table: it grows by doubling, not by one row a step
            out = pe(tokens[:, :t + 1], incremental_state=inc)
            assert torch.equal(out[:, -1], ref(tokens[:, :t + 1])[:, -1])
    assert pe.weights.size(0) in (size, 2 * size, 4 * size)


# -- generation --------------------------------------------------------------------------------------

def test_generate_beam_and_sampling_and_interactive(work):
    common = [work["data"], "--user-dir", PLUGIN, "--task", "language_modeling", "--path", work["decay"], "--cpu",
              "--num-workers", "0", "--max-len-b", "6", "--gen-subset", "valid", "--sample-break-mode", "eos",
              "--tokens-per-sample", "64", "--batch-size", "16"]
    beam = run("fairseq-generate", common + ["--beam", "3"]).stdout
    assert len(re.findall(r"^H-\d+\t", beam, re.M)) == 40
    sampled = run("fairseq-generate", common + ["--beam", "1", "--sampling", "--sampling-topk", "5",
                                                 "--seed", "3"]).stdout
    assert len(re.findall(r"^H-\d+\t", sampled, re.M)) == 40
    inter = run("fairseq-interactive", [work["data"], "--user-dir", PLUGIN, "--task", "language_modeling", "--path",
                                        work["decay"], "--cpu", "--beam", "2", "--max-len-b", "5"],
                stdin="a b c d\ne f g\n").stdout
    hyps = re.findall(r"^H-(\d+)\t\S+\t(.*)$", inter, re.M)
    assert len(hyps) == 2 and hyps[0][1].startswith("a b c d")


def test_hub_sample(work):
    from decayfw_fairseq.models.decay_transformer_lm import DecayTransformerLanguageModel
    lm = DecayTransformerLanguageModel.from_pretrained(os.path.dirname(work["decay"]), "checkpoint_last.pt",
                                                       data_name_or_path=work["data"], user_dir=PLUGIN)
    lm.eval()
    greedy = lm.sample("a b c", beam=1, max_len_b=6)
    assert greedy.startswith("a b c") and len(greedy.split()) > 3
    torch.manual_seed(0)
    s1 = lm.sample("a b c", beam=1, sampling=True, sampling_topk=5, max_len_b=6)
    torch.manual_seed(0)
    s2 = lm.sample("a b c", beam=1, sampling=True, sampling_topk=5, max_len_b=6)
    assert s1 == s2


# -- incremental decoding ----------------------------------------------------------------------------

def test_incremental_logits_equal_full_sequence(work):
    model, task = load(work["decay"], work["data"])
    torch.manual_seed(0)
    tokens = torch.randint(4, len(task.target_dictionary), (3, 25))
    with torch.no_grad():
        full, _ = model(tokens)
        inc, steps = {}, []
        for t in range(tokens.shape[1]):
            out, _ = model.decoder(tokens[:, :t + 1], incremental_state=inc)
            steps.append(out[:, -1])
    assert torch.allclose(torch.stack(steps, 1), full, atol=1e-5)
    state = next(iter(v for k, v in inc.items() if k.endswith("attn_state")))["fw_state"]
    assert state.dtype == torch.float32 and state.shape == (3, 4, 8, 8)  # O(1): [B, H, D, M]


def test_beam_reorder_with_shrinking_batch_equals_recomputation(work):
    model, task = load(work["decay"], work["data"])
    torch.manual_seed(1)
    tokens = torch.randint(4, len(task.target_dictionary), (4, 16))
    order = torch.tensor([3, 1])  # two hypotheses survive, in a new order
    with torch.no_grad():
        inc = {}
        for t in range(8):
            model.decoder(tokens[:, :t + 1], incremental_state=inc)
        model.decoder.reorder_incremental_state_scripting(inc, order)
        kept = tokens[order]
        for t in range(8, 16):
            out, _ = model.decoder(kept[:, :t + 1], incremental_state=inc)
        full, _ = model(kept)
    assert torch.allclose(out[:, -1], full[:, -1], atol=1e-5)


# -- loading -----------------------------------------------------------------------------------------

def test_strict_loading_fails_loudly_on_wrong_dims(work, tmp_path):
    wrong = [a if a != "32" else "48" for a in TINY]  # 48-dim model vs 32-dim base
    r = run("fairseq-train", [work["data"], "--user-dir", PLUGIN, "--arch", "decay_transformer_lm_tiny", *wrong,
                              *TRAIN, "--max-update", "1", "--save-dir", str(tmp_path / "x"),
                              "--finetune-from-model", work["base"]], check=False)
    assert r.returncode != 0
    assert "Cannot load model parameters from checkpoint" in r.stderr and "size mismatch" in r.stderr


def test_legacy_format_base_with_args_namespace_and_in_proj_loads(work, tmp_path):
    from make_checkpoints import write_legacy
    path = tmp_path / "legacy.pt"
    write_legacy(work["base"], work["data"], str(path))
    with open(path, "rb") as fh:
        assert fh.read(2) != b"PK"  # really the pre-1.6 format, not a zip archive
    legacy = torch.load(path, weights_only=False)
    assert isinstance(legacy["args"], argparse.Namespace) and legacy.get("cfg") is None
    assert "decoder.layers.0.self_attn.in_proj_weight" in legacy["model"]
    r = train_decay(work["data"], str(tmp_path / "from_legacy"), base=str(path), updates=2)
    assert "in_proj" not in r.stderr
    assert os.path.exists(tmp_path / "from_legacy" / "checkpoint_last.pt")


@pytest.mark.skipif(not hasattr(torch.serialization, "add_safe_globals"),
                    reason="torch < 2.4: torch.load unpickles everything by default")
def test_fairseq_checkpoints_load_where_torch_load_is_weights_only(work, tmp_path):
    """torch >= 2.6's torch.load (which fairseq's loader calls) defaults to weights_only=True. The plugin
    allow-lists what fairseq checkpoints hold besides tensors: the args Namespace of pre-0.10 files, NumPy
    scalars in old training state, the DictConfig that data-parallel training broadcasts between ranks.
    Any other class is still refused."""
    import fractions
    import pickle

    import numpy as np

    from make_checkpoints import write_legacy
    write_legacy(work["base"], work["data"], str(tmp_path / "legacy.pt"))
    assert isinstance(torch.load(tmp_path / "legacy.pt", weights_only=True)["args"], argparse.Namespace)
    torch.save({"val_loss": np.float64(2.5), "num_updates": np.int64(40)}, tmp_path / "numpy.pt")
    assert torch.load(tmp_path / "numpy.pt", weights_only=True) == {"val_loss": 2.5, "num_updates": 40}
    # what rank 0 of a data-parallel run broadcasts: the loaded state, its cfg an omegaconf DictConfig
    from fairseq import checkpoint_utils
    state = checkpoint_utils.load_checkpoint_to_cpu(work["base"])
    torch.save(state, tmp_path / "broadcast.pt")
    assert torch.load(tmp_path / "broadcast.pt", weights_only=True)["cfg"] == state["cfg"]
    torch.save({"ratio": fractions.Fraction(1, 3)}, tmp_path / "other.pt")
    with pytest.raises(pickle.UnpicklingError, match="fractions.Fraction"):
        torch.load(tmp_path / "other.pt", weights_only=True)


def test_make_checkpoints_script_writes_every_file(tmp_path):
    import subprocess
    from fairseq_helpers import ENV
    script = os.path.join(ROOT, "tests", "plugin", "make_checkpoints.py")
    r = subprocess.run([sys.executable, script, str(tmp_path)], env=ENV, capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr[-3000:]
    for rel in ("dict.txt", "base/checkpoint_last.pt", "decay/checkpoint_last.pt", "legacy/checkpoint_legacy.pt"):
        assert os.path.getsize(tmp_path / rel) > 0, rel


def test_offline_conversion_then_eval_gives_zero_shot_perplexity(work, tmp_path):
    out = tmp_path / "converted.pt"
    run("decayfw_fairseq.convert_base_checkpoint", [work["base"], str(out), "--data", work["data"]])
    ppl = perplexity(run("fairseq-eval-lm", [work["data"], "--user-dir", PLUGIN, "--path", str(out),
                                             "--tokens-per-sample", "64", "--cpu", "--num-workers", "0"]).stderr)
    assert math.isfinite(ppl) and ppl > 1


# -- distributed -------------------------------------------------------------------------------------

def test_two_gloo_processes_match_one_process(work, tmp_path):
    """Data parallel over 2 CPU processes (gloo, fairseq's own --distributed-* launch flags) equals
    1 process accumulating the same 2 batches per update (--update-freq 2)."""
    import socket
    import subprocess
    from fairseq_helpers import BIN, ENV
    common = [work["data"], "--user-dir", PLUGIN, "--arch", "decay_transformer_lm_tiny", *TINY, *TRAIN,
              "--max-update", "4", "--log-interval", "1", "--finetune-from-model", work["base"],
              "--ddp-backend", "legacy_ddp", "--max-tokens", "256"]
    one = run("fairseq-train", common + ["--save-dir", str(tmp_path / "one"), "--update-freq", "2"])
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    procs = [subprocess.Popen([os.path.join(BIN, "fairseq-train"), *common, "--save-dir", str(tmp_path / "two"),
                               "--distributed-world-size", "2", "--distributed-rank", str(rank),
                               "--distributed-init-method", f"tcp://127.0.0.1:{port}", "--distributed-no-spawn",
                               "--distributed-backend", "gloo"],
                              env=ENV, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
             for rank in (0, 1)]
    outs = [p.communicate(timeout=300)[0] for p in procs]
    assert all(p.returncode == 0 for p in procs), outs[0][-3000:] + outs[1][-3000:]
    losses = lambda s: [float(x) for x in re.findall(r"train_inner \|.*?loss=([0-9.]+)", s)]
    l1, l2 = losses(one.stdout + one.stderr), losses(outs[0])
    assert "distributed init (rank 1)" in outs[0] + outs[1]
    assert len(l1) == len(l2) == 4, (l1, l2)
    assert all(abs(a - b) < 2e-3 for a, b in zip(l1, l2)), (l1, l2)


# -- bad flags ---------------------------------------------------------------------------------------

@pytest.mark.parametrize("flags,message", [
    (["--fw-key-dim", "-3"], "--fw-key-dim: .*must be >= 0"),
    (["--fw-feature-map", "gaussian"], "--fw-feature-map: invalid choice"),
    (["--fw-key-dim", "4", "--fw-feature-map", "none"], "needs --fw-key-dim equal to the head dimension"),
])
def test_bad_flags_give_clear_errors(work, tmp_path, flags, message):
    r = run("fairseq-train", [work["data"], "--user-dir", PLUGIN, "--arch", "decay_transformer_lm_tiny", *TINY,
                              *TRAIN, "--max-update", "1", "--save-dir", str(tmp_path / "bad"), *flags], check=False)
    assert r.returncode != 0
    assert re.search(message, r.stderr), r.stderr[-2000:]


def test_state_stays_fp32_when_the_model_runs_in_bf16(work):
    """fairseq's --bf16 casts the model's parameters; the recurrent state must stay fp32."""
    model, task = load(work["decay"], work["data"])
    model = model.to(torch.bfloat16)
    torch.manual_seed(2)
    tokens = torch.randint(4, len(task.target_dictionary), (2, 12))
    with torch.no_grad():
        full, _ = model(tokens)
        inc = {}
        for t in range(tokens.shape[1]):
            out, _ = model.decoder(tokens[:, :t + 1], incremental_state=inc)
    state = next(iter(v for k, v in inc.items() if k.endswith("attn_state")))["fw_state"]
    assert full.dtype == torch.bfloat16 and torch.isfinite(full.float()).all()
    assert state.dtype == torch.float32
    assert torch.allclose(out[:, -1].float(), full[:, -1].float(), atol=5e-2, rtol=5e-2)


def test_recompute_chunk_states_flag_reaches_every_layer(work, tmp_path):
    """--fw-recompute-chunk-states (a training-memory switch; the weights are the same) reaches each
    layer from the command line, and can be set when loading a checkpoint saved without it."""
    def layer_settings(path, overrides):
        models, _, _ = checkpoint_utils.load_model_ensemble_and_task([path], arg_overrides=overrides)
        return [m.save_chunk_states for m in models[0].modules() if isinstance(m, FairseqDecayFastWeights)]

    default = layer_settings(work["decay"], {"data": work["data"]})
    recompute = layer_settings(work["decay"], {"data": work["data"], "fw_recompute_chunk_states": True})
    assert default and all(default)
    assert len(recompute) == len(default) and not any(recompute)
    run("fairseq-train", [work["data"], "--user-dir", PLUGIN, "--arch", "decay_transformer_lm_tiny", *TINY, *TRAIN,
                          "--max-update", "1", "--save-dir", str(tmp_path / "r"), "--fw-recompute-chunk-states"])
    trained = layer_settings(str(tmp_path / "r" / "checkpoint_last.pt"), {"data": work["data"]})
    assert len(trained) == len(default) and not any(trained)
