"""The paper's other update rules (add, gated, delta), the normalisations and local attention.

Ops: native CPU op == readable reference (fp64 forward and every gradient), step == sequence,
segments == one pass, 16-bit close to fp64, clear errors. Layers: every valid configuration of
rule × feature map × normalisation runs whole-sequence, step-by-step and in segments alike;
attention normalisation equals the paper's explicit normaliser recurrences; invalid combinations
are refused with a message naming the options.
"""
import pytest
import torch

from decayfw import _loader, reference as R, rules
from decayfw.nn import FastWeights, SoftmaxAttention, check_rule_options

pytestmark = pytest.mark.skipif(not _loader.HAS_EXTENSION, reason="native extension not built")

F64 = torch.float64
RULE_OPS = {
    "add": (rules.add_fast_weights, rules.add_step, lambda q, k, v, g, s: R.add_reference(q, k, v, s), False),
    "gated": (rules.gated_fast_weights, rules.gated_step, R.gated_reference, True),
    "delta": (rules.delta_fast_weights, rules.delta_step, R.delta_reference, True),
}


def make(B=2, T=29, H=3, D=5, M=4, dtype=F64, seed=0, positive_keys=False):
    g = torch.Generator().manual_seed(seed)
    q = torch.randn(B, T, H, M, generator=g, dtype=F64) / 2
    k = torch.randn(B, T, H, M, generator=g, dtype=F64)
    k = torch.softmax(k, -1) if positive_keys else k / 2
    v = torch.randn(B, T, H, D, generator=g, dtype=F64)
    logit = torch.randn(B, T, H, generator=g, dtype=F64)
    s0 = torch.randn(B, H, D, M, generator=g, dtype=F64)
    return [t.to(dtype) for t in (q, k, v, logit)] + [s0 if dtype == F64 else s0.float()]


def call(rule, q, k, v, g, s0, **kw):
    fn, _, _, gated = RULE_OPS[rule]
    return fn(q, k, v, g, s0, **kw) if gated else fn(q, k, v, s0, **kw)


@pytest.mark.parametrize("rule", RULE_OPS)
def test_op_equals_reference_fp64(rule):
    q, k, v, g, s0 = make(T=150, positive_keys=rule == "delta")  # 150 > the delta backward's chunk of 64
    y, s = call(rule, q, k, v, g, s0, output_final_state=True)
    yr, sr = RULE_OPS[rule][2](q, k, v, g, s0)
    assert torch.allclose(y, yr, atol=1e-12) and torch.allclose(s, sr, atol=1e-12)
    # every gradient, through a loss on both outputs
    ins = [t.clone().requires_grad_() for t in (q, k, v, g, s0)]
    ins_ref = [t.clone().requires_grad_() for t in (q, k, v, g, s0)]
    wy, ws = torch.randn_like(y), torch.randn_like(s)
    y, s = call(rule, *ins, output_final_state=True)
    ((y * wy).sum() + (s * ws).sum()).backward()
    yr, sr = RULE_OPS[rule][2](*ins_ref)
    ((yr * wy).sum() + (sr * ws).sum()).backward()
    for name, a, b in zip("qkvgs", ins, ins_ref):
        if b.grad is None:  # the additive rule has no gate
            assert a.grad is None, name
            continue
        assert torch.allclose(a.grad, b.grad, atol=1e-11), (rule, name, (a.grad - b.grad).abs().max())


@pytest.mark.parametrize("rule", RULE_OPS)
def test_gradcheck(rule):
    q, k, v, g, s0 = make(B=1, T=7, H=2, D=3, M=2, positive_keys=rule == "delta")
    ins = [t.clone().requires_grad_() for t in (q, k, v, g, s0)]
    if not RULE_OPS[rule][3]:
        ins[3].requires_grad_(False)
    assert torch.autograd.gradcheck(lambda *a: tuple(call(rule, *a, output_final_state=True)), ins)


@pytest.mark.parametrize("rule", RULE_OPS)
def test_steps_and_segments_equal_one_pass(rule):
    q, k, v, g, s0 = make(T=23, positive_keys=rule == "delta")
    y, s = call(rule, q, k, v, g, s0, output_final_state=True)
    state, ys = s0.clone(), []
    step = RULE_OPS[rule][1]
    for t in range(q.shape[1]):
        extra = (g[:, t],) if RULE_OPS[rule][3] else ()
        ys.append(step(q[:, t], k[:, t], v[:, t], *extra, state))
    assert torch.allclose(torch.stack(ys, 1), y, atol=1e-12) and torch.allclose(state, s, atol=1e-12)
    cut = 9
    y1, s1 = call(rule, q[:, :cut], k[:, :cut], v[:, :cut], g[:, :cut], s0, output_final_state=True)
    y2, s2 = call(rule, q[:, cut:], k[:, cut:], v[:, cut:], g[:, cut:], s1, output_final_state=True)
    assert torch.allclose(torch.cat([y1, y2], 1), y, atol=1e-12) and torch.allclose(s2, s, atol=1e-12)


@pytest.mark.parametrize("rule", RULE_OPS)
@pytest.mark.parametrize("dtype,tol", [(torch.float32, 1e-5), (torch.bfloat16, 3e-2)])
def test_low_precision_close_to_fp64(rule, dtype, tol):
    ref = make(T=40, positive_keys=rule == "delta")
    low = make(T=40, dtype=dtype, positive_keys=rule == "delta")
    y = call(rule, *low)
    yr = call(rule, *ref)
    assert y.dtype == dtype
    assert (y.double() - yr).abs().max() <= tol * (1 + yr.abs().max())


@pytest.mark.parametrize("rule", ["add", "gated"])
def test_gpu_path_through_the_decay_op_equals_the_native_op(rule, monkeypatch):
    """On a GPU, add and gated run through the decay op with unit gates; check that path on CPU."""
    q, k, v, g, s0 = make(T=31)
    ins = [t.clone().requires_grad_() for t in (q, k, v, g, s0)]
    y, s = call(rule, *ins, output_final_state=True)
    (y.sum() + s.sum()).backward()
    monkeypatch.setattr(rules, "_native", lambda op, device: False)
    ins2 = [t.clone().requires_grad_() for t in (q, k, v, g, s0)]
    y2, s2 = call(rule, *ins2, output_final_state=True)
    (y2.sum() + s2.sum()).backward()
    assert torch.allclose(y, y2, atol=1e-12) and torch.allclose(s, s2, atol=1e-12)
    for a, b in zip(ins, ins2):
        if a.grad is not None:
            assert torch.allclose(a.grad, b.grad, atol=1e-10)


def test_gpu_path_of_delta_is_the_chunked_reference(monkeypatch):
    q, k, v, g, s0 = make(T=150, positive_keys=True)
    y, s = rules.delta_fast_weights(q, k, v, g, s0, output_final_state=True)
    monkeypatch.setattr(rules, "_native", lambda op, device: False)
    y2, s2 = rules.delta_fast_weights(q, k, v, g, s0, output_final_state=True)
    assert torch.allclose(y, y2, atol=1e-12) and torch.allclose(s, s2, atol=1e-12)


def test_bad_inputs_are_named():
    q, k, v, g, s0 = make()
    with pytest.raises(ValueError, match=r"argument 'g' must have shape \[B, T, H\]"):
        rules.gated_fast_weights(q, k, v, g[..., None])
    with pytest.raises(ValueError, match="argument 'beta' has dtype"):
        rules.delta_fast_weights(q, k, v, g.float())
    with pytest.raises(ValueError, match="argument 'v' must have shape"):
        rules.add_fast_weights(q, k, v[:, :3])
    # the C++ ops check too (reached directly through the dispatcher)
    with pytest.raises(RuntimeError, match="decayfw.gated_fwd: argument 'g' must have shape"):
        torch.ops.decayfw.gated_fwd(q, k, v, g[:, :, :1], None)
    with pytest.raises(RuntimeError, match="decayfw.delta_step: argument 'state' must have shape"):
        torch.ops.decayfw.delta_step(q[:, 0], k[:, 0], v[:, 0], g[:, 0], s0[:, :, :2].contiguous())


# -- layers ---------------------------------------------------------------------------------------

VALID = [(r, fm, n) for r in ("decay", "gated", "add", "delta") for fm in ("none", "linear", "relu")
         for n in ("none", "attention", "sum")]


def is_valid(rule, fm, norm):
    try:
        check_rule_options(rule, fm, norm, 8, 8)
        return True
    except ValueError:
        return False


@pytest.mark.parametrize("rule,fm,norm", [c for c in VALID if is_valid(*c)])
def test_every_valid_layer_config_forward_steps_segments_padding(rule, fm, norm):
    torch.manual_seed(3)
    layer = FastWeights(32, 4, rule=rule, feature_map=fm, normalization=norm).double()
    x = torch.randn(2, 13, 32, dtype=F64)
    out, state = layer(x)
    assert state.shape == (2, 4, 8 + (norm == "attention"), 8)
    with torch.no_grad():
        st, outs = None, []
        for t in range(13):
            o, st = layer.step(x[:, t], st)
            outs.append(o)
    assert torch.allclose(torch.stack(outs, 1), out, atol=1e-9)
    o1, s1 = layer(x[:, :5])
    o2, s2 = layer(x[:, 5:], s1)
    assert torch.allclose(torch.cat([o1, o2], 1), out, atol=1e-9)
    # padding at the end of the second sequence leaves its state as after its real tokens
    pad = torch.zeros(2, 13, dtype=torch.bool)
    pad[1, 9:] = True
    _, s_pad = layer(x, key_padding_mask=pad)
    _, s_short = layer(x[1:, :9])
    assert torch.allclose(s_pad[1], s_short[0], atol=1e-9)
    out.sum().backward()
    assert all(p.grad is not None for p in layer.parameters())


def test_invalid_combinations_are_refused_with_the_options_named():
    with pytest.raises(ValueError, match="--fw-normalization attention is not defined for the delta rule"):
        check_rule_options("delta", "relu", "attention", 8, 8, "--fw-")
    with pytest.raises(ValueError, match="sum is the delta rule's"):
        check_rule_options("gated", "relu", "sum", 8, 8, "--fw-")
    with pytest.raises(ValueError, match="needs a positive feature map"):
        FastWeights(32, 4, rule="add", feature_map="linear", normalization="attention")
    with pytest.raises(ValueError, match="rule must be one of"):
        FastWeights(32, 4, rule="lstm")
    with pytest.raises(ValueError, match="needs key_dim equal to the head dimension"):
        FastWeights(32, 4, rule="gated", key_dim=4, feature_map="none")


@pytest.mark.parametrize("rule", ["add", "gated", "decay"])
def test_attention_normalisation_is_the_papers_normaliser(rule):
    """The layer's ones-channel normaliser equals the explicit z_t recurrence of Eqs. 3 and 5."""
    torch.manual_seed(4)
    layer = FastWeights(32, 4, rule=rule, key_dim=6, feature_map="relu", normalization="attention").double()
    x = torch.randn(2, 17, 32, dtype=F64)
    out, _ = layer(x)
    q, k, v, gates = layer._inputs(x, False)
    gate = gates[0] if rule == "gated" else gates if rule == "decay" else None
    y = R.normalized_reference(rule, q, k, v, gate, eps=layer.eps)
    assert torch.allclose(layer.out_proj(y.reshape(2, 17, -1)), out, atol=1e-10)


def test_sum_normalisation_and_delta_write_strength_init():
    layer = FastWeights(32, 4, rule="delta", key_dim=6, feature_map="relu", normalization="sum").double()
    x = torch.randn(2, 9, 32, dtype=F64)
    q, k, _, (beta,) = layer._inputs(x, False)
    sums = k.sum(-1)
    live = sums > 0.5  # sums are s / (s + eps): 1 up to eps / s wherever any feature is active
    assert live.float().mean() > 0.9
    assert torch.allclose(sums[live], torch.ones_like(sums[live]), atol=1e-4)
    assert (k >= 0).all() and (q >= 0).all()
    assert abs(torch.sigmoid(layer.gate_beta.bias).mean().item() - 0.0067) < 1e-3


def test_additive_value_scale_of_footnote_4():
    base = torch.nn.MultiheadAttention(32, 4)
    plain = FastWeights(32, 4, rule="add", feature_map="none").double().init_from_attention(base.double())
    assert torch.allclose(plain.v_proj.weight, base.in_proj_weight[64:] / 512)
    relu = FastWeights(32, 4, rule="add", feature_map="relu", normalization="attention").double()
    relu.init_from_attention(base)
    assert torch.allclose(relu.v_proj.weight, base.in_proj_weight[64:])


@pytest.mark.parametrize("window", [1, 4, 32])
def test_local_attention_is_banded_softmax_and_steps_keep_w_minus_1_tokens(window):
    torch.manual_seed(5)
    local = SoftmaxAttention(32, 4, window=window).double()
    x = torch.randn(2, 19, 32, dtype=F64)
    out, (kc, vc) = local(x)
    assert kc.shape[2] == min(19, window - 1)
    # the definition: full attention with an explicit band mask
    q, k, v = (local._heads(p(x), False).transpose(1, 2) for p in (local.q_proj, local.k_proj, local.v_proj))
    i = torch.arange(19)
    band = (i[None, :] <= i[:, None]) & (i[None, :] > i[:, None] - window)
    y = local._attend(q, k, v, band).transpose(1, 2).reshape(2, 19, -1)
    assert torch.allclose(local.out_proj(y), out, atol=1e-10)
    with torch.no_grad():
        st, outs = None, []
        for t in range(19):
            o, st = local.step(x[:, t], st)
            outs.append(o)
            assert st[0].shape[2] <= window - 1
    assert torch.allclose(torch.stack(outs, 1), out, atol=1e-10)
    o1, c1 = local(x[:, :7])
    o2, _ = local(x[:, 7:], c1)
    assert torch.allclose(torch.cat([o1, o2], 1), out, atol=1e-10)


@pytest.mark.parametrize("rule", RULE_OPS)
def test_one_sequence_split_into_row_blocks_equals_reference(rule):
    """B·H = 1 with 2 threads and D = 40: the CPU kernel splits the state's rows over threads (for add;
    gated keeps a head's rows together in the backward, delta always does). T·D·M = 820·40·8 is above
    the size under which an op stays on one thread."""
    threads = torch.get_num_threads()
    torch.set_num_threads(2)
    try:
        q, k, v, g, s0 = make(B=1, T=820, H=1, D=40, M=8, positive_keys=rule == "delta")
        ins = [t.clone().requires_grad_() for t in (q, k, v, g, s0)]
        ref = [t.clone().requires_grad_() for t in (q, k, v, g, s0)]
        y, s = call(rule, *ins, output_final_state=True)
        yr, sr = RULE_OPS[rule][2](*ref)
        assert torch.allclose(y, yr, atol=1e-12) and torch.allclose(s, sr, atol=1e-12)
        (y.square().sum() + s.sum()).backward()
        (yr.square().sum() + sr.sum()).backward()
        for a, b in zip(ins, ref):
            if b.grad is not None:
                assert torch.allclose(a.grad, b.grad, atol=1e-10)
    finally:
        torch.set_num_threads(threads)
