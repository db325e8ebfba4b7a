"""Parameter and multiply-accumulate (MAC) counts of translator networks."""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor, nn

from models.networks import BlurDownsample, BlurUpsample

__all__ = ["count_macs", "count_macs_by_module", "count_parameters"]


def count_parameters(module: nn.Module, trainable_only: bool = False) -> int:
    """Number of parameter values of ``module`` (buffers such as CUT's blur kernels excluded).

    Args:
        module: the network.
        trainable_only: count only parameters with ``requires_grad``.

    Returns:
        The count; the official 9-block ngf-64 generator has 11,378,179, the PatchGAN D 2,764,737.
    """
    return sum(p.numel() for p in module.parameters() if p.requires_grad or not trainable_only)


def _conv_macs(m: nn.Module, inputs: tuple[Tensor, ...], output: Tensor) -> int:
    if isinstance(m, nn.ConvTranspose2d):
        # each input value is scattered into k*k positions of C_out / groups channels
        k = m.kernel_size[0] * m.kernel_size[1]
        return inputs[0].numel() * (m.out_channels // m.groups) * k
    if isinstance(m, nn.Conv2d):
        k = m.kernel_size[0] * m.kernel_size[1]
        return output.numel() * (m.in_channels // m.groups) * k
    if isinstance(m, nn.Linear):
        return output.numel() * m.in_features
    if isinstance(m, BlurDownsample):
        return output.numel() * m.filt.shape[-2] * m.filt.shape[-1]  # depthwise 3x3
    if isinstance(m, BlurUpsample):
        b, c, h, w = inputs[0].shape  # transposed depthwise 4x4 over the 1-pixel padded input
        return b * c * (h + 2) * (w + 2) * m.filt.shape[-2] * m.filt.shape[-1]
    return 0


_COUNTED = (nn.Conv2d, nn.ConvTranspose2d, nn.Linear, BlurDownsample, BlurUpsample)


def count_macs_by_module(
    module: nn.Module, input_shape: Sequence[int], device: torch.device | str | None = None
) -> dict[str, int]:
    """MACs of each counted submodule for one forward pass on zeros of ``input_shape``.

    What is counted (one multiply-accumulate = 1): ``Conv2d`` (output values x C_in/groups x
    kernel area; grouped and depthwise convs included), ``ConvTranspose2d`` (input values x
    C_out/groups x kernel area), ``Linear`` (output values x in_features), and CUT's fixed blur
    layers as the depthwise convs they run (:class:`BlurDownsample`: output values x 9;
    :class:`BlurUpsample`: padded input values x 16). Biases, norms, activations, padding and
    additions are not counted. This convention gives CycleGAN's G 49.55 GMAC at 256x256 (37.94
    at 224x224) and CUT's antialiased G 64.13 GMAC at 256x256 (64.05 without the blur layers).

    Args:
        module: the network; run once in eval mode under ``torch.no_grad`` (its mode is
            restored). Modules built under ``torch.device("meta")`` work and cost nothing.
        input_shape: shape of the single input tensor, batch included, e.g. ``(1, 3, 256, 256)``.
        device: where to create the input; default: the device of the module's first
            parameter or buffer (CPU if it has none).

    Returns:
        ``{qualified submodule name: MACs}`` for the counted submodules that ran (a module
        called twice is summed).
    """
    if device is None:
        tensors = [*module.parameters(), *module.buffers()]
        device = tensors[0].device if tensors else torch.device("cpu")
    dtype = next((p.dtype for p in module.parameters()), torch.float32)
    counts: dict[str, int] = {}
    handles = []
    for name, sub in module.named_modules():
        if isinstance(sub, _COUNTED):

            def hook(m: nn.Module, inputs: tuple[Tensor, ...], output: Tensor, name: str = name):
                counts[name] = counts.get(name, 0) + _conv_macs(m, inputs, output)

            handles.append(sub.register_forward_hook(hook))
    was_training = module.training
    try:
        module.eval()
        with torch.no_grad():
            module(torch.zeros(tuple(input_shape), device=device, dtype=dtype))
    finally:
        for h in handles:
            h.remove()
        module.train(was_training)
    return counts


def count_macs(
    module: nn.Module, input_shape: Sequence[int], device: torch.device | str | None = None
) -> int:
    """Total multiply-accumulates of one forward pass (see :func:`count_macs_by_module`).

    Args:
        module: the network.
        input_shape: input shape, batch included: ``(1, 3, 224, 224)``.
        device: where to create the input (default: the module's device).

    Returns:
        MACs (divide by 1e9 for GMAC; FLOPs ~ 2 x MACs).

    Example:
        >>> from models.networks import ResnetGenerator
        >>> with torch.device("meta"):
        ...     g = ResnetGenerator()
        >>> round(count_macs(g, (1, 3, 256, 256)) / 1e9, 1)
        49.6
    """
    return sum(count_macs_by_module(module, input_shape, device).values())
