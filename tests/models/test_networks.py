"""Tests for models/networks.py: equivalence with the official networks, shapes, edge generator."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from models.complexity import count_macs, count_parameters
from models.networks import (
    BlurDownsample,
    BlurUpsample,
    ChannelGain,
    InstanceNorm2d,
    NLayerDiscriminator,
    PatchSampleF,
    ReflectionPad2d,
    ReplicationPad2d,
    ResnetGenerator,
    blur_downsample_taps,
    blur_upsample_taps,
    build_generator,
    define_generator,
    edge_generator_kwargs,
    init_weights,
    instance_norm_channels_last,
    pad_channels_last,
)

REFERENCE = Path(__file__).resolve().parents[1] / "fixtures" / "reference_nets_ngf16.pt"
NCE_LAYERS = [0, 4, 8, 12, 16]


@pytest.fixture(autouse=True, scope="module")
def _one_thread():
    # tiny tensors on a shared 2-core machine: OpenMP threads only add contention (10x slower)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def ref() -> dict:
    return torch.load(REFERENCE, map_location="cpu", weights_only=True)


def _cut_g(ngf: int = 16, **kw) -> ResnetGenerator:
    return ResnetGenerator(ngf=ngf, antialias=True, antialias_up=True, **kw)


# --- equivalence with the official code (tests/fixtures/reference_nets_ngf16.pt) -------------


@torch.no_grad()
def test_cyclegan_generator_matches_official(ref):
    g = ResnetGenerator(ngf=16)
    g.load_state_dict(ref["cyclegan_G_state_dict"], strict=True)
    assert torch.allclose(g(ref["input"]), ref["cyclegan_G_output"], atol=1e-5)


@torch.no_grad()
def test_cyclegan_discriminator_matches_official(ref):
    d = NLayerDiscriminator(ndf=16)
    d.load_state_dict(ref["cyclegan_D_state_dict"], strict=True)
    out = d(ref["input"])
    assert out.shape == (1, 1, 6, 6)
    assert torch.allclose(out, ref["cyclegan_D_output"], atol=1e-5)


@torch.no_grad()
def test_cut_generator_matches_official(ref):
    g = _cut_g()
    g.load_state_dict(ref["cut_G_state_dict"], strict=True)
    assert torch.allclose(g(ref["input"]), ref["cut_G_output"], atol=1e-5)


@torch.no_grad()
def test_cut_discriminator_matches_official(ref):
    d = NLayerDiscriminator(ndf=16, antialias=True)
    d.load_state_dict(ref["cut_D_state_dict"], strict=True)
    assert torch.allclose(d(ref["input"]), ref["cut_D_output"], atol=1e-5)


@torch.no_grad()
def test_cut_nce_features_match_official(ref):
    g = _cut_g()
    g.load_state_dict(ref["cut_G_state_dict"], strict=True)
    assert ref["cut_G_nce_layers"].tolist() == NCE_LAYERS
    feats = g(ref["input"], layers=ref["cut_G_nce_layers"], encode_only=True)  # a LongTensor
    assert len(feats) == len(ref["cut_G_nce_features"])
    for ours, theirs in zip(feats, ref["cut_G_nce_features"], strict=True):
        assert ours.shape == theirs.shape
        # The deep features (values up to ~10) carry float32 noise of ~2e-5 that instance norm
        # amplifies from tiny-variance activations: against a float64 run ours and the
        # reference are equally far off. Hence atol 1e-5 relative to the feature's scale.
        scale = max(1.0, theirs.abs().max().item())
        assert torch.allclose(ours, theirs, atol=1e-5 * scale, rtol=0)


@pytest.mark.parametrize(
    ("key", "build", "init_type"),
    [
        ("cyclegan_G_state_dict", lambda: ResnetGenerator(ngf=16), "normal"),
        ("cyclegan_D_state_dict", lambda: NLayerDiscriminator(ndf=16), "normal"),
        ("cut_G_state_dict", lambda: _cut_g(), "xavier"),
        ("cut_D_state_dict", lambda: NLayerDiscriminator(ndf=16, antialias=True), "xavier"),
    ],
)
def test_construction_and_init_reproduce_official_weights(ref, key, build, init_type):
    # same module order and RNG consumption as the official define_G / define_D
    torch.manual_seed(0)
    net = init_weights(build(), init_type, 0.02)
    theirs = ref[key]
    ours = net.state_dict()
    assert ours.keys() == theirs.keys()
    assert all(torch.equal(ours[k], theirs[k]) for k in ours)


def test_init_weights_types_and_errors():
    g = ResnetGenerator(ngf=4, n_blocks=1)
    for init_type in ("normal", "xavier", "kaiming", "orthogonal"):
        init_weights(g, init_type, 0.02)
        assert all(torch.isfinite(p).all() for p in g.parameters())
        assert torch.count_nonzero(g.model[1].bias) == 0
    with pytest.raises(ValueError, match="init_type"):
        init_weights(g, "uniform")


# --- parameter counts -------------------------------------------------------------------------


def test_official_parameter_counts():
    with torch.device("meta"):
        cyclegan_g = ResnetGenerator()
        cut_g = ResnetGenerator(antialias=True, antialias_up=True)
        d = NLayerDiscriminator()
        cut_d = NLayerDiscriminator(antialias=True)
        f = PatchSampleF(cut_g.feature_channels(NCE_LAYERS))
    assert count_parameters(cyclegan_g) == 11_378_179
    assert count_parameters(cut_g) == 11_378_179
    assert sum(b.numel() for b in cut_g.buffers()) == 9_600  # the blur kernels
    assert count_parameters(d) == 2_764_737
    assert count_parameters(cut_d) == 2_764_737
    assert cut_g.feature_channels(NCE_LAYERS) == [3, 128, 256, 256, 256]
    assert count_parameters(f) == 560_384
    assert [n for n, _ in f.named_parameters()][:4] == [
        "mlp_0.0.weight",
        "mlp_0.0.bias",
        "mlp_0.2.weight",
        "mlp_0.2.bias",
    ]


# --- generator shapes and interface ------------------------------------------------------------

KINDS = {
    "cyclegan": {},
    "cut": {"antialias": True, "antialias_up": True},
    "edge": {**edge_generator_kwargs(), "ngf": 8},
}


@pytest.mark.parametrize("kind", sorted(KINDS))
@pytest.mark.parametrize("batch", [1, 3])
@pytest.mark.parametrize("size", [(36, 52), (64, 64), (8, 8)])
@torch.no_grad()
def test_generator_shapes(kind, batch, size):
    g = ResnetGenerator(**{"ngf": 8, "n_blocks": 3, **KINDS[kind]})
    if g.space_to_depth > 1:  # the edge generator needs multiples of 8 (2x2 blocks, then /4)
        size = tuple(2 * v for v in size)
    x = torch.rand(batch, 3, *size) * 2 - 1
    y = g(x)
    assert y.shape == x.shape
    assert y.abs().max() <= 1
    feats = g(x, layers=NCE_LAYERS, encode_only=True)
    assert [f.shape[1] for f in feats] == g.feature_channels(NCE_LAYERS)
    assert all(f.shape[0] == batch for f in feats)
    out, feats2 = g(x, layers=NCE_LAYERS)
    assert torch.allclose(out, y)
    assert all(torch.equal(a, b) for a, b in zip(feats, feats2, strict=True))


def test_generator_channels_and_typed_methods():
    g = ResnetGenerator(input_nc=1, output_nc=2, ngf=4, n_blocks=1)
    x = torch.zeros(2, 1, 16, 20)
    assert g(x).shape == (2, 2, 16, 20)
    feats = g.encode(x, [1, 5])
    assert [tuple(f.shape) for f in feats] == [(2, 4, 16, 20), (2, 8, 8, 10)]
    image, feats = g.forward_with_features(x, [len(g.model) - 1])
    assert torch.equal(image, feats[0])


@pytest.mark.parametrize(
    ("shape", "match"),
    [
        ((1, 3, 37, 52), "multiples of 4"),
        ((1, 3, 36, 50), "multiples of 4"),
        ((1, 3, 4, 4), "at least 8"),
        ((1, 1, 64, 64), r"\(B, 3, H, W\)"),
        ((3, 64, 64), r"\(B, 3, H, W\)"),
    ],
)
def test_generator_rejects_bad_input(shape, match):
    g = ResnetGenerator(ngf=4, n_blocks=1)
    with pytest.raises(ValueError, match=match):
        g(torch.zeros(shape))
    with pytest.raises(ValueError, match=match):
        g(torch.zeros(shape), layers=[0], encode_only=True)


@pytest.mark.parametrize("layers", [[4, 0], [0, 0], [-1], [999]])
def test_generator_rejects_bad_layers(layers):
    g = ResnetGenerator(ngf=4, n_blocks=1)
    with pytest.raises(ValueError, match="strictly increasing"):
        g(torch.zeros(1, 3, 16, 16), layers=layers, encode_only=True)


def test_generator_rejects_bad_arguments():
    with pytest.raises(ValueError, match="padding_type"):
        ResnetGenerator(padding_type="circular")
    with pytest.raises(ValueError, match="n_blocks"):
        ResnetGenerator(n_blocks=-1)


@pytest.mark.parametrize("padding_type", ["replicate", "zero"])
def test_generator_padding_types_and_dropout(padding_type):
    g = ResnetGenerator(ngf=4, n_blocks=2, padding_type=padding_type, use_dropout=True)
    g.eval()
    x = torch.zeros(1, 3, 16, 16)
    assert g(x).shape == x.shape


def test_define_generator():
    assert isinstance(define_generator("cyclegan", ngf=4).model[4], torch.nn.Conv2d)
    cut = define_generator("cut", ngf=4, n_blocks=1)
    assert "model.7.filt" in cut.state_dict()
    edge = define_generator("edge")
    assert count_parameters(edge) == count_parameters(ResnetGenerator(**edge_generator_kwargs()))
    with pytest.raises(ValueError, match="kind"):
        define_generator("unet")


# --- discriminator -----------------------------------------------------------------------------


@pytest.mark.parametrize("antialias", [False, True])
@pytest.mark.parametrize("batch", [1, 3])
@pytest.mark.parametrize(("size", "expected"), [((64, 64), (6, 6)), ((36, 52), (2, 4))])
@torch.no_grad()
def test_discriminator_shapes(antialias, batch, size, expected):
    d = NLayerDiscriminator(ndf=8, antialias=antialias)
    assert d(torch.zeros(batch, 3, *size)).shape == (batch, 1, *expected)


@pytest.mark.parametrize("antialias", [False, True])
def test_discriminator_min_size(antialias):
    d = NLayerDiscriminator(ndf=4, antialias=antialias)
    s = d.min_input_size
    assert d(torch.zeros(1, 3, s, s)).shape[-1] >= 1
    with pytest.raises(ValueError, match=f">= {s}"):
        d(torch.zeros(1, 3, s - 1, s + 10))
    with pytest.raises(ValueError, match=r"\(B, 3, H, W\)"):
        d(torch.zeros(1, 4, 64, 64))


def test_discriminator_cyclegan_size_at_256():
    with torch.device("meta"):
        d = NLayerDiscriminator()
        assert d(torch.zeros(1, 3, 256, 256)).shape == (1, 1, 30, 30)


# --- PatchSampleF ------------------------------------------------------------------------------


def _feats(batch: int, generator: torch.Generator) -> list[torch.Tensor]:
    shapes = [(3, 36, 52), (16, 18, 26), (32, 9, 13)]
    return [torch.randn(batch, *s, generator=generator) for s in shapes]


@pytest.mark.parametrize("batch", [1, 3])
def test_patch_sample_shapes_and_norm(batch):
    feats = _feats(batch, torch.Generator().manual_seed(0))
    f = PatchSampleF([3, 16, 32], nc=24)
    out, ids = f(feats, num_patches=64, generator=torch.Generator().manual_seed(1))
    assert [tuple(o.shape) for o in out] == [(batch * 64, 24)] * 3
    assert [tuple(i.shape) for i in ids] == [(64,)] * 3
    for o in out:
        assert torch.allclose(o.norm(dim=1), torch.ones(len(o)), atol=1e-5)
    out, ids = f(feats, num_patches=200)  # more than the 117 positions of the last map
    assert ids[2].shape == (117,) and sorted(ids[2].tolist()) == list(range(117))
    assert out[2].shape == (batch * 117, 24)


def test_patch_sample_same_positions_for_every_image():
    feats = _feats(3, torch.Generator().manual_seed(0))
    f = PatchSampleF([3, 16, 32], use_mlp=False)
    out, ids = f(feats, num_patches=10, generator=torch.Generator().manual_seed(3))
    for feat, o, pid in zip(feats, out, ids, strict=True):
        b, c, h, w = feat.shape
        flat = feat.reshape(b, c, h * w)[:, :, pid]  # (B, C, P)
        expected = flat.permute(0, 2, 1).reshape(b * len(pid), c)  # image-major rows
        expected = expected / (expected.norm(dim=1, keepdim=True) + 1e-7)
        assert torch.allclose(o, expected, atol=1e-6)


def test_patch_sample_zero_feature_vector_has_finite_gradient():
    # a flat image region can make a whole feature vector exactly zero (ReLU, zero bias); the
    # official sqrt(0) backward is NaN there and stops a run
    feats = [torch.zeros(1, 3, 4, 4, requires_grad=True), torch.randn(1, 16, 4, 4)]
    for use_mlp in (False, True):
        f = PatchSampleF([3, 16], nc=8, use_mlp=use_mlp)
        out, _ = f(feats, num_patches=16)
        (out[0].sum() + out[1].sum()).backward()
        assert feats[0].grad is not None and torch.isfinite(feats[0].grad).all()
        assert all(torch.isfinite(p.grad).all() for p in f.parameters() if p.grad is not None)
        feats[0].grad = None


def test_patch_sample_deterministic_with_generator_and_reusable_ids():
    feats = _feats(2, torch.Generator().manual_seed(0))
    f = PatchSampleF([3, 16, 32], nc=8)
    a, ids_a = f(feats, 32, generator=torch.Generator().manual_seed(7))
    b, ids_b = f(feats, 32, generator=torch.Generator().manual_seed(7))
    _, ids_c = f(feats, 32, generator=torch.Generator().manual_seed(8))
    assert all(torch.equal(x, y) for x, y in zip(ids_a, ids_b, strict=True))
    assert all(torch.equal(x, y) for x, y in zip(a, b, strict=True))
    assert not all(torch.equal(x, y) for x, y in zip(ids_a, ids_c, strict=True))
    c, ids_d = f(feats, 32, patch_ids=ids_a)
    assert ids_d[0] is not None and all(torch.equal(x, y) for x, y in zip(a, c, strict=True))


def test_patch_sample_all_positions():
    feats = _feats(2, torch.Generator().manual_seed(0))
    f = PatchSampleF([3, 16, 32], nc=8)
    out, ids = f(feats, num_patches=0)
    assert [tuple(o.shape) for o in out] == [(2, 8, 36, 52), (2, 8, 18, 26), (2, 8, 9, 13)]
    assert all(i.numel() == 0 for i in ids)
    assert torch.allclose(out[1].norm(dim=1), torch.ones(2, 18, 26), atol=1e-5)


def test_patch_sample_errors():
    f = PatchSampleF([3, 16], nc=8)
    feats = _feats(1, torch.Generator().manual_seed(0))
    with pytest.raises(ValueError, match="2 feature maps"):
        f(feats)
    with pytest.raises(ValueError, match=r"feats\[1\] must have shape \(B, 16, H, W\)"):
        f([feats[0], feats[2]])
    with pytest.raises(ValueError, match="in_channels"):
        PatchSampleF([])


def test_patch_sample_gradients_reach_features_and_mlp():
    feats = [t.requires_grad_() for t in _feats(1, torch.Generator().manual_seed(0))]
    f = init_weights(PatchSampleF([3, 16, 32], nc=8), "xavier", 0.02)
    out, _ = f(feats, 16)
    sum(o.sum() for o in out).backward()
    assert all(t.grad is not None for t in feats)
    assert f.mlp_0[0].weight.grad is not None


# --- edge generator ----------------------------------------------------------------------------


def test_edge_generator_budget():
    kwargs = edge_generator_kwargs()
    assert kwargs["separable"] and not kwargs["antialias"]
    with torch.device("meta"):
        edge = ResnetGenerator(**kwargs)
        default = ResnetGenerator()
    macs = count_macs(edge, (1, 3, 224, 224))
    assert macs <= 3e9
    assert macs < count_macs(default, (1, 3, 224, 224)) / 15
    assert count_parameters(edge) == 30_467
    edge_kwargs = edge_generator_kwargs()
    edge_kwargs["ngf"] = 1  # a fresh copy every call
    assert edge_generator_kwargs()["ngf"] == 8


def test_edge_generator_cut_features():
    g = ResnetGenerator(**edge_generator_kwargs())
    f = PatchSampleF(g.feature_channels(NCE_LAYERS))
    x = torch.zeros(2, 3, 64, 64)
    feats = g(x, layers=NCE_LAYERS, encode_only=True)
    out, _ = f(feats, 16)
    assert [tuple(o.shape) for o in out] == [(32, 256)] * 5


# the legacy exporter's notes on instance norm, slicing and its own deprecation are expected
@pytest.mark.filterwarnings("ignore::UserWarning")
@pytest.mark.filterwarnings("ignore::DeprecationWarning")
@pytest.mark.filterwarnings("ignore::torch.jit.TracerWarning")
def test_edge_generator_onnx_export_matches_onnxruntime(tmp_path):
    ort = pytest.importorskip("onnxruntime")
    torch.manual_seed(0)
    g = init_weights(ResnetGenerator(**edge_generator_kwargs()), "normal", 0.02).eval()
    x = torch.rand(1, 3, 64, 64) * 2 - 1
    path = tmp_path / "edge.onnx"
    torch.onnx.export(
        g,
        (x,),
        str(path),
        dynamo=False,
        opset_version=17,
        input_names=["image"],
        output_names=["translated"],
        dynamic_axes={"image": {0: "batch"}, "translated": {0: "batch"}},
    )
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    x2 = torch.rand(2, 3, 64, 64) * 2 - 1
    (got,) = session.run(None, {"image": x2.numpy()})
    with torch.no_grad():
        expected = g(x2).numpy()
    assert got.shape == (2, 3, 64, 64)
    assert abs(got - expected).max() <= 1e-4


def test_patchnce_gradient_into_the_generator_is_per_image() -> None:
    """CUT's PatchNCE gradient of a batch of 2 is the mean of its 2 per-image gradients.

    Regression test: PatchSampleF's permute made the gradient reaching the generator NHWC-strided,
    and torch's CPU InstanceNorm backward gets that wrong at batch size 1 (relative error ~1).
    """
    from models.cut.module import CUTModule

    torch.manual_seed(0)
    m = CUTModule(generator={"ngf": 4, "n_blocks": 1}, discriminator={"ndf": 4}, num_patches=2048)
    g = torch.Generator().manual_seed(0)
    src, tgt = (torch.rand(2, 3, 32, 32, generator=g) * 2 - 1 for _ in range(2))

    def grad(s: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        t = t.clone().requires_grad_(True)
        m.nce_loss(s, t).backward()
        assert t.grad is not None
        return t.grad

    both = grad(src, tgt)
    apart = torch.cat([grad(src[:1], tgt[:1]), grad(src[1:], tgt[1:])]) / 2
    # (float32 conv kernels differ slightly by batch size; the bug gave a relative error of ~1)
    assert float((both - apart).norm() / both.norm()) < 1e-3


def test_build_network_takes_builder_kwargs_a_module_class_or_refuses() -> None:
    from models.networks import build_network, network_spec

    plain = build_network(network_spec({"ngf": 8, "n_blocks": 1}, {"init_type": "xavier"}, build_generator),
                          build_generator, "model.generator")
    assert isinstance(plain, ResnetGenerator)
    spec = network_spec({"_target_": "models.networks.ResnetGenerator", "input_nc": 3, "output_nc": 3,
                         "ngf": 8, "n_blocks": 1}, {"init_type": "xavier"}, build_generator)
    assert "init_type" not in spec  # the model's builder defaults do not leak into another class
    custom = build_network(spec, build_generator, "model.generator")
    assert isinstance(custom, ResnetGenerator)
    same = network_spec({"_target_": "models.networks.build_generator", "ngf": 8}, {"n_blocks": 1},
                        build_generator)
    assert same == {"n_blocks": 1, "ngf": 8}
    with pytest.raises(ValueError, match=r"model.generator._target_='os.getcwd' is not a torch.nn.Module"):
        build_network({"_target_": "os.getcwd"}, build_generator, "model.generator")
    with pytest.raises(ValueError, match=r"model.generator._target_='models.nope.Gen' does not import"):
        build_network({"_target_": "models.nope.Gen"}, build_generator, "model.generator")
    with pytest.raises(ValueError, match="model.generator: models.networks.ResnetGenerator"):
        build_network({"_target_": "models.networks.ResnetGenerator", "wings": 2}, build_generator,
                      "model.generator")


def test_spectral_norm_discriminator_has_unit_spectral_norm_and_still_learns() -> None:
    """`model.discriminator.spectral_norm=true`: every conv's effective weight has largest
    singular value ~1 after a few training forwards, and gradients reach the raw weights."""
    from models.networks import build_discriminator

    torch.manual_seed(0)
    d = build_discriminator(ndf=8, n_layers=2, spectral_norm=True).train()
    x = torch.rand(2, 3, 32, 32) * 2 - 1
    for _ in range(20):  # power iterations converge
        d(x)
    convs = [m for m in d.modules() if isinstance(m, torch.nn.Conv2d)]
    assert convs and all(torch.nn.utils.parametrize.is_parametrized(m, "weight") for m in convs)
    for m in convs:
        sigma = torch.linalg.matrix_norm(m.weight.detach().reshape(m.weight.shape[0], -1), ord=2)
        assert float(sigma) == pytest.approx(1.0, abs=0.05)
    d(x).mean().backward()
    assert all(m.parametrizations.weight.original.grad is not None for m in convs)
    plain = build_discriminator(ndf=8, n_layers=2)
    assert not any(torch.nn.utils.parametrize.is_parametrized(m) for m in plain.modules())


def test_sample_positions_draws_distinct_positions_uniformly() -> None:
    """sample_positions: k distinct positions in [0, n), reproducible by generator, each ordered
    sample equally likely (chi-square over all 380 ordered pairs of 20), randperm for small n."""
    from models.networks import sample_positions

    for n, k in [(68644, 256), (4096, 256), (1025, 256), (1024, 256), (100, 256), (5, 5)]:
        ids = sample_positions(n, k, torch.Generator().manual_seed(0))
        assert ids.dtype == torch.long and ids.shape == (min(n, k),)
        assert ids.unique().numel() == min(n, k) and int(ids.min()) >= 0 and int(ids.max()) < n
        assert torch.equal(ids, sample_positions(n, k, torch.Generator().manual_seed(0)))
    assert torch.equal(sample_positions(1000, 256, torch.Generator().manual_seed(3)),
                       torch.randperm(1000, generator=torch.Generator().manual_seed(3))[:256])
    g = torch.Generator().manual_seed(1)
    counts: dict[tuple[int, ...], int] = {}
    draws = 38000
    for _ in range(draws):
        key = tuple(sample_positions(20, 2, g).tolist())
        counts[key] = counts.get(key, 0) + 1
    assert len(counts) == 380
    expected = draws / 380
    chi2 = sum((c - expected) ** 2 / expected for c in counts.values())
    assert chi2 < 480  # 379 degrees of freedom: P(chi2 > 480) < 0.1 %


# --- layers that keep channels_last (the fast executor's layout) -------------------------------

CL = torch.channels_last


def _is_cl(t: torch.Tensor) -> bool:
    return t.is_contiguous(memory_format=CL) and not t.is_contiguous()


@pytest.mark.parametrize("batch", [1, 3])
@pytest.mark.parametrize("ours, theirs", [
    (instance_norm_channels_last, lambda: torch.nn.InstanceNorm2d(5)),
    (lambda x: pad_channels_last(x, (1, 2, 3, 1), "reflect"), lambda: torch.nn.ReflectionPad2d((1, 2, 3, 1))),
    (lambda x: pad_channels_last(x, (3, 3, 3, 3), "reflect"), lambda: torch.nn.ReflectionPad2d(3)),
    (lambda x: pad_channels_last(x, (2, 2, 2, 2), "replicate"), lambda: torch.nn.ReplicationPad2d(2)),
    (lambda x: pad_channels_last(x, (0, 1, 2, 0), "replicate"), lambda: torch.nn.ReplicationPad2d((0, 1, 2, 0))),
], ids=["norm", "reflect", "reflect3", "replicate", "replicate_uneven"])
def test_channels_last_functions_equal_torch_and_keep_the_layout(batch, ours, theirs) -> None:
    """Values and input gradients equal torch's layers, and a channels_last input gives a
    channels_last output and gradient (no layout copy in either direction)."""
    torch.manual_seed(0)
    x = (torch.randn(batch, 5, 9, 7) * 3 + 2).contiguous(memory_format=CL).requires_grad_()
    x0 = x.detach().contiguous().requires_grad_()
    y, y0 = ours(x), theirs()(x0)
    g = torch.randn_like(y0)  # NCHW: torch's CPU InstanceNorm2d is wrong for an NHWC gradient at batch 1
    (gx,), (gx0,) = torch.autograd.grad(y, x, g), torch.autograd.grad(y0, x0, g)
    assert _is_cl(y) and y.shape == y0.shape
    assert torch.allclose(y, y0, atol=1e-5) and torch.allclose(gx, gx0, atol=1e-5)
    (gx_cl,) = torch.autograd.grad(ours(x), x, g.contiguous(memory_format=CL))
    assert _is_cl(gx_cl) and torch.allclose(gx_cl, gx0, atol=1e-5)


def test_layers_take_the_layout_keeping_path_under_compile() -> None:
    """Under torch.compile a channels_last input goes through the layout-keeping functions (the
    graph holds no instance_norm or pad op), an NCHW input through torch's own layers."""
    for fmt, expect_ours in ((CL, True), (torch.contiguous_format, False)):
        torch._dynamo.reset()
        targets: list[str] = []

        def spy(gm, example_inputs, targets=targets):
            targets.extend(str(n.target) for n in gm.graph.nodes)
            return gm.forward

        net = torch.nn.Sequential(ReflectionPad2d(1), torch.nn.Conv2d(4, 4, 3), InstanceNorm2d(4),
                                  ReplicationPad2d(1))
        net.to(memory_format=fmt)
        torch.compile(net, backend=spy, dynamic=False)(torch.randn(2, 4, 8, 8).contiguous(memory_format=fmt))
        text = " ".join(targets)
        assert ("instance_norm" in text or "pad" in text) is not expect_ours, text
        targets.clear()
        blurs = torch.nn.Sequential(BlurDownsample(4), BlurUpsample(4))
        torch.compile(blurs, backend=spy, dynamic=False)(torch.randn(2, 4, 8, 8).contiguous(memory_format=fmt))
        text = " ".join(targets)
        assert ("conv" in text) is not expect_ours, text


def test_layers_take_torchs_path_in_eager_mode() -> None:
    """Eager runs are torch's own layers, bit for bit (the layout-keeping path is for compile)."""
    torch.manual_seed(0)
    x = torch.randn(2, 4, 6, 6).contiguous(memory_format=CL)
    for ours, theirs in [(InstanceNorm2d(4), torch.nn.InstanceNorm2d(4)),
                         (ReflectionPad2d(2), torch.nn.ReflectionPad2d(2)),
                         (ReplicationPad2d(1), torch.nn.ReplicationPad2d(1))]:
        assert torch.equal(ours(x), theirs(x)) and ours(x).stride() == theirs(x).stride()


@pytest.mark.parametrize("batch", [1, 2])
def test_channels_last_layers_pass_gradcheck(batch) -> None:
    torch.manual_seed(0)
    x = torch.randn(batch, 3, 5, 6, dtype=torch.double).contiguous(memory_format=CL).requires_grad_()
    assert torch.autograd.gradcheck(instance_norm_channels_last, (x,))
    for mode in ("reflect", "replicate"):
        assert torch.autograd.gradcheck(lambda t, m=mode: pad_channels_last(t, (2, 1, 1, 3), m), (x,))


@pytest.mark.parametrize("size", [(8, 8), (7, 9), (2, 3)])
def test_blur_taps_equal_the_depthwise_convolutions(size) -> None:
    """CUT's blurs written as slices equal the (transposed) depthwise convolutions, for any
    kernel in the buffer, any size, and in channels_last they stay channels_last; gradcheck too."""
    import torch.nn.functional as F

    torch.manual_seed(0)
    x = torch.randn(2, 4, *size).contiguous(memory_format=CL)
    down, up = BlurDownsample(4), BlurUpsample(4)
    for blur in (down, up):
        blur.filt = blur.filt + 0.1 * torch.randn_like(blur.filt)  # not only the binomial taps
    xp, xq = down.pad(x), up.pad(x)
    ref_d = F.conv2d(xp, down.filt, stride=2, groups=4)
    ref_u = F.conv_transpose2d(xq, up.filt, stride=2, padding=2, groups=4)[:, :, 1:-1, 1:-1]
    got_d, got_u = blur_downsample_taps(xp, down.filt), blur_upsample_taps(xq, up.filt)
    assert got_d.shape == ref_d.shape and torch.allclose(got_d, ref_d, atol=1e-5)
    assert got_u.shape == ref_u.shape and torch.allclose(got_u, ref_u, atol=1e-5)
    assert _is_cl(got_d) or got_d.shape[-1] * got_d.shape[-2] == 1
    xd = torch.randn(1, 2, *size, dtype=torch.double, requires_grad=True)
    fd, fu = down.filt[:2].double(), up.filt[:2].double()
    assert torch.autograd.gradcheck(lambda t: blur_downsample_taps(F.pad(t, (1, 1, 1, 1), mode="reflect"), fd), (xd,))
    assert torch.autograd.gradcheck(lambda t: blur_upsample_taps(F.pad(t, (1, 1, 1, 1), mode="replicate"), fu), (xd,))


def test_pad_channels_last_errors() -> None:
    x = torch.zeros(1, 2, 3, 3).contiguous(memory_format=CL)
    with pytest.raises(ValueError, match="smaller than the input's size 3"):
        pad_channels_last(x, (3, 0, 0, 0), "reflect")
    with pytest.raises(ValueError, match="'reflect' or 'replicate'"):
        pad_channels_last(x, (1, 1, 1, 1), "circular")


@pytest.mark.parametrize("kind", ["cyclegan", "cut"])
def test_compiled_channels_last_networks_equal_eager_nchw(kind) -> None:
    """A whole channels_last network under torch.compile (Dynamo and AOTAutograd, as
    ``step.compile=true``; eager kernels instead of Inductor's so it runs on any CPU) takes the
    layout-keeping layers, computes what the eager NCHW one does, forward and backward, and
    stays channels_last end to end."""
    torch._dynamo.reset()
    torch.manual_seed(0)
    g = init_weights(define_generator(kind, ngf=8, n_blocks=2), "normal", 0.02)
    d = init_weights(NLayerDiscriminator(ndf=8, n_layers=2, antialias=kind == "cut"), "normal", 0.02)
    x = torch.rand(2, 3, 32, 32) * 2 - 1
    outs = []
    for fmt in (torch.contiguous_format, CL):
        g.zero_grad(), d.zero_grad()
        g.to(memory_format=fmt), d.to(memory_format=fmt)
        run_g, run_d = (g, d) if fmt is torch.contiguous_format else (
            torch.compile(g, backend="aot_eager", dynamic=False), torch.compile(d, backend="aot_eager", dynamic=False))
        y = run_g(x.contiguous(memory_format=fmt))
        s = run_d(y)
        (s.square().mean() + y.abs().mean()).backward()
        outs.append((y.detach(), s.detach(), [p.grad.clone() for p in (*g.parameters(), *d.parameters())]))
    (y0, s0, g0), (y1, s1, g1) = outs
    assert _is_cl(y1) and s1.is_contiguous(memory_format=CL)  # (B, 1, h, w): also NCHW-contiguous
    assert torch.allclose(y0, y1, atol=1e-5) and torch.allclose(s0, s1, atol=1e-5)
    assert all(torch.allclose(a, b, atol=1e-5, rtol=1e-4) for a, b in zip(g0, g1, strict=True))


def test_channels_last_generator_exports_torch_layers(tmp_path) -> None:
    """Exporting a generator whose weights are still channels_last (as training leaves them)
    keeps ONNX's InstanceNormalization and Pad nodes: the layout-keeping path is training-only."""
    onnx = pytest.importorskip("onnx")
    g = init_weights(define_generator("cyclegan", ngf=8, n_blocks=1), "normal", 0.02).eval()
    g.to(memory_format=CL)
    x = (torch.rand(1, 3, 32, 32) * 2 - 1).contiguous(memory_format=CL)
    path = tmp_path / "g.onnx"
    torch.onnx.export(g, (x,), str(path), dynamo=False, opset_version=17)
    ops = {n.op_type for n in onnx.load(str(path)).graph.node}
    assert {"InstanceNormalization", "Pad"} <= ops and "ReduceMean" not in ops


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
def test_channels_last_layers_on_cuda_bf16() -> None:
    """On CUDA under bf16 autocast the layout-keeping functions match torch's layers within bf16
    rounding and keep the layout."""
    torch.manual_seed(0)
    x = (torch.randn(4, 64, 32, 32, device="cuda") * 2 + 1).contiguous(memory_format=CL).requires_grad_()
    x0 = x.detach().contiguous().requires_grad_()
    for ours, theirs in [(instance_norm_channels_last, torch.nn.InstanceNorm2d(64)),
                         (lambda t: pad_channels_last(t, (3, 3, 3, 3), "reflect"), torch.nn.ReflectionPad2d(3)),
                         (lambda t: pad_channels_last(t, (1, 1, 1, 1), "replicate"), torch.nn.ReplicationPad2d(1))]:
        with torch.autocast("cuda", dtype=torch.bfloat16):
            y, y0 = ours(x.bfloat16()), theirs(x0.bfloat16())
        g = torch.randn_like(y0).contiguous(memory_format=CL)
        (gx,), (gx0,) = torch.autograd.grad(y, x, g), torch.autograd.grad(y0, x0, g)
        assert _is_cl(y)
        assert (y.float() - y0.float()).abs().max() <= 0.05
        assert (gx - gx0).abs().max() <= 0.05 * gx0.abs().max()
    import torch.nn.functional as F

    down, up = BlurDownsample(64).cuda(), BlurUpsample(64).cuda()
    with torch.autocast("cuda", dtype=torch.bfloat16):
        xb = x.detach().bfloat16()
        got = [blur_downsample_taps(down.pad(xb), down.filt), blur_upsample_taps(up.pad(xb), up.filt)]
        ref = [F.conv2d(down.pad(xb), down.filt, stride=2, groups=64),
               F.conv_transpose2d(up.pad(xb), up.filt, stride=2, padding=2, groups=64)[:, :, 1:-1, 1:-1]]
    for a, b in zip(got, ref, strict=True):  # bf16 keeps 8 bits: a relative bound
        err, scale = float((a.float() - b.float()).abs().max()), float(b.float().abs().max())
        assert a.shape == b.shape and err <= 0.02 * scale, (err, scale)


def test_channel_gain_undoes_a_white_balance_exactly() -> None:
    """Fitted on the means of a frame and of the same frame under per-channel gains, the layer
    takes the cast frame back to the frame (the von Kries model), and starts as the identity."""
    torch.manual_seed(0)
    sim01 = torch.rand(2, 3, 16, 16) * 0.6 + 0.1
    cast = torch.tensor([0.55, 1.0, 1.22]).view(1, 3, 1, 1)
    sim, real = sim01 * 2 - 1, sim01 * cast * 2 - 1
    layer = ChannelGain(3)
    assert torch.equal(layer(real), real) and not bool(layer.fitted)
    layer.fit(real.mean(dim=(0, 2, 3)), sim.mean(dim=(0, 2, 3)))
    assert bool(layer.fitted)
    torch.testing.assert_close(layer.gain, 1 / cast.view(3))
    torch.testing.assert_close(layer(real), sim)
    layer.fit(torch.tensor([-0.99, 0.0, 0.0]), torch.tensor([0.9, 0.0, 0.0]), max_gain=4.0)
    assert float(layer.gain[0]) == 4.0  # clamped
    with pytest.raises(ValueError, match="finite"):
        layer.fit(torch.tensor([float("nan"), 0.0, 0.0]), torch.zeros(3))


def test_colour_match_generator_keeps_the_official_keys_and_weights() -> None:
    """colour_match adds only ``colour.*`` buffers (no parameter, no RNG draw): the same seed gives
    the same weights, and an unfitted layer leaves the output unchanged."""
    torch.manual_seed(0)
    plain = build_generator(ngf=8, n_blocks=1)
    torch.manual_seed(0)
    matched = build_generator(ngf=8, n_blocks=1, colour_match=True)
    extra = set(matched.state_dict()) - set(plain.state_dict())
    assert extra == {"colour.gain", "colour.fitted"}
    assert sum(p.numel() for p in matched.parameters()) == sum(p.numel() for p in plain.parameters())
    x = torch.rand(1, 3, 16, 16) * 2 - 1
    with torch.no_grad():
        torch.testing.assert_close(matched(x), plain(x))
        matched.colour.gain.copy_(torch.tensor([0.5, 1.0, 2.0]))  # type: ignore[union-attr]
        shifted = (x + 1) * torch.tensor([0.5, 1.0, 2.0]).view(1, 3, 1, 1) - 1
        torch.testing.assert_close(matched(x), plain(shifted))
        torch.testing.assert_close(matched.encode(x, [4])[0], plain.encode(shifted, [4])[0])
