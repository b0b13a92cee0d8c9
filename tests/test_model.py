"""TDN model: shapes, gradients, variants/ablations, and the temporal modules against loop-based references."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from tdn.model.networks import ModelConfig, build_model, build_model_from_config, too_small_for
from tdn.model.temporal_modules import LongTermTDM, ShortTermTDM, TemporalConv

VARIANTS = ["tdn", "tsn", "tconv", "stdm", "ltdm"]
ARCHS = ["resnet18", "resnet34", "resnet50", "resnet101"]


def _clip(n: int, t: int, size: int, seed: int = 0) -> torch.Tensor:
    return torch.randn(n, t, 5, 3, size, size, generator=torch.Generator().manual_seed(seed))


def _randomise_bn(module: torch.nn.Module, seed: int = 0) -> None:
    g = torch.Generator().manual_seed(seed)
    for m in module.modules():
        if isinstance(m, torch.nn.BatchNorm2d):
            m.running_mean.copy_(torch.randn(m.num_features, generator=g) * 0.1)
            m.running_var.copy_(torch.rand(m.num_features, generator=g) + 0.5)
            m.weight.data.copy_(torch.rand(m.num_features, generator=g) + 0.5)
            m.bias.data.copy_(torch.randn(m.num_features, generator=g) * 0.1)


def _train_step_all_grads(model: torch.nn.Module, x: torch.Tensor, num_classes: int) -> None:
    model.train()
    out = model(x)
    assert out.shape == (x.shape[0], num_classes)
    assert torch.isfinite(out).all()
    F.cross_entropy(out, torch.arange(x.shape[0]) % num_classes).backward()
    no_grad = [n for n, p in model.named_parameters() if p.grad is None]
    assert not no_grad, f"parameters without a gradient (DDP would need find_unused_parameters): {no_grad}"


@pytest.mark.parametrize("arch", ARCHS)
@pytest.mark.parametrize("variant", VARIANTS)
def test_every_variant_and_backbone_trains(arch, variant):
    model = build_model(arch, num_classes=7, num_segments=8, variant=variant, width=0.125)
    _train_step_all_grads(model, _clip(2, 8, 64), 7)


@pytest.mark.parametrize("variant", VARIANTS)
@pytest.mark.parametrize("segments", [16, 3, 2])
def test_other_segment_counts(variant, segments):
    model = build_model("resnet18", num_classes=5, num_segments=segments, variant=variant, width=0.25)
    _train_step_all_grads(model, _clip(1, segments, 64), 5)


def test_resnet50_full_width_112_and_r18_224():
    model = build_model("resnet50", num_classes=400, num_segments=8).eval()
    with torch.no_grad():
        assert model(_clip(1, 8, 112)).shape == (1, 400)
    model = build_model("resnet18", num_classes=10, num_segments=8, width=0.25).eval()
    with torch.no_grad():
        assert model(_clip(1, 8, 224)).shape == (1, 10)


ABLATIONS = [
    {"s_tdm_input": "stack"},
    {"l_tdm_operator": "avg"},
    {"s_tdm_input": "stack", "l_tdm_operator": "avg"},
    {"s_tdm_fusion": "mul"},
    {"s_tdm_fusion": "add_mul"},
    {"s_tdm_fusion": "channel_mul"},
    {"s_tdm_fusion": "add_channel_mul"},
    {"l_tdm_fusion": "add"},
    {"l_tdm_fusion": "channel_attention", "l_tdm_multiscale": False},
    {"l_tdm_multiscale": False},
    {"l_tdm_bidirectional": False},
    {"l_tdm_fusion": "add", "l_tdm_bidirectional": False},
    {"s_tdm_stages": 1, "l_tdm_stages": (2, 3, 4, 5)},
    {"s_tdm_stages": 3, "l_tdm_stages": (4, 5)},
    {"fusion_weights": (0.9, 0.1), "temporal_init": "identity"},
]


@pytest.mark.parametrize("options", ABLATIONS, ids=lambda o: ",".join(f"{k}={v}" for k, v in o.items()))
@pytest.mark.slow
def test_ablations_train(options):
    for arch in ("resnet18", "resnet50"):
        model = build_model(arch, num_classes=4, num_segments=4, width=0.125, **options)
        _train_step_all_grads(model, _clip(1, 4, 64), 4)


def test_ablation_options_change_the_structure():
    def names(**o):
        return set(build_model("resnet18", 3, 4, width=0.125, **o).state_dict())

    base = names()
    assert any(".ltdm.pooled_conv." in k for k in base) and any(k.startswith("stdm.layers.0.") for k in base)
    assert not any(".ltdm.pooled_conv." in k for k in names(l_tdm_multiscale=False))
    assert not any(k.startswith("stdm.layers.") for k in names(s_tdm_stages=1, l_tdm_stages=(2, 3, 4, 5)))
    assert any(k.startswith("layer1.0.ltdm.") for k in names(s_tdm_stages=1, l_tdm_stages=(2, 3, 4, 5)))
    three = names(s_tdm_stages=3, l_tdm_stages=(4, 5))
    assert any(k.startswith("stdm.layers.1.") for k in three) and not any("layer2.0.ltdm" in k for k in three)
    stack = build_model("resnet18", 3, 4, width=0.125, s_tdm_input="stack")
    assert stack.stdm.conv1.in_channels == 15
    tconv = names(variant="tconv")
    assert any(".tconv." in k for k in tconv) and not any(".ltdm." in k or "stdm." in k for k in tconv)


def test_config_defaults_and_validation():
    assert ModelConfig(num_segments=8).resolved_fusion_weights() == (0.5, 0.5)
    assert ModelConfig(num_segments=16).resolved_fusion_weights() == (0.75, 0.25)
    assert ModelConfig(num_segments=16, fusion_weights=[0.6, 0.4]).resolved_fusion_weights() == (0.6, 0.4)
    model = build_model("resnet18", 3, 16, width=0.125)
    assert model.fusion_weights == (0.75, 0.25)
    with pytest.raises(ValueError, match="num_segments >= 2"):
        ModelConfig(num_segments=1)
    with pytest.raises(ValueError, match="unknown arch"):
        ModelConfig(arch="resnet152")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="overlap"):
        ModelConfig(s_tdm_stages=2, l_tdm_stages=(2, 3))
    with pytest.raises(ValueError, match="no S-TDM"):
        ModelConfig(variant="ltdm", s_tdm_stages=1)
    with pytest.raises(TypeError, match="unknown model option"):
        build_model("resnet18", 3, 8, widht=0.5)
    assert build_model_from_config(ModelConfig(arch="resnet18", variant="tsn", num_segments=1, width=0.125))


def test_wrong_input_shape_is_a_clear_error():
    model = build_model("resnet18", 3, 8, width=0.125)
    with pytest.raises(ValueError, match=r"expected input \(N, T=8, 5, 3, H, W\)"):
        model(torch.zeros(1, 4, 5, 3, 32, 32))
    with pytest.raises(ValueError, match="expected input"):
        model(torch.zeros(8, 15, 32, 32))


def test_channels_last_gives_the_same_logits():
    # float64: with random BN statistics float32 rounding alone differs by ~1e-3 after 50 layers
    model = build_model("resnet50", 6, 4, width=0.25).eval().double()
    _randomise_bn(model)
    x = _clip(2, 4, 64).double()
    with torch.no_grad():
        ref = model(x)
        out = model.to(memory_format=torch.channels_last)(x)
    torch.testing.assert_close(out, ref, rtol=1e-9, atol=1e-9)


# ---------------------------------------------------------------------------------------------- references
# Slow per-frame loops written from the paper's equations (Sec. 3.2-3.3) and the released code's choices
# (nearest upsampling, zero difference at the clip boundary), with BN written out in eval form.


def _bn(v: torch.Tensor, bn: torch.nn.BatchNorm2d) -> torch.Tensor:
    shape = (-1, 1, 1)
    return (v - bn.running_mean.view(shape)) / torch.sqrt(
        bn.running_var.view(shape) + bn.eps
    ) * bn.weight.view(shape) + bn.bias.view(shape)


def _conv(v: torch.Tensor, conv: torch.nn.Conv2d) -> torch.Tensor:
    return F.conv2d(v[None], conv.weight, None, conv.stride, conv.padding, groups=conv.groups)[0]


def _upsample2(v: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    up = v.repeat_interleave(2, dim=-2).repeat_interleave(2, dim=-1)
    return up[..., : size[0], : size[1]]


def _ltdm_reference(m: LongTermTDM, x: torch.Tensor, t_len: int) -> torch.Tensor:
    nt, c, h, w = x.shape
    out = torch.empty_like(x)
    for n in range(nt // t_len):
        feats = [_bn(_conv(x[n * t_len + t], m.reduce), m.reduce_bn) for t in range(t_len)]
        smooth = [_conv(f, m.smooth) for f in feats]
        for t in range(t_len):
            maps = []
            for step in (+1, -1):
                other = t + step
                # Eq. 4, C(F_i, F_{i+1}) = Conv(F_{i+1}) - F_i (the released code's sign); zero past the clip
                d = smooth[other] - feats[t] if 0 <= other < t_len else torch.zeros_like(feats[t])
                pooled = _bn(_conv(F.avg_pool2d(d[None], 2)[0], m.pooled_conv), m.pooled_bn)
                full = _bn(_conv(d, m.full_conv), m.full_bn)
                msum = (d + _upsample2(pooled, (h, w)) + full) / 3.0  # Eq. 5, N = 3 branches
                maps.append(torch.sigmoid(_bn(_conv(msum, m.expand), m.expand_bn)) - 0.5)
            g = 0.5 * (maps[0] + maps[1])  # Eq. 6, both directions
            out[n * t_len + t] = x[n * t_len + t] + x[n * t_len + t] * g
    return out


def test_ltdm_matches_loop_reference():
    torch.manual_seed(0)
    t_len = 5
    m = LongTermTDM(32, t_len).eval()
    _randomise_bn(m)
    x = torch.randn(2 * t_len, 32, 6, 8)
    with torch.no_grad():
        torch.testing.assert_close(m(x), _ltdm_reference(m, x, t_len), rtol=1e-4, atol=1e-5)
        # the same function in channels_last
        xc = x.contiguous(memory_format=torch.channels_last)
        torch.testing.assert_close(m(xc), _ltdm_reference(m, x, t_len), rtol=1e-4, atol=1e-5)


def test_ltdm_one_direction_and_training_bn_per_direction():
    torch.manual_seed(1)
    m = LongTermTDM(16, 3, bidirectional=False).eval()
    _randomise_bn(m)
    x = torch.randn(3, 16, 4, 4)
    f = [_bn(_conv(x[t], m.reduce), m.reduce_bn) for t in range(3)]
    s = [_conv(v, m.smooth) for v in f]
    with torch.no_grad():
        out = m(x)
        for t in range(3):
            d = s[t + 1] - f[t] if t < 2 else torch.zeros_like(f[t])
            pooled = _bn(_conv(F.avg_pool2d(d[None], 2)[0], m.pooled_conv), m.pooled_bn)
            msum = (d + _upsample2(pooled, (4, 4)) + _bn(_conv(d, m.full_conv), m.full_bn)) / 3
            ref = x[t] + x[t] * (torch.sigmoid(_bn(_conv(msum, m.expand), m.expand_bn)) - 0.5)
            torch.testing.assert_close(out[t], ref, rtol=1e-4, atol=1e-5)
    # training: the expand BN sees each direction separately -> two momentum updates per call
    m2 = LongTermTDM(16, 3).train()
    before = m2.expand_bn.running_mean.clone()
    m2(x)
    assert int(m2.expand_bn.num_batches_tracked) == 2
    assert not torch.equal(before, m2.expand_bn.running_mean)


def test_temporal_conv_matches_conv1d_over_time():
    torch.manual_seed(2)
    t_len, c = 4, 16
    m = TemporalConv(c, t_len)
    with torch.no_grad():
        m.weight.copy_(torch.randn(c, 1, 3))
    x = torch.randn(3 * t_len, c, 5, 6, requires_grad=True)
    out = m(x)
    # reference: the released layout, (N*H*W, C, T) through Conv1d
    n = 3
    xr = x.view(n, t_len, c, 5, 6).permute(0, 3, 4, 2, 1).reshape(n * 30, c, t_len)
    ref = F.conv1d(xr, m.weight, padding=1, groups=c).view(n, 5, 6, c, t_len).permute(0, 4, 3, 1, 2)
    torch.testing.assert_close(out, ref.reshape(n * t_len, c, 5, 6), rtol=1e-5, atol=1e-6)
    g = torch.randn_like(out)
    gx, gw = torch.autograd.grad(out, (x, m.weight), g)
    rx, rw = torch.autograd.grad(ref.reshape(n * t_len, c, 5, 6), (x, m.weight), g)
    torch.testing.assert_close(gx, rx, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(gw, rw, rtol=1e-4, atol=1e-4)


def test_temporal_conv_shift_init():
    m = TemporalConv(16, 4)
    x = torch.arange(4, dtype=torch.float32).view(4, 1, 1, 1).expand(4, 16, 1, 1).contiguous()
    out = m(x)[:, :, 0, 0]
    assert out[:, 0].tolist() == [1, 2, 3, 0]  # channels [0, 2) read t+1
    assert out[:, 2].tolist() == [0, 0, 1, 2]  # channels [2, 4) read t-1
    assert out[:, 5].tolist() == [0, 1, 2, 3]  # the rest: identity


def test_stdm_stem_matches_loop_reference():
    torch.manual_seed(3)
    m = ShortTermTDM(8, []).eval()
    _randomise_bn(m)
    frames = torch.randn(3, 5, 3, 32, 32)
    with torch.no_grad():
        out = m.stem(frames)
        for i in range(3):
            x = frames[i]
            d = torch.cat([x[k + 1] - x[k] for k in range(4)], dim=0)  # D = [D-2, D-1, D1, D2], 12 channels
            d = F.avg_pool2d(d[None], 2)[0]  # downsample by half
            v = torch.relu(_bn(_conv(d, m.conv1), m.bn1))
            v = F.max_pool2d(v[None], 3, 2, 1)[0]
            torch.testing.assert_close(out[i], v, rtol=1e-4, atol=1e-5)


def _ltdm_plain(m: LongTermTDM, x: torch.Tensor) -> torch.Tensor:
    """The L-TDM's attention output through plain autograd ops, in the released code's order: each
    direction's zero-padded difference, then the shared branch convs and BNs called once per direction."""
    f = m.reduce_bn(m.reduce(x))
    s = m.smooth(f)
    f5, s5 = f.view(-1, m.num_segments, *f.shape[1:]), s.view(-1, m.num_segments, *f.shape[1:])
    gates = []
    for forward in (True, False) if m.bidirectional else (True,):
        if forward:
            d = F.pad(s5[:, 1:] - f5[:, :-1], (0, 0, 0, 0, 0, 0, 0, 1))
        else:
            d = F.pad(s5[:, :-1] - f5[:, 1:], (0, 0, 0, 0, 0, 0, 1, 0))
        d = d.reshape(f.shape)
        pooled = m.pooled_bn(m.pooled_conv(F.avg_pool2d(d, 2)))
        pooled = F.interpolate(pooled, size=d.shape[-2:], mode="nearest")
        msum = d / 3 + pooled / 3 + m.full_bn(m.full_conv(d)) / 3
        gates.append(torch.sigmoid(m.expand_bn(m.expand(msum))) - 0.5)
    return x + x * (sum(gates) / len(gates))


@pytest.mark.parametrize("bidirectional", [True, False])
@pytest.mark.parametrize("training", [True, False])
@pytest.mark.slow
def test_ltdm_gate_function_gradcheck(bidirectional, training):
    from tdn.model.attention_gate import AttentionGateFunction

    torch.manual_seed(3)
    m = LongTermTDM(8, 3, reduction=4, bidirectional=bidirectional).double().train(training)
    _randomise_bn(m)
    k = 1 + bidirectional
    x = torch.randn(6, 8, 3, 4, dtype=torch.float64, requires_grad=True)
    maps = torch.randn(6 * k, 2, 3, 4, dtype=torch.float64, requires_grad=True)
    params = (m.expand.weight, m.expand_bn.weight, m.expand_bn.bias)

    def fn(x, maps, w, bw, bb):
        return AttentionGateFunction.apply(x, maps, w, bw, bb, m.expand_bn, k)

    assert torch.autograd.gradcheck(fn, (x, maps, *params))
    # channels_last inputs take the convolution route for the 1x1 conv's gradients
    xc = x.detach().contiguous(memory_format=torch.channels_last).requires_grad_()
    mc = maps.detach().contiguous(memory_format=torch.channels_last).requires_grad_()
    assert torch.autograd.gradcheck(fn, (xc, mc, *params))


@pytest.mark.parametrize("directions", [1, 2])
@pytest.mark.parametrize("average", [False, True])
def test_temporal_difference_function(directions, average):
    from tdn.model.temporal_ops import TemporalDifferenceFunction

    t_len = 4
    f = torch.randn(2 * t_len, 3, 2, 3, dtype=torch.float64, requires_grad=True)
    s = torch.randn(2 * t_len, 3, 2, 3, dtype=torch.float64, requires_grad=True)
    d = TemporalDifferenceFunction.apply(f, s, t_len, directions, average)
    f5, s5 = f.view(2, t_len, 3, 2, 3), s.view(2, t_len, 3, 2, 3)
    for t in range(t_len):
        for i, other in enumerate((t + 1, t - 1)[:directions]):
            row = d.view(directions, 2, t_len, 3, 2, 3)[i, :, t]
            if not 0 <= other < t_len:
                assert torch.equal(row, torch.zeros_like(row))
            elif average:
                torch.testing.assert_close(row, (s5[:, other] + f5[:, t]) / 2, rtol=0, atol=0)
            else:
                torch.testing.assert_close(row, s5[:, other] - f5[:, t], rtol=0, atol=0)

    def fn(f, s):
        return TemporalDifferenceFunction.apply(f, s, t_len, directions, average)

    assert torch.autograd.gradcheck(fn, (f, s))
    fc = f.detach().contiguous(memory_format=torch.channels_last).requires_grad_()
    out = fn(fc, s)
    assert out.is_contiguous(memory_format=torch.channels_last)
    assert torch.autograd.gradcheck(fn, (fc, s))


@pytest.mark.parametrize("layout", ["contiguous", "channels_last", "strided"])
@pytest.mark.parametrize("bias", [False, True])
def test_pointwise_conv_is_a_1x1_conv(layout, bias):
    from tdn.model.attention_gate import pointwise_conv

    g = torch.Generator().manual_seed(6)
    x = torch.randn(3, 5, 4, 6, generator=g, dtype=torch.float64)
    if layout == "channels_last":
        x = x.contiguous(memory_format=torch.channels_last)
    elif layout == "strided":
        x = x[:, :, :, ::2]
    w = torch.randn(7, 5, 1, 1, generator=g, dtype=torch.float64, requires_grad=True)
    b = torch.randn(7, generator=g, dtype=torch.float64, requires_grad=True) if bias else None
    x.requires_grad_()
    out = pointwise_conv(x, w, b)
    torch.testing.assert_close(out, F.conv2d(x, w, b), rtol=1e-12, atol=1e-12)
    if layout == "channels_last":
        assert out.is_contiguous(memory_format=torch.channels_last)
    assert torch.autograd.gradcheck(pointwise_conv, (x, w, b))


def test_stdm_pooling_and_fusion_fast_paths_match_the_plain_ops():
    from tdn.model.temporal_modules import _avg_pool2, _max_pool_3x3s2, fuse

    g = torch.Generator().manual_seed(7)
    frames = torch.randn(4, 15, 8, 6, generator=g, dtype=torch.float64, requires_grad=True)
    torch.testing.assert_close(_avg_pool2(frames), F.avg_pool2d(frames, 2), rtol=1e-14, atol=1e-14)
    assert torch.autograd.gradcheck(_avg_pool2, (frames,))
    odd = torch.randn(2, 3, 7, 5, generator=g, dtype=torch.float64)
    torch.testing.assert_close(_avg_pool2(odd), F.avg_pool2d(odd, 2), rtol=0, atol=0)
    # fusion a*x + b*up(h): x exactly twice h's size (the broadcast route) and not (interpolate)
    for x_size, h_size in (((8, 6), (4, 3)), ((7, 5), (4, 3))):
        x = torch.randn(2, 3, *x_size, generator=g, dtype=torch.float64, requires_grad=True)
        h = torch.randn(2, 3, *h_size, generator=g, dtype=torch.float64, requires_grad=True)
        for weights in ((0.5, 0.5), (0.75, 0.25)):
            ref = weights[0] * x + weights[1] * F.interpolate(h, size=x_size, mode="nearest")
            torch.testing.assert_close(fuse(x, h, "add", weights), ref, rtol=1e-14, atol=1e-14)
            assert torch.autograd.gradcheck(lambda x, h, w=weights: fuse(x, h, "add", w), (x, h))
    # inference writes the fusion into x and reuses the gate's temporaries: the same values
    x, h = torch.randn(2, 3, 8, 6, generator=g), torch.randn(2, 3, 4, 3, generator=g)
    with torch.no_grad():
        expected = fuse(x, h, "add", (0.75, 0.25))
        target = x.clone()
        assert fuse(target, h, "add", (0.75, 0.25), inplace=True) is target
        assert torch.equal(target, expected)
    ltdm = LongTermTDM(16, 4).eval()
    _randomise_bn(ltdm)
    feats = torch.randn(8, 16, 6, 4, generator=g, requires_grad=True)
    with torch.no_grad():
        no_graph = ltdm(feats)
    torch.testing.assert_close(ltdm(feats), no_graph, rtol=0, atol=0)
    # max pooling through channels_last: same values and, with ties (ReLU zeros), the same argmax/gradient
    act = torch.randn(3, 8, 14, 10, generator=g).relu_().requires_grad_()
    grad = torch.randn(3, 8, 7, 5, generator=g)
    ours, plain = _max_pool_3x3s2(act), F.max_pool2d(act, 3, 2, 1)
    assert torch.equal(ours, plain)
    (g_ours,) = torch.autograd.grad(ours, act, grad)
    (g_plain,) = torch.autograd.grad(plain, act, grad)
    assert torch.equal(g_ours, g_plain)
    # with the released weights (0.5, 0.5) the float32 result is bit-identical to the plain ops
    x32, h32 = torch.randn(2, 4, 8, 8, generator=g), torch.randn(2, 4, 4, 4, generator=g)
    plain = 0.5 * x32 + 0.5 * F.interpolate(h32, size=(8, 8), mode="nearest")
    assert torch.equal(fuse(x32, h32, "add", (0.5, 0.5)), plain)


@pytest.mark.parametrize("bidirectional", [True, False])
def test_ltdm_fused_gradients_match_plain_autograd(bidirectional):
    torch.manual_seed(4)
    fused = LongTermTDM(16, 4, bidirectional=bidirectional).double().train()
    _randomise_bn(fused)
    plain = LongTermTDM(16, 4, bidirectional=bidirectional).double().train()
    plain.load_state_dict(fused.state_dict())
    x = torch.randn(8, 16, 6, 5, dtype=torch.float64).contiguous(memory_format=torch.channels_last)
    g = torch.randn(8, 16, 6, 5, dtype=torch.float64)
    xa, xb = x.clone().requires_grad_(), x.clone().requires_grad_()
    out_a, out_b = fused(xa), _ltdm_plain(plain, xb)
    torch.testing.assert_close(out_a, out_b)
    out_a.backward(g)
    out_b.backward(g)
    torch.testing.assert_close(xa.grad, xb.grad)
    for (name, pa), pb in zip(fused.named_parameters(), plain.parameters()):
        torch.testing.assert_close(pa.grad, pb.grad, msg=name)
    # running statistics: updated once per direction in forward, never in backward
    for (name, ba), bb in zip(fused.named_buffers(), plain.buffers()):
        torch.testing.assert_close(ba, bb, msg=name)
    assert int(fused.expand_bn.num_batches_tracked) == 1 + bidirectional


def test_ltdm_fused_gate_under_bfloat16_autocast():
    # under autocast the 1x1 product runs in bfloat16; the recomputation in backward must follow it. Both
    # bf16 routes are compared with the float64 truth: the fused one must be about as accurate as plain
    # autograd (parameters whose true gradient is 0, the BN biases before a batch-statistics BN, are
    # rounding noise in both, so each error is also allowed 1e-3 of the module's largest gradient)
    torch.manual_seed(5)
    fused = LongTermTDM(16, 4).train()
    plain = LongTermTDM(16, 4).train()
    plain.load_state_dict(fused.state_dict())
    truth = LongTermTDM(16, 4).double().train()
    truth.load_state_dict(fused.state_dict())
    x = torch.randn(8, 16, 6, 5)
    xa, xb, xt = x.clone().requires_grad_(), x.clone().requires_grad_(), x.double().requires_grad_()
    with torch.autocast("cpu", dtype=torch.bfloat16):
        out_a, out_b = fused(xa), _ltdm_plain(plain, xb)
    out_t = _ltdm_plain(truth, xt)
    assert out_a.dtype == out_b.dtype
    torch.testing.assert_close(out_a, out_b, rtol=2e-2, atol=2e-2)
    out_a.float().sum().backward()
    out_b.float().sum().backward()
    out_t.sum().backward()
    torch.testing.assert_close(xa.grad, xb.grad, rtol=2e-2, atol=2e-2)
    largest = max(p.grad.abs().max().item() for p in truth.parameters())
    for (name, pa), pb, pt in zip(fused.named_parameters(), plain.parameters(), truth.parameters()):
        assert pa.grad.dtype == pb.grad.dtype, name
        err_fused = (pa.grad.double() - pt.grad).abs().max().item()
        err_plain = (pb.grad.double() - pt.grad).abs().max().item()
        assert err_fused <= max(3 * err_plain, 1e-3 * largest), name


@pytest.mark.parametrize(
    "options",
    [
        dict(variant="tdn"),
        dict(variant="tdn", arch="resnet50"),
        dict(variant="ltdm"),
        dict(variant="tdn", l_tdm_stages=(3, 4)),
        dict(variant="tdn", l_tdm_stages=(3,)),
        dict(variant="ltdm", l_tdm_stages=(2, 3, 4, 5)),
        dict(variant="tdn", s_tdm_stages=3, l_tdm_stages=(4, 5)),
        dict(variant="tdn", l_tdm_multiscale=False),
        dict(variant="tdn", l_tdm_fusion="channel_attention"),
        dict(variant="stdm"),
        dict(variant="tconv"),
        dict(variant="tsn"),
    ],
    ids=repr,
)
def test_the_smallest_view_each_network_takes(options):
    """``smallest_view`` against real forwards: one pixel less fails, its answer runs (a TDN: 33 px, not 32:
    its L-TDM halves the 1 x 1 map of stage 5)."""
    cfg = ModelConfig(**{"arch": "resnet18", "num_classes": 3, "num_segments": 2, "width": 0.125, **options})
    model = build_model_from_config(cfg).eval()
    smallest = cfg.smallest_view()

    def runs(size: int) -> bool:
        try:
            with torch.no_grad():
                model(torch.zeros(1, 2, 5, 3, size, size))
        except RuntimeError:
            return False
        return True

    assert runs(smallest)
    assert smallest == 1 or not runs(smallest - 1)
    assert too_small_for(cfg, smallest) == ""
    if smallest > 1:
        assert too_small_for(cfg, smallest - 1).startswith(f"views of {smallest - 1} px are too small")
