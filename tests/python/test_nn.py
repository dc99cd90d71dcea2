"""decayfw.nn: the paper's layer and the attention baseline share one interface; whole-sequence,
step-by-step and segmented runs agree; padding is inert; initialisation is exactly as documented."""
import math

import pytest
import torch
from torch import nn

import decayfw
from decayfw.nn import DecayFastWeights, SoftmaxAttention, uniform_gate_bias


@pytest.fixture(params=["decay", "decay_m", "attention"])
def layer(request):
    torch.manual_seed(1)
    if request.param == "decay":
        return DecayFastWeights(32, 4).double()
    if request.param == "decay_m":
        return DecayFastWeights(32, 4, key_dim=3, feature_map="relu").double()
    return SoftmaxAttention(32, 4).double()


def test_forward_equals_steps(layer):
    x = torch.randn(2, 11, 32, dtype=torch.float64)
    out, _ = layer(x)
    state, outs = None, []
    with torch.no_grad():
        for t in range(11):
            o, state = layer.step(x[:, t], state)
            outs.append(o)
    assert torch.allclose(torch.stack(outs, 1), out, atol=1e-10)


def test_two_segments_equal_one_pass(layer):
    x = torch.randn(3, 20, 32, dtype=torch.float64)
    out, s = layer(x)
    o1, s1 = layer(x[:, :8])
    o2, s2 = layer(x[:, 8:], s1)
    assert torch.allclose(torch.cat([o1, o2], 1), out, atol=1e-10)


def test_time_first_matches_batch_first():
    torch.manual_seed(2)
    bf = DecayFastWeights(16, 2)
    tf = DecayFastWeights(16, 2, time_first=True)
    tf.load_state_dict(bf.state_dict())
    x = torch.randn(3, 7, 16)
    o_bf, s_bf = bf(x)
    o_tf, s_tf = tf(x.transpose(0, 1))
    assert torch.allclose(o_tf.transpose(0, 1), o_bf, atol=1e-6) and torch.allclose(s_tf, s_bf, atol=1e-6)


def test_padding_does_not_change_the_state():
    torch.manual_seed(3)
    m = DecayFastWeights(16, 2).double()
    x = torch.randn(2, 6, 16, dtype=torch.float64)
    s0 = torch.randn(2, 2, 8, 8, dtype=torch.float64)
    _, s_real = m(x[:, :4], s0)
    padded = torch.cat([x[:, :4], torch.randn(2, 2, 16, dtype=torch.float64) * 100], 1)
    mask = torch.zeros(2, 6, dtype=torch.bool)
    mask[:, 4:] = True
    _, s_pad = m(padded, s0, key_padding_mask=mask)
    # What the pads hold cannot matter at all (same shapes, so the same BLAS blocking: bit for bit)...
    other = torch.cat([x[:, :4], torch.randn(2, 2, 16, dtype=torch.float64) * -7], 1)
    assert torch.equal(m(other, s0, key_padding_mask=mask)[1], s_pad)
    # ...and the state equals the unpadded run's, up to the projections' rounding: a BLAS may block
    # a [2, 6] GEMM differently from a [2, 4] one (pip's torch 2.x does; the last bit moves).
    assert torch.allclose(s_pad, s_real, rtol=0, atol=1e-13)
    # left padding too: the state after pads + tokens equals the state after the tokens alone
    left = torch.cat([torch.randn(2, 2, 16, dtype=torch.float64), x[:, :4]], 1)
    lmask = torch.zeros(2, 6, dtype=torch.bool)
    lmask[:, :2] = True
    _, s_left = m(left, s0, key_padding_mask=lmask)
    assert torch.allclose(s_left, s_real, atol=1e-12)


def test_ugi_biases_lie_in_the_stated_range():
    torch.manual_seed(4)
    m = DecayFastWeights(64, 2, key_dim=16, feature_map="linear")
    for bias, d in ((m.gate_z.bias, m.value_dim), (m.gate_f.bias, m.key_dim)):
        u = torch.sigmoid(bias.double())
        assert u.min() >= 1 / d - 1e-6 and u.max() <= 1 - 1 / d + 1e-6
        assert u.std() > 0.1  # spread out, not constant
    assert torch.equal(uniform_gate_bias(2), torch.zeros(2))
    b = uniform_gate_bias(1000, torch.Generator().manual_seed(0)).double()
    assert abs(torch.sigmoid(b).mean().item() - 0.5) < 0.05


def test_init_from_attention_copies_projections_and_rescales_values_exactly():
    torch.manual_seed(5)
    q, k, v, o = (nn.Linear(32, 32) for _ in range(4))
    m = DecayFastWeights(32, 4).init_from_attention(q, k, v, o)
    assert torch.equal(m.q_proj.weight, q.weight) and torch.equal(m.q_proj.bias, q.bias)
    assert torch.equal(m.k_proj.weight, k.weight) and torch.equal(m.out_proj.weight, o.weight)
    scale = 1 - torch.sigmoid(m.gate_z.bias.detach())
    assert torch.equal(m.v_proj.weight, v.weight * scale[:, None])
    assert torch.equal(m.v_proj.bias, v.bias * scale)
    assert m.phi_weight is None  # m == head_dim: identity feature map


def test_init_from_multihead_attention_splits_in_proj():
    torch.manual_seed(6)
    mha = nn.MultiheadAttention(32, 4)
    m = DecayFastWeights(32, 4).init_from_attention(mha)
    assert torch.equal(m.q_proj.weight, mha.in_proj_weight[:32])
    assert torch.equal(m.k_proj.weight, mha.in_proj_weight[32:64])
    scale = 1 - torch.sigmoid(m.gate_z.bias.detach())
    assert torch.equal(m.v_proj.weight, mha.in_proj_weight[64:] * scale[:, None])
    a = SoftmaxAttention(32, 4).init_from_attention(mha)
    x = torch.randn(5, 2, 32)
    causal = torch.ones(5, 5, dtype=torch.bool).triu(1)
    ref, _ = mha(x, x, x, attn_mask=causal)
    out, _ = a(x.transpose(0, 1))
    assert torch.allclose(out.transpose(0, 1), ref, atol=1e-5)


def test_state_stays_fp32_under_bf16_autocast():
    m = DecayFastWeights(16, 2)
    x = torch.randn(2, 5, 16)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        out, state = m(x)
    assert state.dtype == torch.float32
    assert torch.isfinite(out).all()


def test_gradients_flow_to_all_parameters():
    m = DecayFastWeights(16, 2, key_dim=4, feature_map="relu")
    out, s = m(torch.randn(2, 6, 16))
    (out.sum() + s.sum()).backward()
    for name, p in m.named_parameters():
        assert p.grad is not None and torch.isfinite(p.grad).all(), name


def test_bad_arguments_are_named():
    with pytest.raises(ValueError, match="divisible"):
        DecayFastWeights(30, 4)
    with pytest.raises(ValueError, match="key_dim"):
        DecayFastWeights(32, 4, key_dim=0)
    with pytest.raises(ValueError, match="feature_map"):
        DecayFastWeights(32, 4, feature_map="elu")
    with pytest.raises(ValueError, match="identity"):
        DecayFastWeights(32, 4, key_dim=4, feature_map="none")
    m = DecayFastWeights(32, 4)
    with pytest.raises(ValueError, match="'x'.*embed_dim = 32"):
        m(torch.randn(2, 5, 16))
    with pytest.raises(ValueError, match="'x'"):
        m(torch.randn(2, 32))
    with pytest.raises(ValueError, match="'key_padding_mask'"):
        m(torch.randn(2, 5, 32), key_padding_mask=torch.zeros(2, 4, dtype=torch.bool))
    with pytest.raises(ValueError, match="'initial_state'"):
        m(torch.randn(2, 5, 32), torch.zeros(2, 4, 8, 4))
    with pytest.raises(ValueError, match="'q_proj'|weight"):
        m.init_from_attention(nn.Linear(32, 16), nn.Linear(32, 32), nn.Linear(32, 32), nn.Linear(32, 32))


def _tensors_saved_for_backward(layer, x):
    count = [0]

    def pack(t):
        count[0] += 1
        return t

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        out, _ = layer(x)
    out.sum().backward()
    return count[0]


@pytest.mark.skipif(not decayfw.HAS_EXTENSION, reason="the switch chooses between two native ops")
def test_save_chunk_states_switch_reaches_the_op():
    """save_chunk_states=True runs decay_fwd_train, whose chunk states (empty on CPU) the graph
    keeps for the backward; False runs decay_fwd and keeps nothing more. Same gradients."""
    torch.manual_seed(4)
    layer = DecayFastWeights(16, 2)
    x = torch.randn(2, 9, 16)
    saved, grads = {}, {}
    for save in (True, False):
        layer.save_chunk_states = save
        layer.zero_grad()
        saved[save] = _tensors_saved_for_backward(layer, x)
        grads[save] = [p.grad.clone() for p in layer.parameters()]
    assert saved[True] == saved[False] + 1
    for a, b in zip(grads[True], grads[False]):
        assert torch.equal(a, b)
    assert "save_chunk_states=False" in repr(DecayFastWeights(16, 2, save_chunk_states=False))
    assert "save_chunk_states" not in repr(layer.__class__(16, 2))
