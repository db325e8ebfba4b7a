"""Translator networks: ResNet generators (CycleGAN, CUT, edge), PatchGAN discriminators, CUT's MLP."""

from __future__ import annotations

import importlib
from collections.abc import Callable, Mapping, Sequence
from typing import Any, TypeVar

import torch
import torch.nn.functional as F
from torch import Tensor, nn

__all__ = [
    "DISCRIMINATOR_DEFAULTS",
    "EDGE_GENERATOR_PRESET",
    "GENERATOR_DEFAULTS",
    "BlurDownsample",
    "BlurUpsample",
    "ChannelGain",
    "InstanceNorm2d",
    "NLayerDiscriminator",
    "PatchSampleF",
    "ReflectionPad2d",
    "ReplicationPad2d",
    "ResnetBlock",
    "ResnetGenerator",
    "SeparableConv2d",
    "build_discriminator",
    "build_generator",
    "build_network",
    "define_generator",
    "network_spec",
    "resolve_target",
    "edge_generator_kwargs",
    "blur_downsample_taps",
    "blur_upsample_taps",
    "init_weights",
    "instance_norm_channels_last",
    "pad_channels_last",
    "sample_positions",
]

ModuleT = TypeVar("ModuleT", bound=nn.Module)

_PADDING_TYPES = ("reflect", "replicate", "zero")
_INIT_TYPES = ("normal", "xavier", "kaiming", "orthogonal")

#: The edge generator for Jetson-class robots (issue "On the robot"): 0.23 GMAC at 224x224
#: (CycleGAN's default generator: 37.9). ngf 8 and 6 depthwise-separable residual blocks (as GAN
#: Compression's mobile generator; the blocks hold 88 % of the default's MACs) at full resolution;
#: plain strided / transposed convs (CUT's blur-pool path costs more than it gives at this size).
#: At the CPU recipe it closed as much of the gap as the recipe's ngf-16 plain generator (README);
#: a 2x2 space-to-depth variant (0.63 GMAC) learned nothing there, and ngf 12 / 16 are slower on
#: a 2-core CPU without closing more.
EDGE_GENERATOR_PRESET: dict[str, Any] = {
    "ngf": 8,
    "n_blocks": 6,
    "separable": True,
    "space_to_depth": 1,
    "antialias": False,
    "antialias_up": False,
}


def edge_generator_kwargs() -> dict[str, Any]:
    """Return the edge generator's keyword arguments for :class:`ResnetGenerator` (a fresh copy).

    Returns:
        ``{"ngf": 8, "n_blocks": 6, "separable": True, "space_to_depth": 1, "antialias": False,
        "antialias_up": False}``: 0.23 GMAC and 0.03 M parameters at 224x224 (15 ms in
        onnxruntime on 2 CPU cores), works for CycleGAN and CUT (CUT's ``layers``/``encode_only``
        feature extraction included) and exports to ONNX.

    Example:
        >>> g = ResnetGenerator(**edge_generator_kwargs())
    """
    return dict(EDGE_GENERATOR_PRESET)


def _binomial_kernel(taps: Sequence[float]) -> Tensor:
    row = torch.tensor(taps, dtype=torch.float32)
    kernel = row[:, None] * row[None, :]
    return kernel / kernel.sum()


class BlurDownsample(nn.Module):
    """CUT's anti-aliased downsampling: a fixed [1, 2, 1] binomial blur, reflect padding, stride 2.

    The kernel is the non-learned buffer ``filt`` of shape (C, 1, 3, 3) so official CUT state_dicts
    (keys ``model.N.filt``) load unchanged.

    Args:
        channels: number of channels C (the blur is depthwise).

    Shape:
        - Input: (B, C, H, W), H and W >= 2.
        - Output: (B, C, ceil(H / 2), ceil(W / 2)).
    """

    filt: Tensor

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.channels = channels
        self.pad = ReflectionPad2d(1)
        kernel = _binomial_kernel([1.0, 2.0, 1.0])
        self.register_buffer("filt", kernel[None, None].repeat(channels, 1, 1, 1))

    def forward(self, x: Tensor) -> Tensor:
        """Blur and subsample ``x`` (B, C, H, W) -> (B, C, ceil(H/2), ceil(W/2)).

        Under ``torch.compile`` with a channels_last input the depthwise convolution is written as
        its nine weighted strided slices (:func:`blur_downsample_taps`), which Inductor fuses
        into one kernel forward and backward; otherwise torch's convolution."""
        if _keeps_channels_last(x):
            return blur_downsample_taps(self.pad(x), self.filt)
        return F.conv2d(self.pad(x), self.filt, stride=2, groups=self.channels)


class BlurUpsample(nn.Module):
    """CUT's anti-aliased upsampling: a transposed [1, 3, 3, 1] blur with replicate padding.

    The kernel (scaled by stride² = 4 so a constant image stays constant) is the non-learned buffer
    ``filt`` of shape (C, 1, 4, 4), as in official CUT state_dicts.

    Args:
        channels: number of channels C (the blur is depthwise).

    Shape:
        - Input: (B, C, H, W).
        - Output: (B, C, 2H, 2W).
    """

    filt: Tensor

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.channels = channels
        self.pad = ReplicationPad2d(1)
        kernel = _binomial_kernel([1.0, 3.0, 3.0, 1.0]) * 4.0
        self.register_buffer("filt", kernel[None, None].repeat(channels, 1, 1, 1))

    def forward(self, x: Tensor) -> Tensor:
        """Upsample ``x`` (B, C, H, W) -> (B, C, 2H, 2W).

        Under ``torch.compile`` with a channels_last input the transposed depthwise convolution
        is written as its four output phases, each a weighted sum of four shifted slices
        (:func:`blur_upsample_taps`); otherwise torch's transposed convolution."""
        if _keeps_channels_last(x):
            return blur_upsample_taps(self.pad(x), self.filt).contiguous(memory_format=torch.channels_last)
        y = F.conv_transpose2d(self.pad(x), self.filt, stride=2, padding=2, groups=self.channels)
        return y[:, :, 1:-1, 1:-1]  # (B, C, 2H + 2, 2W + 2) -> (B, C, 2H, 2W)


def blur_downsample_taps(xp: Tensor, filt: Tensor) -> Tensor:
    """``F.conv2d(xp, filt, stride=2, groups=C)`` as a weighted sum of strided slices of ``xp``.

    cuDNN runs CUT's depthwise blur convolutions with slow generic kernels (their input gradient,
    ``dgrad2d_c1_k1_nhwc``, was the second-largest kernel of a compiled CUT iteration at batch 8);
    as k² multiply-adds of slices, forward and backward are pointwise work that Inductor fuses.

    Args:
        xp: (B, C, Hp, Wp), already padded.
        filt: (C, 1, k, k) depthwise kernel (BlurDownsample's buffer).

    Returns:
        (B, C, (Hp - k) // 2 + 1, (Wp - k) // 2 + 1) in ``xp``'s dtype and layout.
    """
    c, k = xp.shape[1], filt.shape[-1]
    ho, wo = (xp.shape[2] - k) // 2 + 1, (xp.shape[3] - k) // 2 + 1
    w = filt.to(xp.dtype)[:, 0]
    out: Tensor | None = None
    for a in range(k):
        for b in range(k):
            term = xp[:, :, a:a + 2 * ho - 1:2, b:b + 2 * wo - 1:2] * w[:, a, b].view(1, c, 1, 1)
            out = term if out is None else out + term
    assert out is not None
    return out


#: Transposed convolution, stride 2, padding 2, 4 taps, cropped by 1 (BlurUpsample): output
#: phase r of an axis takes, per (offset into the padded input, tap of the kernel) pair, these.
_UP_PHASES = {0: ((0, 3), (1, 1)), 1: ((1, 2), (2, 0))}


def blur_upsample_taps(xp: Tensor, filt: Tensor) -> Tensor:
    """BlurUpsample's ``F.conv_transpose2d(xp, filt, stride=2, padding=2, groups=C)[..., 1:-1, 1:-1]``
    as its four output phases: output pixel (2j + r, 2i + s) is the sum over the phase's four
    (offset, tap) pairs per axis of ``filt[:, 0, tap_h, tap_w] * xp[:, :, j + off_h, i + off_w]``.

    Args:
        xp: (B, C, H + 2, W + 2), the input padded by 1 (BlurUpsample pads by replication).
        filt: (C, 1, 4, 4) depthwise kernel (BlurUpsample's buffer).

    Returns:
        (B, C, 2H, 2W) in ``xp``'s dtype.
    """
    c, n, m = xp.shape[1], xp.shape[2] - 2, xp.shape[3] - 2
    w = filt.to(xp.dtype)[:, 0]
    rows: list[Tensor] = []
    for rh in (0, 1):
        cols: list[Tensor] = []
        for rw in (0, 1):
            acc: Tensor | None = None
            for dh, ah in _UP_PHASES[rh]:
                for dw, aw in _UP_PHASES[rw]:
                    term = xp[:, :, dh:dh + n, dw:dw + m] * w[:, ah, aw].view(1, c, 1, 1)
                    acc = term if acc is None else acc + term
            assert acc is not None
            cols.append(acc)
        rows.append(torch.stack(cols, dim=-1).flatten(-2))  # (B, C, H, 2W): columns interleaved
    return torch.stack(rows, dim=3).flatten(2, 3)  # (B, C, H, 2, 2W) -> (B, C, 2H, 2W)


def _is_channels_last(x: Tensor) -> bool:
    """Whether ``x`` is a 4-D tensor laid out channels_last (and not also NCHW-contiguous)."""
    return x.dim() == 4 and not x.is_contiguous() and x.is_contiguous(memory_format=torch.channels_last)


def _keeps_channels_last(x: Tensor) -> bool:
    """Whether a layer takes its layout-keeping path for ``x``: a channels_last input under
    ``torch.compile`` (``step.compile=true``), where Inductor fuses the few ops it is made of and
    the convolutions then get channels_last inputs without copies. In eager mode, while exporting
    and while tracing the layers stay torch's own (ONNX keeps its InstanceNormalization and Pad
    nodes; eager runs are unchanged: there, at batch 8 on an H200, the float32 casts of the
    layout-keeping path cost what the layout copies did, CycleGAN 6.7 it/s against 7.0 with
    torch's layers). Compiled, CycleGAN went from 13.2 to 17.4 it/s at batch 8 and from 58.1 to
    63.7 at batch 1 (README, training speed)."""
    # is_compiling() first: in eager runs (every layer, every forward) nothing else is evaluated
    return (torch.compiler.is_compiling() and _is_channels_last(x)
            and not torch.onnx.is_in_onnx_export() and not torch.jit.is_tracing()
            and not torch.jit.is_scripting())


def _at_least_float32(x: Tensor) -> Tensor:
    return x.float() if x.dtype in (torch.float16, torch.bfloat16) else x


class _InstanceNormCL(torch.autograd.Function):
    """Instance norm (no affine) with a hand-written backward, both in the input's layout."""

    @staticmethod
    def forward(ctx: Any, x: Tensor, eps: float) -> Tensor:
        var, mean = torch.var_mean(_at_least_float32(x), dim=(2, 3), correction=0, keepdim=True)
        rstd = torch.rsqrt(var + eps)
        ctx.save_for_backward(x, mean, rstd)
        return torch.addcmul(-mean * rstd, x, rstd).to(x.dtype)

    @staticmethod
    def backward(ctx: Any, dy: Tensor) -> tuple[Tensor, None]:
        x, mean, rstd = ctx.saved_tensors
        xhat = (_at_least_float32(x) - mean) * rstd
        dyf = _at_least_float32(dy)
        m1 = dyf.mean(dim=(2, 3), keepdim=True)
        m2 = (dyf * xhat).mean(dim=(2, 3), keepdim=True)
        return ((dyf - m1 - xhat * m2) * rstd).to(x.dtype), None


def instance_norm_channels_last(x: Tensor, eps: float = 1e-5) -> Tensor:
    """Instance norm without affine parameters that keeps ``x``'s memory layout, forward and backward.

    ``F.instance_norm`` runs as a batch norm of a ``(1, B*C, H, W)`` view, so a channels_last input
    is first copied to NCHW, the output comes back NCHW, and the next convolution copies it to
    channels_last again (and the backward likewise): on the fast executor (channels_last, bf16)
    those layout copies were the largest GPU cost of a CycleGAN iteration at batch 8
    (``bench/train_speed.py --profile``; README, training speed). Here the statistics are reduced
    over H and W in float32 (also for a bf16 input, as the batch-norm kernels do), the backward is
    written out (dx = rstd · (dy − mean(dy) − x̂ · mean(dy · x̂))) so that no gradient is made in
    NCHW either, and the output has ``x``'s layout and dtype.

    Args:
        x: (B, C, H, W), any memory layout, float32 / bf16 / fp16.
        eps: added to the biased variance (torch's default 1e-5).

    Returns:
        (B, C, H, W) like ``x``: per-sample, per-channel zero mean and unit (biased) variance.
    """
    out: Tensor = _InstanceNormCL.apply(x, float(eps))
    return out


class InstanceNorm2d(nn.InstanceNorm2d):
    """``nn.InstanceNorm2d`` (the official one: no affine parameters, no running stats, so no
    state_dict keys) that, under ``torch.compile``, keeps a channels_last input channels_last
    (:func:`instance_norm_channels_last`); eager runs, other inputs and export take torch's own
    path (:func:`_keeps_channels_last` says why).

    Shape:
        - Input: (B, C, H, W).
        - Output: (B, C, H, W); compiled and channels_last in, channels_last out.
    """

    def forward(self, x: Tensor) -> Tensor:
        """Normalise ``x`` (B, C, H, W) per sample and channel."""
        if self.affine or self.track_running_stats or not _keeps_channels_last(x):
            return super().forward(x)
        return instance_norm_channels_last(x, self.eps)


class _Pad1dCL(torch.autograd.Function):
    """Reflection / replication padding of one axis by concatenation, with a backward that makes
    one copy of the gradient in the input's layout and adds the borders back in place."""

    @staticmethod
    def forward(ctx: Any, x: Tensor, dim: int, before: int, after: int, mode: str) -> Tensor:
        n = x.shape[dim]
        ctx.dim, ctx.before, ctx.after, ctx.mode, ctx.n = dim, before, after, mode, n
        ctx.fmt = torch.channels_last if _is_channels_last(x) else torch.contiguous_format
        if mode == "reflect":
            head = x.narrow(dim, 1, before).flip(dim)
            tail = x.narrow(dim, n - 1 - after, after).flip(dim)
        else:
            head = x.narrow(dim, 0, 1).repeat_interleave(before, dim)
            tail = x.narrow(dim, n - 1, 1).repeat_interleave(after, dim)
        parts = [q for q in (head, x, tail) if q.shape[dim]]
        return torch.cat([q.contiguous(memory_format=ctx.fmt) for q in parts], dim)

    @staticmethod
    def backward(ctx: Any, g: Tensor) -> tuple[Tensor, None, None, None, None]:
        dim, before, after, n = ctx.dim, ctx.before, ctx.after, ctx.n
        gx = g.narrow(dim, before, n).contiguous(memory_format=ctx.fmt)
        g_head, g_tail = g.narrow(dim, 0, before), g.narrow(dim, before + n, after)
        if ctx.mode == "reflect":
            gx.narrow(dim, 1, before).add_(g_head.flip(dim))
            gx.narrow(dim, n - 1 - after, after).add_(g_tail.flip(dim))
        else:
            gx.narrow(dim, 0, 1).add_(g_head.sum(dim, keepdim=True))
            gx.narrow(dim, n - 1, 1).add_(g_tail.sum(dim, keepdim=True))
        return gx, None, None, None, None


def pad_channels_last(x: Tensor, pad: Sequence[int], mode: str) -> Tensor:
    """Reflection or replication padding that keeps ``x``'s memory layout, forward and backward:
    per axis, the borders are slices (flipped for reflection) concatenated with ``x``; the
    backward copies the gradient's inner part once and adds the borders back onto it. torch's
    pad kernels return NCHW for a channels_last input, and their backward was the second-largest
    cost of a CycleGAN iteration at batch 8 after the layout copies.

    Args:
        x: (B, C, H, W).
        pad: (left, right, top, bottom), each smaller than the padded size (as ``F.pad``'s
            reflect mode requires).
        mode: ``"reflect"`` (the edge pixel is not repeated, as ``nn.ReflectionPad2d``) or
            ``"replicate"``.

    Returns:
        (B, C, H + top + bottom, W + left + right), equal to ``F.pad(x, pad, mode)``, in ``x``'s layout.
    """
    if mode not in ("reflect", "replicate"):
        raise ValueError(f"mode must be 'reflect' or 'replicate', got {mode!r}")
    left, right, top, bottom = (int(v) for v in pad)
    for dim, before, after in ((3, left, right), (2, top, bottom)):
        if before or after:
            if mode == "reflect" and max(before, after) >= x.shape[dim]:
                raise ValueError(f"reflect padding {max(before, after)} must be smaller than the "
                                 f"input's size {x.shape[dim]} along dim {dim}")
            x = _Pad1dCL.apply(x, dim, before, after, mode)
    return x


class _ChannelsLastPad(nn.Module):
    """The forward of :class:`ReflectionPad2d` / :class:`ReplicationPad2d`: under ``torch.compile``
    a channels_last input goes through :func:`pad_channels_last`, anything else through torch's
    own pad layer (the next class in the MRO)."""

    mode: str

    def forward(self, x: Tensor) -> Tensor:
        """Pad ``x`` (B, C, H, W) -> (B, C, H + top + bottom, W + left + right)."""
        if not _keeps_channels_last(x):
            return super().forward(x)  # type: ignore[no-any-return]
        padding: Sequence[int] = getattr(self, "padding")  # noqa: B009  (torch's pad layer holds it)
        return pad_channels_last(x, padding, self.mode)


class ReflectionPad2d(_ChannelsLastPad, nn.ReflectionPad2d):
    """``nn.ReflectionPad2d`` that, under ``torch.compile``, keeps a channels_last input channels_last
    (:func:`pad_channels_last`); eager runs, other inputs and export take torch's own path.

    Shape:
        - Input: (B, C, H, W).
        - Output: (B, C, H + top + bottom, W + left + right); compiled and channels_last in,
          channels_last out.
    """

    mode = "reflect"


class ReplicationPad2d(_ChannelsLastPad, nn.ReplicationPad2d):
    """``nn.ReplicationPad2d`` that, under ``torch.compile``, keeps a channels_last input channels_last
    (:func:`pad_channels_last`); eager runs, other inputs and export take torch's own path.

    Shape:
        - Input: (B, C, H, W).
        - Output: (B, C, H + top + bottom, W + left + right); compiled and channels_last in,
          channels_last out.
    """

    mode = "replicate"


def _instance_norm(channels: int) -> nn.InstanceNorm2d:
    # The official instance norm: no affine parameters, no running stats, so no state_dict keys.
    return InstanceNorm2d(channels, affine=False, track_running_stats=False)


def _pad_layer(padding_type: str, size: int) -> nn.Module | None:
    if padding_type == "reflect":
        return ReflectionPad2d(size)
    if padding_type == "replicate":
        return ReplicationPad2d(size)
    return None  # "zero": the conv pads itself


class SeparableConv2d(nn.Module):
    """Depthwise-separable 3x3 conv as GAN Compression's mobile generator: depthwise -> norm -> 1x1.

    Args:
        in_channels: input channels C_in.
        out_channels: output channels C_out.
        padding: zero padding of the depthwise conv (0 when a padding layer precedes it).
        bias: whether the convs have a bias.

    Shape:
        - Input: (B, C_in, H, W).
        - Output: (B, C_out, H + 2 * padding - 2, W + 2 * padding - 2).
    """

    def __init__(self, in_channels: int, out_channels: int, padding: int = 0, bias: bool = True):
        super().__init__()
        self.depthwise = nn.Conv2d(
            in_channels, in_channels, 3, padding=padding, groups=in_channels, bias=bias
        )
        self.norm = _instance_norm(in_channels)
        self.pointwise = nn.Conv2d(in_channels, out_channels, 1, bias=bias)

    def forward(self, x: Tensor) -> Tensor:
        """Apply the depthwise conv, the norm and the pointwise conv."""
        return self.pointwise(self.norm(self.depthwise(x)))


class ResnetBlock(nn.Module):
    """Residual block ``x + conv_block(x)``, ``conv_block`` laid out as the official one.

    ``conv_block`` = [pad, conv3x3, norm, ReLU, (Dropout 0.5), pad, conv3x3, norm]; with zero
    padding the pad layers are absent and the convs pad by 1. ``separable=True`` replaces each
    conv3x3 by a :class:`SeparableConv2d` in the same position.

    Args:
        dim: channels C.
        padding_type: ``"reflect"``, ``"replicate"`` or ``"zero"``.
        use_dropout: insert Dropout(0.5) after the first ReLU.
        use_bias: whether the convs have a bias (True with instance norm, as the official).
        separable: use depthwise-separable convs.

    Shape:
        - Input: (B, C, H, W), H and W >= 2 with reflect padding.
        - Output: (B, C, H, W).
    """

    def __init__(
        self,
        dim: int,
        padding_type: str = "reflect",
        use_dropout: bool = False,
        use_bias: bool = True,
        separable: bool = False,
    ) -> None:
        super().__init__()
        if padding_type not in _PADDING_TYPES:
            raise ValueError(f"padding_type must be one of {_PADDING_TYPES}, got {padding_type!r}")
        p = 1 if padding_type == "zero" else 0
        layers: list[nn.Module] = []
        for second in (False, True):
            pad = _pad_layer(padding_type, 1)
            if pad is not None:
                layers.append(pad)
            if separable:
                layers.append(SeparableConv2d(dim, dim, padding=p, bias=use_bias))
            else:
                layers.append(nn.Conv2d(dim, dim, kernel_size=3, padding=p, bias=use_bias))
            layers.append(_instance_norm(dim))
            if not second:
                layers.append(nn.ReLU(True))
                if use_dropout:
                    layers.append(nn.Dropout(0.5))
        self.conv_block = nn.Sequential(*layers)

    def forward(self, x: Tensor) -> Tensor:
        """Return ``x + conv_block(x)``."""
        return x + self.conv_block(x)


def _is_exporting() -> bool:
    # Python-side shape checks would be baked into (or warn during) a TorchScript/ONNX trace.
    return bool(
        torch.jit.is_tracing() or torch.jit.is_scripting() or torch.onnx.is_in_onnx_export()
    )


class ChannelGain(nn.Module):
    """A fixed per-channel gain on the [0, 1] intensities: a white balance (von Kries) fitted to the sim look.

    The real→sim generator's optional first layer (``colour_match``). :meth:`fit` sets it once,
    before training, so that the real training frames' mean of each channel equals the sim
    training frames': ``gain_c = mean_sim_c / mean_real_c`` on intensities in [0, 1] (grey-world
    white balance with the sim frames as the reference). A camera's white balance, colour cast of
    the light and exposure are per-channel gains of the frame (the von Kries model), so the layer
    undoes them exactly up to clipping, whatever their size, and leaves contrast, texture and the
    objects' relative colours to the network. It is not trained; its buffer travels in checkpoints
    and in the ONNX export (an Add and a Mul), so the robot applies the same gain. Identity until
    fitted.

    Args:
        channels: the input's channels.

    Shape:
        - Input: (N, C, H, W) in [-1, 1].
        - Output: the same shape and memory format, ``(x + 1) · gain − 1`` (above 1 where a gain
          > 1 meets a bright pixel).
    """

    gain: Tensor
    fitted: Tensor

    def __init__(self, channels: int = 3) -> None:
        super().__init__()
        self.register_buffer("gain", torch.ones(channels))
        self.register_buffer("fitted", torch.zeros((), dtype=torch.bool))

    @torch.no_grad()
    def fit(self, src_mean: Tensor, dst_mean: Tensor, max_gain: float = 4.0) -> None:
        """Set ``gain = (dst_mean + 1) / (src_mean + 1)``, clamped to [1 / ``max_gain``, ``max_gain``].

        Args:
            src_mean, dst_mean: (C,) per-channel means of frames in [-1, 1] (real, sim).
            max_gain: the largest gain (and the inverse of the smallest) allowed.
        """
        src, dst = (torch.as_tensor(t, dtype=torch.float32).reshape(-1) for t in (src_mean, dst_mean))
        if src.numel() != self.gain.numel() or dst.numel() != self.gain.numel() or not bool(
                torch.isfinite(src).all() and torch.isfinite(dst).all()):
            raise ValueError(f"ChannelGain.fit needs {self.gain.numel()} finite means each, got "
                             f"{src.tolist()} and {dst.tolist()}")
        self.gain.copy_(((dst + 1.0) / (src + 1.0).clamp_min(1e-6)).clamp(1.0 / max_gain, max_gain))
        self.fitted.fill_(True)

    def forward(self, x: Tensor) -> Tensor:
        """Apply the gain: (N, C, H, W) → (N, C, H, W)."""
        return (x + 1.0) * self.gain.view(1, -1, 1, 1).to(x.dtype) - 1.0


class ResnetGenerator(nn.Module):
    """ResNet translator generator of CycleGAN and CUT (and the edge variant), official layout.

    ``self.model`` is an ``nn.Sequential`` whose module order matches the official code, so
    official state_dicts load with ``strict=True`` and no key mapping: reflect pad, 7x7 conv,
    norm, ReLU; two downsamplings; ``n_blocks`` residual blocks; two upsamplings; reflect pad,
    7x7 conv, tanh. Norms are ``InstanceNorm2d(affine=False)``; convs have biases.

    - ``antialias=False`` (CycleGAN): downsampling = conv3x3 stride 2 -> norm -> ReLU.
    - ``antialias=True`` (CUT): conv3x3 stride 1 -> norm -> ReLU -> :class:`BlurDownsample`.
    - ``antialias_up=False`` (CycleGAN): ConvTranspose2d 3x3 stride 2 -> norm -> ReLU.
    - ``antialias_up=True`` (CUT): :class:`BlurUpsample` -> conv3x3 -> norm -> ReLU.
    - ``separable=True``: the residual blocks use depthwise-separable convs (edge generator, see
      :func:`edge_generator_kwargs`).

    Accepted input sizes: H and W multiples of 4 and at least 8 (the two stride-2 downsamplings
    must be undone exactly by the two upsamplings, and the bottleneck needs 2 pixels for its
    reflect padding); anything else raises ``ValueError``. The official code accepts other sizes
    silently and returns an image of a different size, which crashes later in the losses.

    Args:
        input_nc: input channels.
        output_nc: output channels.
        ngf: channels of the first conv (doubled at each downsampling).
        n_blocks: number of residual blocks (>= 0).
        use_dropout: Dropout(0.5) in the residual blocks.
        antialias: CUT's blur-pool downsampling.
        antialias_up: CUT's blur upsampling.
        padding_type: padding inside the residual blocks: ``"reflect"``, ``"replicate"``, ``"zero"``.
        separable: depthwise-separable residual blocks.
        space_to_depth: fold s×s pixel blocks into channels first (``PixelUnshuffle``) and unfold
            them last (``PixelShuffle``), so the network runs at 1/s resolution.
        residual: predict a change of the input, ``tanh(atanh(x) + net(x))``, instead of the
            image itself: with the small initial weights the translator starts as the identity,
            so content (a small red toy) survives from the first step while the style is learnt.
        colour_match: a fixed :class:`ChannelGain` first (``self.colour``, fitted before
            training from the real and sim frames' channel means); everything after it,
            the residual's input included, sees the matched frame.

    Shape:
        - Input: (B, input_nc, H, W), values in [-1, 1].
        - Output: (B, output_nc, H, W), values in [-1, 1].

    Example:
        >>> g = ResnetGenerator(ngf=16, antialias=True, antialias_up=True)
        >>> g(torch.zeros(1, 3, 64, 64)).shape
        torch.Size([1, 3, 64, 64])
        >>> [f.shape[1] for f in g(torch.zeros(1, 3, 64, 64), layers=[0, 4], encode_only=True)]
        [3, 32]
    """

    def __init__(
        self,
        input_nc: int = 3,
        output_nc: int = 3,
        ngf: int = 64,
        n_blocks: int = 9,
        use_dropout: bool = False,
        antialias: bool = False,
        antialias_up: bool = False,
        padding_type: str = "reflect",
        separable: bool = False,
        space_to_depth: int = 1,
        residual: bool = False,
        colour_match: bool = False,
    ) -> None:
        super().__init__()
        if space_to_depth < 1:
            raise ValueError(f"space_to_depth must be >= 1, got {space_to_depth}")
        for name, value in (("input_nc", input_nc), ("output_nc", output_nc), ("ngf", ngf)):
            if value < 1:
                raise ValueError(f"{name} must be >= 1, got {value}")
        if n_blocks < 0:
            raise ValueError(f"n_blocks must be >= 0, got {n_blocks}")
        if padding_type not in _PADDING_TYPES:
            raise ValueError(f"padding_type must be one of {_PADDING_TYPES}, got {padding_type!r}")
        self.input_nc = input_nc
        self.output_nc = output_nc
        self.space_to_depth = space_to_depth
        self.separable = separable
        self.residual = residual
        # not in self.model, so official state_dicts still load with strict=True when it is off
        self.colour = ChannelGain(input_nc) if colour_match else None
        s2 = space_to_depth**2

        layers: list[nn.Module] = []
        channels: list[int] = []  # channels of each layer's output, for feature_channels()

        def add(module: nn.Module, out_channels: int) -> None:
            layers.append(module)
            channels.append(out_channels)

        if space_to_depth > 1:
            # edge generators: fold each s×s pixel block into channels, so every layer runs at
            # 1/s of the resolution (s² fewer MACs and bytes), and unfold it at the end
            add(nn.PixelUnshuffle(space_to_depth), input_nc * s2)
        add(ReflectionPad2d(3), input_nc * s2)
        add(nn.Conv2d(input_nc * s2, ngf, kernel_size=7, padding=0, bias=True), ngf)
        add(_instance_norm(ngf), ngf)
        add(nn.ReLU(True), ngf)
        for i in range(2):
            c_in, c_out = ngf * 2**i, ngf * 2 ** (i + 1)
            stride = 1 if antialias else 2
            add(nn.Conv2d(c_in, c_out, 3, stride=stride, padding=1, bias=True), c_out)
            add(_instance_norm(c_out), c_out)
            add(nn.ReLU(True), c_out)
            if antialias:
                add(BlurDownsample(c_out), c_out)
        dim = ngf * 4
        for _ in range(n_blocks):
            add(ResnetBlock(dim, padding_type, use_dropout, True, separable), dim)
        for i in range(2):
            c_in, c_out = ngf * 2 ** (2 - i), ngf * 2 ** (1 - i)
            if antialias_up:
                add(BlurUpsample(c_in), c_in)
                add(nn.Conv2d(c_in, c_out, 3, stride=1, padding=1, bias=True), c_out)
            else:
                up = nn.ConvTranspose2d(c_in, c_out, 3, stride=2, padding=1, output_padding=1)
                add(up, c_out)
            add(_instance_norm(c_out), c_out)
            add(nn.ReLU(True), c_out)
        add(ReflectionPad2d(3), ngf)
        add(nn.Conv2d(ngf, output_nc * s2, kernel_size=7, padding=0), output_nc * s2)
        if space_to_depth > 1:
            add(nn.PixelShuffle(space_to_depth), output_nc)
        # residual: the tanh moves to forward(), applied to (atanh(input) + last conv output)
        add(nn.Identity() if residual else nn.Tanh(), output_nc)
        if residual and output_nc != input_nc:
            raise ValueError("residual=True needs output_nc == input_nc")
        self.model = nn.Sequential(*layers)
        self.layer_channels: tuple[int, ...] = tuple(channels)

    def feature_channels(self, layers: Sequence[int]) -> list[int]:
        """Channels of the activations after the given positions of ``self.model``.

        Args:
            layers: positions in ``self.model`` (e.g. CUT's ``[0, 4, 8, 12, 16]``).

        Returns:
            One channel count per position, for :class:`PatchSampleF`'s ``in_channels``.
        """
        return [self.layer_channels[i] for i in self._check_layers(layers)]

    def _check_layers(self, layers: Sequence[int]) -> list[int]:
        layers = [int(i) for i in layers]  # also accepts a LongTensor of positions
        n = len(self.model)
        if not layers:
            raise ValueError("layers must name at least one position of self.model")
        if any(not 0 <= i < n for i in layers) or any(
            a >= b for a, b in zip(layers, layers[1:], strict=False)
        ):
            raise ValueError(
                f"layers must be strictly increasing positions in [0, {n}) of self.model, "
                f"got {list(layers)}"
            )
        return layers

    def _check_input(self, x: Tensor) -> None:
        if _is_exporting():
            return
        if x.ndim != 4 or x.shape[1] != self.input_nc:
            raise ValueError(f"x must have shape (B, {self.input_nc}, H, W), got {tuple(x.shape)}")
        h, w = x.shape[-2:]
        m = 4 * self.space_to_depth
        if h % m or w % m or h < 2 * m or w < 2 * m:
            raise ValueError(
                f"ResnetGenerator accepts H and W that are multiples of {m} and at least {2 * m} "
                "(two stride-2 downsamplings"
                + (f" after a {self.space_to_depth}x space-to-depth" if self.space_to_depth > 1 else "")
                + f" must be undone exactly), got x of shape {tuple(x.shape)}; resize or crop the "
                "input first"
            )

    def forward(
        self, x: Tensor, layers: Sequence[int] | None = None, encode_only: bool = False
    ) -> Tensor | list[Tensor] | tuple[Tensor, list[Tensor]]:
        """Translate ``x``; with ``layers``, also (or only) return intermediate activations.

        This is CUT's generator interface; ``forward(x)`` is the deployable path.

        Args:
            x: images (B, input_nc, H, W) in [-1, 1].
            layers: strictly increasing positions in ``self.model`` whose outputs to collect.
            encode_only: with ``layers``, stop after the last of them and return only the
                activations (see :meth:`encode`).

        Returns:
            The translated image (B, output_nc, H, W) without ``layers``; the list of activations
            with ``layers`` and ``encode_only``; ``(image, activations)`` with ``layers`` alone.
        """
        if layers is None or len(layers) == 0:
            self._check_input(x)
            x = self._match(x)
            return self._finish(x, self.model(x))
        if encode_only:
            return self.encode(x, layers)
        return self.forward_with_features(x, layers)

    def encode(self, x: Tensor, layers: Sequence[int]) -> list[Tensor]:
        """Return the activations after ``layers`` (positions in ``self.model``), in order.

        Only the modules up to ``layers[-1]`` run.

        Args:
            x: images (B, input_nc, H, W).
            layers: strictly increasing positions in ``self.model``.

        Returns:
            One tensor (B, C_i, H_i, W_i) per position; C_i = ``feature_channels(layers)[i]``.
        """
        layers = self._check_layers(layers)
        self._check_input(x)
        x = self._match(x)
        wanted = set(layers)
        feats: list[Tensor] = []
        for i, layer in enumerate(self.model):
            x = layer(x)
            if i in wanted:
                feats.append(x)
            if i == layers[-1]:
                break
        return feats

    def forward_with_features(
        self, x: Tensor, layers: Sequence[int]
    ) -> tuple[Tensor, list[Tensor]]:
        """Return the translated image and the activations after ``layers``.

        Args:
            x: images (B, input_nc, H, W).
            layers: strictly increasing positions in ``self.model``.

        Returns:
            ``(image, feats)``: image (B, output_nc, H, W) and one tensor per position, equal to
            :meth:`encode`'s (CUT's PatchNCE keys may come from here).

        As in the official code, an activation followed by an in-place layer (``ReLU(True)``) is
        what that layer leaves in it, except after the last position, where :meth:`encode` stops:
        that one is copied before the in-place layer runs, so both methods agree.
        """
        layers = self._check_layers(layers)
        self._check_input(x)
        x = self._match(x)
        wanted = set(layers)
        feats: list[Tensor] = []
        x_in = x
        for i, layer in enumerate(self.model):
            x = layer(x)
            if i in wanted:
                nxt = self.model[i + 1] if i + 1 < len(self.model) else None
                feats.append(x.clone() if i == layers[-1] and getattr(nxt, "inplace", False) else x)
        return self._finish(x_in, x), feats

    def _match(self, x: Tensor) -> Tensor:
        return x if self.colour is None else self.colour(x)

    def _finish(self, x_in: Tensor, out: Tensor) -> Tensor:
        if not self.residual:
            return out
        # atanh of the input clipped inside (-1, 1), exact inverse of the output tanh; written with
        # log because the ONNX exporter has no atanh
        x = x_in.clamp(-0.999, 0.999)
        return torch.tanh(0.5 * torch.log((1 + x) / (1 - x)) + out)


def _discriminator_output_size(size: int, n_layers: int, antialias: bool) -> int:
    """Spatial output size of :class:`NLayerDiscriminator` along one axis (<= 0: too small)."""
    for _ in range(n_layers):
        if antialias:
            size -= 1  # conv k4 s1 p1
            if size < 2:  # BlurDownsample's reflect padding needs 2 pixels
                return 0
            size = (size - 1) // 2 + 1
        else:
            size = (size - 2) // 2 + 1  # conv k4 s2 p1
            if size < 1:
                return 0
    return size - 2  # two conv k4 s1 p1


class NLayerDiscriminator(nn.Module):
    """PatchGAN discriminator (70x70 receptive field at ``n_layers=3``), official layout.

    conv4x4 s2 -> LeakyReLU(0.2); ``n_layers - 1`` x [conv4x4 s2 -> norm -> LeakyReLU];
    conv4x4 s1 -> norm -> LeakyReLU; conv4x4 s1 -> 1-channel logit map. Channel multipliers
    ``min(2**n, 8)``. ``antialias=True`` is CUT's variant: each stride-2 conv becomes a stride-1
    conv followed by :class:`BlurDownsample` (after the activation).

    Args:
        input_nc: input channels.
        ndf: channels of the first conv.
        n_layers: number of stride-2 stages.
        antialias: CUT's blur-pool variant.

    Shape:
        - Input: (B, input_nc, H, W) with H, W >= ``self.min_input_size`` (24 for the default
          3 layers without antialias, 22 with).
        - Output: (B, 1, H', W'); 256 -> 30 (CycleGAN), 64 -> 6.

    Example:
        >>> NLayerDiscriminator(ndf=16)(torch.zeros(2, 3, 64, 64)).shape
        torch.Size([2, 1, 6, 6])
    """

    def __init__(
        self, input_nc: int = 3, ndf: int = 64, n_layers: int = 3, antialias: bool = False
    ) -> None:
        super().__init__()
        if input_nc < 1 or ndf < 1 or n_layers < 1:
            raise ValueError(
                f"input_nc, ndf and n_layers must be >= 1, got {input_nc}, {ndf}, {n_layers}"
            )
        self.input_nc = input_nc
        stride = 1 if antialias else 2
        seq: list[nn.Module] = [
            nn.Conv2d(input_nc, ndf, kernel_size=4, stride=stride, padding=1),
            nn.LeakyReLU(0.2, True),
        ]
        if antialias:
            seq.append(BlurDownsample(ndf))
        mult = 1
        for n in range(1, n_layers):
            prev, mult = mult, min(2**n, 8)
            seq += [
                nn.Conv2d(ndf * prev, ndf * mult, kernel_size=4, stride=stride, padding=1),
                _instance_norm(ndf * mult),
                nn.LeakyReLU(0.2, True),
            ]
            if antialias:
                seq.append(BlurDownsample(ndf * mult))
        prev, mult = mult, min(2**n_layers, 8)
        seq += [
            nn.Conv2d(ndf * prev, ndf * mult, kernel_size=4, stride=1, padding=1),
            _instance_norm(ndf * mult),
            nn.LeakyReLU(0.2, True),
            nn.Conv2d(ndf * mult, 1, kernel_size=4, stride=1, padding=1),
        ]
        self.model = nn.Sequential(*seq)
        self.min_input_size = next(
            s for s in range(1, 4096) if _discriminator_output_size(s, n_layers, antialias) >= 1
        )

    def forward(self, x: Tensor) -> Tensor:
        """Return the patch logits (B, 1, H', W') for images ``x`` (B, input_nc, H, W)."""
        if not _is_exporting():
            if x.ndim != 4 or x.shape[1] != self.input_nc:
                raise ValueError(
                    f"x must have shape (B, {self.input_nc}, H, W), got {tuple(x.shape)}"
                )
            if min(x.shape[-2:]) < self.min_input_size:
                raise ValueError(
                    f"NLayerDiscriminator needs H and W >= {self.min_input_size}, "
                    f"got x of shape {tuple(x.shape)}"
                )
        return self.model(x)


def _l2_normalize(x: Tensor) -> Tensor:
    # The official Normalize: x / (||x|| + 1e-7), not F.normalize's max(||x||, eps). The 1e-30
    # under the root changes no value a float32 can tell apart but keeps the gradient finite for
    # an all-zero feature vector (the official sqrt(0) backward gives inf * 0 = NaN there).
    return x / (x.pow(2).sum(-1, keepdim=True).add(1e-30).sqrt() + 1e-7)


class _GradInInputLayout(torch.autograd.Function):
    """Identity whose backward hands the gradient on in the input's memory layout.

    :class:`PatchSampleF` reads feature maps through ``permute(0, 2, 3, 1)``, so the gradient that
    flows back into the generator is NHWC-strided. At batch size 1 (where such a tensor also
    counts as channels_last) torch's CPU ``InstanceNorm2d`` backward returns wrong input gradients
    for an NCHW input with that gradient (relative error ~1.4 in torch 2.14; batch size 2 and
    contiguous gradients are right): CUT's PatchNCE gradient into the generator was wrong at
    batch 1 on the CPU. Copying the gradient into the input's layout avoids that path.
    """

    @staticmethod
    def forward(ctx: Any, x: Tensor) -> Tensor:
        ctx.channels_last = (x.dim() == 4 and not x.is_contiguous()
                             and x.is_contiguous(memory_format=torch.channels_last))
        return x.view_as(x)

    @staticmethod
    def backward(ctx: Any, grad: Tensor) -> Tensor:
        fmt = torch.channels_last if ctx.channels_last else torch.contiguous_format
        return grad.contiguous(memory_format=fmt)


def sample_positions(n: int, k: int, generator: torch.Generator | None = None) -> Tensor:
    """``min(k, n)`` distinct positions out of ``n``, in random order: a uniformly random prefix of
    a permutation (what ``torch.randperm(n)[:k]`` draws), in O(k) host work instead of O(n).

    For ``n`` up to ``4 k`` it is ``randperm``. Above that, i.i.d. uniform draws with every repeat
    of an earlier draw skipped (sequential sampling without replacement, so each ordered sample
    is equally likely); a shortfall is topped up from the same generator. ``randperm`` of a 256²
    feature map (65,536 positions) for CUT's 256 patches took 0.6 ms of host time per layer on
    this project's 2-core CPU, 0.07 ms this way.

    Args:
        n: positions to choose from (H * W of a feature map).
        k: how many to keep.
        generator: CPU generator (None: torch's global one).

    Returns:
        (min(k, n),) int64 CPU tensor of distinct values in [0, n).
    """
    k = min(int(k), int(n))
    if n <= 4 * k:
        return torch.randperm(n, generator=generator)[:k]
    kept: list[int] = []
    seen: set[int] = set()
    while len(kept) < k:
        m = k - len(kept)
        for v in torch.randint(n, (m + 16 + 2 * m * m // n,), generator=generator).tolist():
            if v not in seen:
                seen.add(v)
                kept.append(v)
    return torch.tensor(kept[:k], dtype=torch.long)


class PatchSampleF(nn.Module):
    """CUT's patch sampler + projection head (``netF = mlp_sample``), built at construction.

    For each feature map: reshape to (B, H*W, C), keep the same random ``num_patches`` positions
    for every image of the batch, project with ``mlp_i`` = Linear(C_i, nc) -> ReLU -> Linear(nc,
    nc), L2-normalise. Parameter names ``mlp_0.0.weight`` ... match official CUT checkpoints.
    Initialise like CUT with ``init_weights(f, "xavier", 0.02)``.

    Args:
        in_channels: channels of each feature map, e.g. ``G.feature_channels([0, 4, 8, 12, 16])``.
        nc: output dimension of the projection.
        use_mlp: project (``mlp_sample``) or only sample and normalise (``sample``).

    Example:
        >>> f = PatchSampleF([3, 128, 256, 256, 256])
        >>> sum(p.numel() for p in f.parameters())
        560384
    """

    def __init__(self, in_channels: Sequence[int], nc: int = 256, use_mlp: bool = True) -> None:
        super().__init__()
        if use_mlp and (not in_channels or any(c < 1 for c in in_channels)):
            raise ValueError(f"in_channels must be positive channel counts, got {in_channels}")
        self.in_channels = list(in_channels)
        self.nc = nc
        self.use_mlp = use_mlp
        if use_mlp:
            for i, c in enumerate(self.in_channels):
                mlp = nn.Sequential(nn.Linear(c, nc), nn.ReLU(), nn.Linear(nc, nc))
                self.add_module(f"mlp_{i}", mlp)

    def forward(
        self,
        feats: Sequence[Tensor],
        num_patches: int = 256,
        patch_ids: Sequence[Tensor] | None = None,
        generator: torch.Generator | None = None,
    ) -> tuple[list[Tensor], list[Tensor]]:
        """Sample, project and normalise patches of each feature map.

        Args:
            feats: feature maps (B, C_i, H_i, W_i), as many as ``in_channels``.
            num_patches: positions per map (all of them, shuffled, if H_i * W_i is smaller);
                0 keeps every position and returns maps instead of patch lists.
            patch_ids: reuse the positions returned by an earlier call (one 1-D LongTensor per
                map), as CUT does to sample the same positions in the source and the output.
            generator: CPU generator for the positions (``torch.randperm`` on the CPU, then moved
                to the features' device), so the draw is reproducible and device-independent.

        Returns:
            ``(feats_out, patch_ids)``: for ``num_patches > 0`` each feats_out[i] is
            (B * P_i, nc) (or (B * P_i, C_i) without MLP), rows image-major; with
            ``num_patches=0`` it is (B, nc, H_i, W_i), unit-norm along channels (the official
            normalises that case along positions by accident) and ``patch_ids[i]`` is empty.
        """
        if self.use_mlp and len(feats) != len(self.in_channels):
            raise ValueError(
                f"feats must hold {len(self.in_channels)} feature maps, got {len(feats)}"
            )
        if patch_ids is not None and len(patch_ids) != len(feats):
            raise ValueError(f"patch_ids must hold {len(feats)} tensors, got {len(patch_ids)}")
        out_feats: list[Tensor] = []
        out_ids: list[Tensor] = []
        for i, feat in enumerate(feats):
            if feat.ndim != 4 or (self.use_mlp and feat.shape[1] != self.in_channels[i]):
                c = self.in_channels[i] if self.use_mlp else "C"
                raise ValueError(
                    f"feats[{i}] must have shape (B, {c}, H, W), got {tuple(feat.shape)}"
                )
            b, _, h, w = feat.shape
            # (B, H*W, C); the gradient goes back in feat's own layout (see _GradInInputLayout)
            flat = _GradInInputLayout.apply(feat).permute(0, 2, 3, 1).flatten(1, 2)
            if num_patches > 0:
                if patch_ids is not None:
                    ids = patch_ids[i].to(feat.device, non_blocking=True)
                else:
                    ids = sample_positions(h * w, num_patches, generator).to(feat.device, non_blocking=True)
                x = flat[:, ids, :].flatten(0, 1)  # (B*P, C)
            else:
                ids = torch.empty(0, dtype=torch.long, device=feat.device)
                x = flat
            if self.use_mlp:
                x = getattr(self, f"mlp_{i}")(x)
            x = _l2_normalize(x)
            if num_patches == 0:
                x = x.permute(0, 2, 1).reshape(b, x.shape[-1], h, w)
            out_feats.append(x)
            out_ids.append(ids)
        return out_feats, out_ids


def init_weights(net: ModuleT, init_type: str = "normal", init_gain: float = 0.02) -> ModuleT:
    """Initialise conv / linear weights in place, as the official ``init_weights``.

    Conv and Linear weights: ``normal`` N(0, init_gain) (CycleGAN), ``xavier`` xavier_normal with
    gain init_gain (CUT), ``kaiming`` kaiming_normal (fan_in, a=0), ``orthogonal`` with gain
    init_gain; their biases are zeroed. BatchNorm2d weights N(1, init_gain), biases 0. Buffers
    (CUT's blur kernels) are untouched. Modules are visited in the official order, so a network
    built and initialised after the same ``torch.manual_seed`` gets the official weights.

    Args:
        net: the module to initialise.
        init_type: ``"normal"``, ``"xavier"``, ``"kaiming"`` or ``"orthogonal"``.
        init_gain: std / gain as above.

    Returns:
        ``net`` (for chaining).
    """
    if init_type not in _INIT_TYPES:
        raise ValueError(f"init_type must be one of {_INIT_TYPES}, got {init_type!r}")

    def init_module(m: nn.Module) -> None:
        if isinstance(m, (nn.Conv1d, nn.Conv2d, nn.Conv3d, nn.ConvTranspose2d, nn.Linear)):
            if init_type == "normal":
                nn.init.normal_(m.weight, 0.0, init_gain)
            elif init_type == "xavier":
                nn.init.xavier_normal_(m.weight, gain=init_gain)
            elif init_type == "kaiming":
                nn.init.kaiming_normal_(m.weight, a=0, mode="fan_in")
            else:
                nn.init.orthogonal_(m.weight, gain=init_gain)
            if m.bias is not None:
                nn.init.constant_(m.bias, 0.0)
        elif isinstance(m, nn.BatchNorm2d) and m.weight is not None:
            nn.init.normal_(m.weight, 1.0, init_gain)
            nn.init.constant_(m.bias, 0.0)

    with torch.no_grad():
        net.apply(init_module)  # children before parents, as the official
    return net


_GENERATOR_KINDS: dict[str, dict[str, Any]] = {
    "cyclegan": {"antialias": False, "antialias_up": False},
    "cut": {"antialias": True, "antialias_up": True},
    "edge": EDGE_GENERATOR_PRESET,
}


def define_generator(kind: str, **kwargs: Any) -> ResnetGenerator:
    """Build a (not yet initialised) generator of a named kind; ``kwargs`` override the preset.

    Args:
        kind: ``"cyclegan"`` (transposed convs, 9 blocks, ngf 64), ``"cut"`` (antialiased down and
            up paths) or ``"edge"`` (:data:`EDGE_GENERATOR_PRESET`).
        **kwargs: further :class:`ResnetGenerator` arguments.

    Returns:
        The generator; initialise it with :func:`init_weights` (CycleGAN: ``"normal"``, CUT:
        ``"xavier"``, both gain 0.02).
    """
    if kind not in _GENERATOR_KINDS:
        raise ValueError(f"kind must be one of {sorted(_GENERATOR_KINDS)}, got {kind!r}")
    return ResnetGenerator(**{**_GENERATOR_KINDS[kind], **kwargs})


#: Per-model defaults under ``model.generator`` / ``model.discriminator`` (the official codes'):
#: CycleGAN initialises normal(0, 0.02); CUT xavier and antialiases down- and up-sampling. The
#: modules and the checkpoint loader read them from here, so a generator is rebuilt the same way.
GENERATOR_DEFAULTS: dict[str, dict[str, Any]] = {
    "cyclegan": {"init_type": "normal"},
    "cut": {"init_type": "xavier", "antialias": True, "antialias_up": True},
}
DISCRIMINATOR_DEFAULTS: dict[str, dict[str, Any]] = {
    "cyclegan": {"init_type": "normal"},
    "cut": {"init_type": "xavier", "antialias": True},
}


def build_generator(
    *,
    ngf: int = 64,
    n_blocks: int = 9,
    antialias: bool = False,
    antialias_up: bool = False,
    use_dropout: bool = False,
    separable: bool = False,
    space_to_depth: int = 1,
    residual: bool = False,
    colour_match: bool = False,
    init_type: str = "normal",
    init_gain: float = 0.02,
    input_nc: int = 3,
    output_nc: int = 3,
) -> ResnetGenerator:
    """Build and initialise a ResNet generator from plain config values.

    Args:
        ngf: channels of the first conv (64 official, 16 for the CPU demo).
        n_blocks: residual blocks (9 official for 256², 6 for small images).
        antialias, antialias_up: CUT's blur-pool down / blur up-sampling.
        use_dropout: dropout in the residual blocks (off officially).
        separable: depthwise-separable residual blocks (the edge preset).
        space_to_depth: run at 1/s resolution (PixelUnshuffle in, PixelShuffle out).
        residual: predict ``tanh(atanh(x) + net(x))``, starting as the identity.
        colour_match: a fixed per-channel white-balance gain first (:class:`ChannelGain`).
        init_type, init_gain: weight init (``normal`` for CycleGAN, ``xavier`` for CUT).

    Returns:
        The generator, mapping (N, 3, H, W) in [-1, 1] to (N, 3, H, W) in [-1, 1].
    """
    kwargs: dict[str, Any] = dict(
        input_nc=input_nc, output_nc=output_nc, ngf=ngf, n_blocks=n_blocks,
        use_dropout=use_dropout, antialias=antialias, antialias_up=antialias_up,
    )
    net = ResnetGenerator(**kwargs, separable=separable, space_to_depth=space_to_depth,
                          residual=residual, colour_match=colour_match)
    init_weights(net, init_type=init_type, init_gain=init_gain)
    return net


def build_discriminator(
    *,
    ndf: int = 64,
    n_layers: int = 3,
    antialias: bool = False,
    init_type: str = "normal",
    init_gain: float = 0.02,
    input_nc: int = 3,
    spectral_norm: bool = False,
) -> NLayerDiscriminator:
    """Build and initialise a PatchGAN discriminator (70×70 receptive field with 3 layers).

    Args:
        spectral_norm: divide every convolution's weight by its largest singular value (one
            power iteration per training forward; Miyato et al. 2018), after the initialisation.

    Returns:
        The discriminator, mapping (N, 3, H, W) to a patch map (N, 1, H', W').
    """
    net = NLayerDiscriminator(input_nc=input_nc, ndf=ndf, n_layers=n_layers, antialias=antialias)
    init_weights(net, init_type=init_type, init_gain=init_gain)
    if spectral_norm:
        for m in list(net.modules()):
            if isinstance(m, nn.Conv2d):
                nn.utils.parametrizations.spectral_norm(m)
    return net


def resolve_target(path: str, key: str) -> Any:
    """Import the object a config's ``_target_`` names (``package.module.Name``).

    Args:
        path: the dotted path.
        key: the config key, for the message (e.g. ``model.generator._target_``).

    Raises:
        ValueError: the path does not import; the message names the key.
    """
    module_name, _, attr = str(path).rpartition(".")
    try:
        return getattr(importlib.import_module(module_name), attr)
    except (ImportError, AttributeError, ValueError) as exc:
        raise ValueError(f"{key}={path!r} does not import: {exc}") from None


def network_spec(spec: Mapping[str, Any] | None, defaults: Mapping[str, Any],
                 builder: Callable[..., nn.Module]) -> dict[str, Any]:
    """A network's config with the model's defaults merged in where they apply.

    Args:
        spec: the config node: keyword arguments of ``builder``, or ``_target_`` (another
            network) with its own keyword arguments.
        defaults: the model's defaults for ``builder`` (e.g. CUT's anti-aliasing).
        builder: the project's builder of this network kind.

    Returns:
        ``{**defaults, **spec}`` without ``_target_`` when ``spec`` builds with ``builder``; else
        ``spec`` as given (another network has its own defaults).
    """
    spec = dict(spec or {})
    target = spec.get("_target_")
    if target is None or target == f"{builder.__module__}.{builder.__name__}":
        spec.pop("_target_", None)
        return {**defaults, **spec}
    return spec


def build_network(spec: Mapping[str, Any], builder: Callable[..., nn.Module], key: str) -> nn.Module:
    """Build a network from its config node (``model.generator``, ``model.discriminator``).

    Without ``_target_`` the node is the keyword arguments of ``builder``
    (:func:`build_generator`, :func:`build_discriminator`). With ``_target_`` it names a
    ``torch.nn.Module`` subclass (your own network; it must map (N, 3, H, W) in [-1, 1] like
    the one it replaces, and CUT's generator must also provide ``forward_with_features``) or
    one of this module's builders, and the other entries are its keyword arguments. Only
    classes and the builders are accepted, so a checkpoint's stored config can name no other
    callable.

    Args:
        spec: the node (after :func:`network_spec`).
        builder: the project's builder of this kind.
        key: the config key, for messages.

    Returns:
        The network.

    Raises:
        ValueError: the target does not import, or is neither an ``nn.Module`` class nor a builder.
    """
    kwargs = dict(spec)
    target = kwargs.pop("_target_", None)
    kwargs.pop("_partial_", None)
    if target is None:
        return builder(**kwargs)
    obj = resolve_target(str(target), f"{key}._target_")
    if obj in (build_generator, build_discriminator):
        return obj(**kwargs)  # type: ignore[no-any-return]
    if not (isinstance(obj, type) and issubclass(obj, nn.Module)):
        raise ValueError(f"{key}._target_={target!r} is not a torch.nn.Module class (or "
                         "models.networks.build_generator / build_discriminator)")
    try:
        return obj(**kwargs)
    except TypeError as exc:
        raise ValueError(f"{key}: {target}({', '.join(kwargs)}) failed: {exc}") from exc
