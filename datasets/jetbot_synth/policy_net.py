"""The reference sim policy: the seed's rl_games Jetbot network and its ONNX export."""

from __future__ import annotations

import copy
import os
import warnings
from pathlib import Path

import numpy as np
import torch
from torch import nn

from translate.fsutil import atomic_path
from translate.policy import SPEC_FILENAME, PolicySpec

__all__ = ["RlGamesJetbotNet", "export_rl_games_onnx"]

_MIN_SIZE = 36  # smallest side the three valid convolutions (k8 s4, k4 s2, k3 s1) accept


def _conv_out(size: int) -> int:
    size = (size - 8) // 4 + 1
    size = (size - 4) // 2 + 1
    return size - 3 + 1


class RlGamesJetbotNet(nn.Module):
    """rl_games' continuous A2C network as the seed's Jetbot config builds it.

    NHWC frames in 0–255 → NCHW / 255 → conv 32 k8 s4 → ReLU → conv 64 k4 s2 → ReLU → conv 64 k3
    s1 → ReLU → flatten → Linear 512 → ELU → heads ``mu`` (Linear → 2), ``log_std`` (a learned
    per-action parameter, fixed sigma, broadcast as rl_games does: ``mu * 0 + sigma``) and
    ``value`` (Linear → 1). Attribute names follow rl_games' ``A2CBuilder.Network``
    (``actor_cnn``, ``actor_mlp``, ``mu``, ``sigma``, ``value``) so state_dict keys read alike.

    Args:
        image_size: input height and width (square; 128 here, 224 in the seed). At least 36.
        num_actions: action dimensions (two wheel commands).
        mlp_units: width of the MLP layer.
        sigma_init: initial value of the log-std parameter.

    Shape:
        - obs: :math:`(N, S, S, 3)` float32 in 0–255.
        - mu, log_std: :math:`(N, A)`; value: :math:`(N, 1)`; features: :math:`(N, 512)`.

    Example:
        >>> net = RlGamesJetbotNet(64)
        >>> mu, log_std, value = net(torch.zeros(2, 64, 64, 3))
        >>> mu.shape, log_std.shape, value.shape
        (torch.Size([2, 2]), torch.Size([2, 2]), torch.Size([2, 1]))
    """

    def __init__(
        self,
        image_size: int = 128,
        *,
        num_actions: int = 2,
        mlp_units: int = 512,
        sigma_init: float = 0.0,
    ) -> None:
        super().__init__()
        if image_size < _MIN_SIZE:
            raise ValueError(
                f"image_size must be >= {_MIN_SIZE} for the rl_games conv stack; got {image_size}"
            )
        self.image_size = image_size
        self.num_actions = num_actions
        self.actor_cnn = nn.Sequential(
            nn.Conv2d(3, 32, kernel_size=8, stride=4),
            nn.ReLU(),
            nn.Conv2d(32, 64, kernel_size=4, stride=2),
            nn.ReLU(),
            nn.Conv2d(64, 64, kernel_size=3, stride=1),
            nn.ReLU(),
        )
        flat = 64 * _conv_out(image_size) ** 2
        self.actor_mlp = nn.Sequential(nn.Linear(flat, mlp_units), nn.ELU())
        self.mu = nn.Linear(mlp_units, num_actions)
        self.sigma = nn.Parameter(torch.full((num_actions,), float(sigma_init)))
        self.value = nn.Linear(mlp_units, 1)

    def _check(self, obs: torch.Tensor) -> None:
        if torch.jit.is_tracing():  # shapes are fixed by the example input during export
            return
        s = self.image_size
        if obs.ndim != 4 or tuple(obs.shape[1:]) != (s, s, 3):
            raise ValueError(
                f"obs must be NHWC float 0-255 with shape (N, {s}, {s}, 3); got {tuple(obs.shape)}"
            )

    def features(self, obs: torch.Tensor) -> torch.Tensor:
        """Penultimate activations: the MLP's post-ELU output the heads read.

        Args:
            obs: NHWC frames, float 0–255.

        Returns:
            The features.

        Shape:
            - obs: :math:`(N, S, S, 3)`; output: :math:`(N, 512)`.
        """
        self._check(obs)
        x = obs.permute(0, 3, 1, 2) / 255.0  # (N, 3, S, S)
        x = self.actor_cnn(x).flatten(1)
        return self.actor_mlp(x)

    def forward(self, obs: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Action mean, log-std and value, as rl_games' network returns them.

        Args:
            obs: NHWC frames, float 0–255.

        Returns:
            ``(mu, log_std, value)``.

        Shape:
            - obs: :math:`(N, S, S, 3)`; mu, log_std: :math:`(N, A)`; value: :math:`(N, 1)`.
        """
        h = self.features(obs)
        mu = self.mu(h)
        return mu, mu * 0 + self.sigma, self.value(h)


def export_rl_games_onnx(
    net: RlGamesJetbotNet,
    path: str | os.PathLike[str],
    *,
    height: int,
    width: int,
    opset: int = 17,
    dynamic_batch: bool = True,
    atol: float = 1e-4,
) -> Path:
    """Export the network to ONNX the way the seed's rl_games export does, and check it.

    Input ``obs`` [batch, H, W, 3] float32 0–255 (NHWC); outputs ``mu``, ``log_std``, ``value``.
    The seed's file fixes the batch to 1 (1×224×224×3); this one keeps the batch dimension
    dynamic by default. :func:`translate.policy.load_policy` loads both, feeding a fixed-batch
    model frame by frame. The file is written atomically only after onnxruntime reproduces torch's
    outputs within ``atol``; a ``policy_spec.yaml`` (preset ``rl_games`` with this height and
    width) is written next to it.

    Args:
        net: the network (not modified; exported in eval mode on the CPU).
        path: destination ``.onnx`` file.
        height: input height; must equal ``net.image_size``.
        width: input width; must equal ``net.image_size``.
        opset: ONNX opset.
        dynamic_batch: keep the batch dimension dynamic (``False`` reproduces the seed's 1×H×W×3).
        atol: largest allowed absolute difference between onnxruntime and torch.

    Returns:
        The path of the ONNX file.
    """
    import onnx
    import onnxruntime as ort

    if (height, width) != (net.image_size, net.image_size):
        raise ValueError(
            f"height/width must match the network's image_size {net.image_size}; "
            f"got {height}x{width}"
        )
    path = Path(path)
    net = copy.deepcopy(net).cpu().eval()
    gen = torch.Generator().manual_seed(0)
    batch = 3 if dynamic_batch else 1
    x = torch.rand(batch, height, width, 3, generator=gen) * 255.0
    names = ["mu", "log_std", "value"]
    axes = {n: {0: "batch"} for n in ["obs", *names]} if dynamic_batch else None
    with atomic_path(path) as tmp:
        with warnings.catch_warnings():
            # The TorchScript-based exporter is chosen on purpose (exact names, plain Gemm heads);
            # its deprecation notice is noise here.
            warnings.simplefilter("ignore", DeprecationWarning)
            torch.onnx.export(
                net,
                (x[:1],),
                str(tmp),
                input_names=["obs"],
                output_names=names,
                dynamic_axes=axes,
                opset_version=opset,
                do_constant_folding=True,
                dynamo=False,
            )
        model = onnx.load(str(tmp))
        for key, value in {
            "policy_preset": "rl_games",
            "input_layout": "NHWC",
            "input_range": "0-255",
            "channel_order": "RGB",
            "input_size": f"{height}x{width}",
        }.items():
            model.metadata_props.add(key=key, value=value)
        onnx.save(model, str(tmp))
        session = ort.InferenceSession(str(tmp), providers=["CPUExecutionProvider"])
        got = session.run(names, {"obs": x.numpy()})
        with torch.no_grad():
            want = [t.numpy() for t in net(x)]
        for name, g, w in zip(names, got, want, strict=True):
            diff = float(np.max(np.abs(g - w)))
            if diff > atol:
                raise RuntimeError(
                    f"ONNX export of {path.name}: output {name!r} differs from torch by {diff:.3g} "
                    f"(allowed {atol})"
                )
    PolicySpec.preset("rl_games", height=height, width=width).save(path.parent / SPEC_FILENAME)
    return path
