"""Metrics of the evaluation harness: paired images, distributions, actions, bootstrap, input contract."""

from __future__ import annotations

import math
import os
import warnings
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

__all__ = [
    "CHROMA_QUANTILES",
    "ChannelStats",
    "ContractWarning",
    "Lpips",
    "PSNR_CAP_DB",
    "action_metrics",
    "bootstrap_ci",
    "channel_stats",
    "check_input_contract",
    "cosine_similarity",
    "energy_distance",
    "frechet_distance",
    "gap_closed",
    "kid",
    "lpips_backbone_path",
    "per_frame_abs_error",
    "psnr",
    "sliced_wasserstein",
    "ssim",
    "turn_agreement",
    "turn_direction",
    "action_collapse",
    "action_jitter",
    "mean_abs_change",
    "wasserstein_1d",
    "wilson_interval",
    "within_tolerance",
]

#: Quantiles of the first − last channel difference kept by :func:`channel_stats`.
CHROMA_QUANTILES: tuple[float, ...] = (0.01, 0.05, 0.25, 0.5, 0.75, 0.95, 0.99)

#: PSNR of identical frames (MSE 0) is reported as this many dB instead of infinity, so means and
#: JSON stay finite. 100 dB is an MSE of 1e-10 · 255², far below one grey level.
PSNR_CAP_DB = 100.0


def _frames(x: Any, name: str) -> np.ndarray:
    a = np.asarray(x)
    if a.ndim == 3:
        a = a[None]
    if a.ndim != 4 or a.shape[-1] not in (1, 3):
        raise ValueError(f"{name} must be (N, H, W, C) or (H, W, C) with C 1 or 3; got {a.shape}")
    return a


def _same_shape(a: np.ndarray, b: np.ndarray, na: str, nb: str) -> None:
    if a.shape != b.shape:
        raise ValueError(f"{na} and {nb} must have the same shape; got {a.shape} and {b.shape}")


# --------------------------------------------------------------------------------------------------
# Paired images
# --------------------------------------------------------------------------------------------------


def psnr(a: np.ndarray, b: np.ndarray, *, data_range: float = 255.0) -> np.ndarray:
    """Peak signal-to-noise ratio of each frame pair, in dB.

    ``10 · log10(data_range² / MSE)`` with the MSE over all pixels and channels of a frame; a pair
    with MSE 0 scores :data:`PSNR_CAP_DB`.

    Args:
        a: frames (uint8 or float in ``[0, data_range]``).
        b: frames of the same shape.
        data_range: the value range (255 for uint8).

    Returns:
        PSNR per frame, float64.

    Shape:
        - a, b: :math:`(N, H, W, C)` or :math:`(H, W, C)`.
        - output: :math:`(N,)`.

    Example:
        >>> a = np.zeros((1, 4, 4, 3), np.uint8); b = np.full_like(a, 255)
        >>> float(psnr(a, b)[0])
        0.0
    """
    fa, fb = _frames(a, "a"), _frames(b, "b")
    _same_shape(fa, fb, "a", "b")
    if fa.dtype == np.uint8 and fb.dtype == np.uint8:  # exact integer sums, 30× faster than float64
        d = (fa.astype(np.int32) - fb).reshape(len(fa), -1)
        mse = (d * d).sum(axis=1, dtype=np.int64) / d.shape[1]
    else:
        diff = fa.astype(np.float64) - fb.astype(np.float64)
        mse = np.mean(diff * diff, axis=(1, 2, 3))
    floor = data_range**2 / 10 ** (PSNR_CAP_DB / 10)
    return np.asarray(10.0 * np.log10(data_range**2 / np.maximum(mse, floor)), np.float64)


def ssim(
    a: np.ndarray, b: np.ndarray, *, window_size: int = 11, batch_size: int = 64
) -> np.ndarray:
    """Structural similarity of each frame pair (kornia; Gaussian window σ 1.5, valid padding).

    Frames are scaled to [0, 1]; the SSIM map is averaged over valid windows and channels. The
    window shrinks (odd, ≥ 3) for frames smaller than ``window_size``.

    Args:
        a: uint8 frames.
        b: uint8 frames of the same shape.
        window_size: Gaussian window side.
        batch_size: frame pairs per kornia call.

    Returns:
        SSIM per frame in [-1, 1], float64.

    Shape:
        - a, b: :math:`(N, H, W, C)` or :math:`(H, W, C)`.
        - output: :math:`(N,)`.
    """
    import kornia
    import torch

    fa, fb = _frames(a, "a"), _frames(b, "b")
    _same_shape(fa, fb, "a", "b")
    side = min(fa.shape[1], fa.shape[2])
    win = min(window_size, side if side % 2 else side - 1)
    if win < 3:
        raise ValueError(f"frames of {fa.shape[1]}x{fa.shape[2]} are too small for SSIM")
    scale = 255.0 if fa.dtype == np.uint8 else 1.0
    out: list[np.ndarray] = []
    with torch.inference_mode():
        for i in range(0, len(fa), batch_size):
            ta = torch.from_numpy(np.ascontiguousarray(fa[i : i + batch_size])).permute(0, 3, 1, 2)
            tb = torch.from_numpy(np.ascontiguousarray(fb[i : i + batch_size])).permute(0, 3, 1, 2)
            m = kornia.metrics.ssim(ta.float() / scale, tb.float() / scale, win, padding="valid")
            out.append(m.mean(dim=(1, 2, 3)).double().numpy())
    return np.concatenate(out) if out else np.zeros(0)


def lpips_backbone_path(cache_dir: str | os.PathLike[str] | None = None) -> Path:
    """Where torchvision keeps the ImageNet AlexNet weights LPIPS needs (may not exist).

    Args:
        cache_dir: a torch hub folder; default ``torch.hub.get_dir()`` (``$TORCH_HOME/hub``).

    Returns:
        ``<hub>/checkpoints/alexnet-owt-7be5be79.pth``.
    """
    if cache_dir is None:
        import torch

        cache_dir = torch.hub.get_dir()
    return Path(cache_dir) / "checkpoints" / "alexnet-owt-7be5be79.pth"


class Lpips:
    """LPIPS (AlexNet, v0.1) built from local files only; never downloads.

    The ``lpips`` package ships its linear heads; the AlexNet backbone comes from torchvision's
    download cache (:func:`lpips_backbone_path`). When either is missing, ``available`` is False
    and ``reason`` says why; calling it then raises.

    Args:
        cache_dir: torch hub folder to look in (default: torch's).
        device: torch device.

    Example:
        >>> metric = Lpips()  # doctest: +SKIP
        >>> metric.available or metric.reason  # doctest: +SKIP
        'AlexNet weights not in the local torch cache (...); LPIPS needs them and this run is offline'
    """

    def __init__(self, cache_dir: str | os.PathLike[str] | None = None, device: str = "cpu"):
        self.available = False
        self.reason = ""
        self._net: Any = None
        self._device = device
        try:
            weights = lpips_backbone_path(cache_dir)
        except ImportError as e:
            self.reason = f"torch is not installed ({e})"
            return
        if not weights.is_file():
            self.reason = (
                f"AlexNet backbone weights not in the local torch cache ({weights}); LPIPS needs "
                "them and this run never downloads (fetch them once on a connected machine with "
                "torchvision.models.alexnet(weights='IMAGENET1K_V1'))"
            )
            return
        try:  # imported only now: lpips and torchvision take seconds to import
            import lpips  # noqa: F401
            import torch
            import torchvision  # noqa: F401
        except ImportError as e:
            self.reason = f"the lpips package is not installed ({e})"
            return
        try:
            self._net = self._build(weights, torch)
        except Exception as e:  # a corrupt cache file must not stop the evaluation
            first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
            self.reason = f"cannot build LPIPS from {weights}: {first}"
            return
        self.available = True

    def _build(self, weights: Path, torch: Any) -> Any:
        import lpips
        import torchvision

        # pnet_rand=True: lpips must not fetch the backbone itself; its linear heads come from
        # the package (model_path=None) and the backbone from the cached torchvision file.
        with warnings.catch_warnings():  # lpips calls torchvision with its deprecated arguments
            warnings.simplefilter("ignore", UserWarning)
            net = lpips.LPIPS(net="alex", version="0.1", pretrained=True, pnet_rand=True,
                              verbose=False)
        alex = torchvision.models.alexnet(weights=None)
        alex.load_state_dict(torch.load(weights, map_location="cpu", weights_only=True))
        for sl in (net.net.slice1, net.net.slice2, net.net.slice3, net.net.slice4, net.net.slice5):
            for idx, module in sl.named_children():
                module.load_state_dict(alex.features[int(idx)].state_dict())
        return net.to(self._device).eval()

    def __call__(self, a: np.ndarray, b: np.ndarray, *, batch_size: int = 32) -> np.ndarray:
        """LPIPS distance per frame pair (lower = more alike).

        Args:
            a: uint8 RGB frames.
            b: uint8 RGB frames of the same shape.
            batch_size: pairs per network call.

        Returns:
            Distance per frame, float64.

        Shape:
            - a, b: :math:`(N, H, W, 3)`; output: :math:`(N,)`.
        """
        if not self.available:
            raise RuntimeError(f"LPIPS is unavailable: {self.reason}")
        import torch

        fa, fb = _frames(a, "a"), _frames(b, "b")
        _same_shape(fa, fb, "a", "b")
        out: list[np.ndarray] = []
        with torch.inference_mode():
            for i in range(0, len(fa), batch_size):
                ta = torch.from_numpy(np.ascontiguousarray(fa[i : i + batch_size]))
                tb = torch.from_numpy(np.ascontiguousarray(fb[i : i + batch_size]))
                ta = ta.permute(0, 3, 1, 2).float().to(self._device) / 127.5 - 1.0
                tb = tb.permute(0, 3, 1, 2).float().to(self._device) / 127.5 - 1.0
                out.append(self._net(ta, tb).reshape(-1).double().cpu().numpy())
        return np.concatenate(out) if out else np.zeros(0)


# --------------------------------------------------------------------------------------------------
# Distributions
# --------------------------------------------------------------------------------------------------


def _features(x: Any, name: str, min_rows: int = 2) -> np.ndarray:
    a = np.asarray(x, dtype=np.float64)
    if a.ndim == 1:
        a = a[:, None]
    if a.ndim != 2:
        raise ValueError(f"{name} must be (N, D); got shape {a.shape}")
    if len(a) < min_rows:
        raise ValueError(f"{name} needs at least {min_rows} rows; got {len(a)}")
    if not np.all(np.isfinite(a)):
        raise ValueError(f"{name} holds non-finite values")
    return a


def _nuclear_norm_cross(xa: np.ndarray, xb: np.ndarray) -> float:
    """Sum of the singular values of ``xa @ xb.T`` via the smallest symmetric eigenproblem."""
    n, m, d = len(xa), len(xb), xa.shape[1]
    k = min(n, m, d)
    if k == d:
        # xa = Qa Ra, xb = Qb Rb: xa xbᵀ has the singular values of Ra Rbᵀ (d × d)
        ra = np.asarray(np.linalg.qr(xa, mode="r")) if n > d else xa
        rb = np.asarray(np.linalg.qr(xb, mode="r")) if m > d else xb
        core = ra @ rb.T
    else:
        core = xa @ xb.T  # (n, m)
    g = core @ core.T if core.shape[0] <= core.shape[1] else core.T @ core
    w = np.linalg.eigvalsh((g + g.T) / 2)
    return float(np.sqrt(np.clip(w, 0.0, None)).sum())


def frechet_distance(a: np.ndarray, b: np.ndarray) -> float:
    """Fréchet distance between Gaussians fitted to two feature sets (FID's formula).

    ``‖μa − μb‖² + Tr(Ca) + Tr(Cb) − 2 Tr((Ca^½ Cb Ca^½)^½)`` with unbiased covariances. The
    last trace is the nuclear norm of ``Xa Xbᵀ`` (centred features scaled by 1/√(N−1)), found
    from the smallest of the N×N, M×M or D×D symmetric eigenproblems: exact, real, and stable for
    the rank-deficient covariances of small sets, with no matrix square root (no scipy). Small
    sets bias the distance upwards: compare stages evaluated on the same number of frames.

    Args:
        a: features of one set.
        b: features of the other set.

    Returns:
        The distance (≥ 0).

    Shape:
        - a: :math:`(N, D)`, b: :math:`(M, D)`, N, M ≥ 2.

    Example:
        >>> frechet_distance(np.array([[0.0], [2.0]]), np.array([[3.0], [5.0]]))
        9.0
    """
    fa, fb = _features(a, "a"), _features(b, "b")
    if fa.shape[1] != fb.shape[1]:
        raise ValueError(f"a and b must have the same feature size; got {fa.shape} and {fb.shape}")
    mu = fa.mean(0) - fb.mean(0)
    xa = (fa - fa.mean(0)) / math.sqrt(len(fa) - 1)
    xb = (fb - fb.mean(0)) / math.sqrt(len(fb) - 1)
    cross = _nuclear_norm_cross(xa, xb)
    d = float(mu @ mu + (xa * xa).sum() + (xb * xb).sum() - 2.0 * cross)
    return max(d, 0.0)


def _mmd2_unbiased(x: np.ndarray, y: np.ndarray, kernel: Callable[..., np.ndarray]) -> float:
    m, n = len(x), len(y)
    kxx, kyy, kxy = kernel(x, x), kernel(y, y), kernel(x, y)
    sxx = (kxx.sum() - np.trace(kxx)) / (m * (m - 1))
    syy = (kyy.sum() - np.trace(kyy)) / (n * (n - 1))
    return float(sxx + syy - 2.0 * kxy.mean())


def kid(
    a: np.ndarray,
    b: np.ndarray,
    *,
    degree: int = 3,
    gamma: float | None = None,
    coef0: float = 1.0,
    subset_size: int = 1000,
    n_subsets: int = 50,
    seed: int = 0,
) -> tuple[float, float | None]:
    """Kernel Inception Distance in any feature space: unbiased MMD² with a polynomial kernel.

    ``k(x, y) = (γ x·y + c0)^d`` with γ = 1/D, c0 = 1, d = 3 (Bińkowski et al., 2018), and the
    unbiased estimator ``mean_{i≠j} k(a_i, a_j) + mean_{i≠j} k(b_i, b_j) − 2 mean k(a_i, b_j)``.
    When both sets are larger than ``subset_size`` the estimate is averaged over ``n_subsets``
    random subsets of that size (drawn without replacement, seeded), as the paper's code does;
    otherwise it is one estimate on the full sets. Unbiased, so it can be slightly negative.

    Args:
        a: features of one set.
        b: features of the other set.
        degree: kernel degree.
        gamma: kernel scale; None = 1 / D.
        coef0: kernel offset.
        subset_size: subset size.
        n_subsets: number of subsets.
        seed: subset sampling seed.

    Returns:
        ``(kid, std)``: the estimate and the standard deviation over subsets (None for a single
        estimate).

    Shape:
        - a: :math:`(N, D)`, b: :math:`(M, D)`, N, M ≥ 2.
    """
    fa, fb = _features(a, "a"), _features(b, "b")
    if fa.shape[1] != fb.shape[1]:
        raise ValueError(f"a and b must have the same feature size; got {fa.shape} and {fb.shape}")
    g = 1.0 / fa.shape[1] if gamma is None else gamma

    def kernel(x: np.ndarray, y: np.ndarray) -> np.ndarray:
        return np.asarray((g * (x @ y.T) + coef0) ** degree)

    if min(len(fa), len(fb)) <= subset_size or n_subsets <= 1:
        return _mmd2_unbiased(fa, fb, kernel), None
    rng = np.random.default_rng(seed)
    vals = [
        _mmd2_unbiased(
            fa[rng.choice(len(fa), subset_size, replace=False)],
            fb[rng.choice(len(fb), subset_size, replace=False)],
            kernel,
        )
        for _ in range(n_subsets)
    ]
    return float(np.mean(vals)), float(np.std(vals))


def _mean_pairwise_distance(x: np.ndarray, y: np.ndarray, chunk: int = 2048) -> float:
    total = 0.0
    for i in range(0, len(x), chunk):
        d = x[i : i + chunk, None, :] - y[None, :, :]
        total += float(np.sqrt((d * d).sum(-1)).sum())
    return total / (len(x) * len(y))


def energy_distance(a: np.ndarray, b: np.ndarray) -> float:
    """Energy distance between two samples (e.g. action sets): ``sqrt(2E‖X−Y‖ − E‖X−X'‖ − E‖Y−Y'‖)``.

    Expectations are means over all pairs (V-statistics, so the value is ≥ 0 and exactly 0 for
    equal samples). In one dimension this is ``scipy.stats.energy_distance``. Units: those of
    the samples (wheel-command units for actions).

    Args:
        a: one sample.
        b: the other sample.

    Returns:
        The distance.

    Shape:
        - a: :math:`(N, D)` or :math:`(N,)`; b: :math:`(M, D)` or :math:`(M,)`.

    Example:
        >>> round(energy_distance(np.array([0.0]), np.array([1.0])) ** 2, 6)
        2.0
    """
    fa, fb = _features(a, "a", 1), _features(b, "b", 1)
    if fa.shape[1] != fb.shape[1]:
        raise ValueError(f"a and b must have the same dimension; got {fa.shape} and {fb.shape}")
    d2 = (
        2.0 * _mean_pairwise_distance(fa, fb)
        - _mean_pairwise_distance(fa, fa)
        - _mean_pairwise_distance(fb, fb)
    )
    return math.sqrt(max(d2, 0.0))


def wasserstein_1d(u: np.ndarray, v: np.ndarray) -> float:
    """Exact 1-Wasserstein distance between two 1-D empirical distributions (equal weights).

    ``∫ |F_u(x) − F_v(x)| dx`` over the merged sorted values; sizes may differ.

    Args:
        u: one sample.
        v: the other.

    Returns:
        The distance.

    Shape:
        - u: :math:`(N,)`, v: :math:`(M,)`.

    Example:
        >>> wasserstein_1d(np.array([0.0, 1.0, 3.0]), np.array([5.0, 6.0, 8.0]))
        5.0
    """
    uu = np.sort(np.asarray(u, np.float64).ravel())
    vv = np.sort(np.asarray(v, np.float64).ravel())
    if len(uu) == 0 or len(vv) == 0:
        raise ValueError("wasserstein_1d needs two non-empty samples")
    allv = np.sort(np.concatenate([uu, vv]))
    deltas = np.diff(allv)
    cu = np.searchsorted(uu, allv[:-1], side="right") / len(uu)
    cv = np.searchsorted(vv, allv[:-1], side="right") / len(vv)
    return float(np.sum(np.abs(cu - cv) * deltas))


def sliced_wasserstein(
    a: np.ndarray, b: np.ndarray, *, n_projections: int = 128, seed: int = 0
) -> float:
    """Sliced 1-Wasserstein distance: the mean exact 1-D W1 over random unit directions.

    One-dimensional samples use their one direction (the exact W1). Directions are drawn
    uniformly on the sphere with a seeded numpy generator.

    Args:
        a: one sample.
        b: the other.
        n_projections: number of random directions.
        seed: direction seed.

    Returns:
        The distance, in the samples' units.

    Shape:
        - a: :math:`(N, D)`, b: :math:`(M, D)`.
    """
    fa, fb = _features(a, "a", 1), _features(b, "b", 1)
    if fa.shape[1] != fb.shape[1]:
        raise ValueError(f"a and b must have the same dimension; got {fa.shape} and {fb.shape}")
    if fa.shape[1] == 1:
        return wasserstein_1d(fa[:, 0], fb[:, 0])
    rng = np.random.default_rng(seed)
    dirs = rng.standard_normal((n_projections, fa.shape[1]))
    dirs /= np.linalg.norm(dirs, axis=1, keepdims=True)
    pa, pb = fa @ dirs.T, fb @ dirs.T
    return float(np.mean([wasserstein_1d(pa[:, k], pb[:, k]) for k in range(n_projections)]))


# --------------------------------------------------------------------------------------------------
# Actions
# --------------------------------------------------------------------------------------------------


def _actions(pred: Any, ref: Any) -> tuple[np.ndarray, np.ndarray]:
    p = np.asarray(pred, np.float64)
    r = np.asarray(ref, np.float64)
    if p.ndim != 2 or p.shape != r.shape:
        raise ValueError(
            f"pred and ref must both be (N, A) with the same shape; got {p.shape} and {r.shape}"
        )
    return p, r


def turn_direction(actions: np.ndarray, dead_zone: float = 0.05) -> np.ndarray:
    """Turn class of wheel commands: ``sign(left − right)`` with a dead zone.

    Args:
        actions: (left, right) wheel commands.
        dead_zone: ``|left − right| ≤ dead_zone`` counts as straight.

    Returns:
        int8: +1 = turning right (left wheel faster), −1 = turning left, 0 = straight.

    Shape:
        - actions: :math:`(*, 2)`; output: :math:`(*)`.

    Example:
        >>> turn_direction(np.array([[0.5, 0.1], [0.1, 0.5], [0.3, 0.32]])).tolist()
        [1, -1, 0]
    """
    a = np.asarray(actions, dtype=np.float64)
    if a.ndim < 1 or a.shape[-1] != 2:
        raise ValueError(f"actions must have shape (..., 2) (left, right); got {a.shape}")
    if dead_zone < 0:
        raise ValueError(f"dead_zone must be >= 0; got {dead_zone}")
    diff = a[..., 0] - a[..., 1]
    return np.where(np.abs(diff) <= dead_zone, 0, np.sign(diff)).astype(np.int8)


def action_collapse(actions: np.ndarray, dead_zone: float = 0.05) -> tuple[float, float]:
    """How much a policy's actions vary over frames: ``(spread, turn_mode_share)``.

    ``spread`` is the std over frames, averaged over action dimensions (0 for one frame);
    ``turn_mode_share`` the share of frames with the most common turn direction (2-D actions;
    1.0 otherwise). Degenerate actions — a wrong input contract, a translation that hides what
    the policy needs — have a small spread or one turn direction on nearly every frame.

    Shape:
        - actions: :math:`(N, A)`, N ≥ 1.
    """
    a = np.asarray(actions, dtype=np.float64)
    if a.ndim != 2 or len(a) == 0:
        raise ValueError(f"actions must be (N, A) with N >= 1, got {a.shape}")
    spread = float(a.std(axis=0).mean()) if len(a) > 1 else 0.0
    if a.shape[1] != 2:
        return spread, 1.0
    counts = np.unique(turn_direction(a, dead_zone), return_counts=True)[1]
    return spread, float(counts.max() / len(a))


def turn_agreement(pred: np.ndarray, ref: np.ndarray, dead_zone: float = 0.05) -> np.ndarray:
    """Per frame: does the predicted turn class (left / straight / right) match the reference's?

    Args:
        pred: predicted (left, right) commands.
        ref: reference commands.
        dead_zone: see :func:`turn_direction`.

    Returns:
        bool per frame; its mean is the agreement rate.

    Shape:
        - pred, ref: :math:`(N, 2)`; output: :math:`(N,)`.
    """
    p, r = _actions(pred, ref)
    return np.asarray(turn_direction(p, dead_zone) == turn_direction(r, dead_zone))


def per_frame_abs_error(pred: np.ndarray, ref: np.ndarray) -> np.ndarray:
    """Mean absolute action error of each frame (over action dimensions).

    Shape:
        - pred, ref: :math:`(N, A)`; output: :math:`(N,)`.
    """
    p, r = _actions(pred, ref)
    return np.asarray(np.abs(p - r).mean(axis=1))


def cosine_similarity(pred: np.ndarray, ref: np.ndarray, *, eps: float = 1e-8) -> np.ndarray:
    """Cosine similarity of each predicted action with its reference.

    Two (near-)zero vectors count as 1 (both say "stand still"); one zero vector against a
    non-zero one counts as 0.

    Shape:
        - pred, ref: :math:`(N, A)`; output: :math:`(N,)`.

    Example:
        >>> cosine_similarity(np.array([[1.0, 0.0], [0.0, 0.0]]), np.array([[2.0, 0.0], [0.0, 0.0]])).tolist()
        [1.0, 1.0]
    """
    p, r = _actions(pred, ref)
    npn, nrn = np.linalg.norm(p, axis=1), np.linalg.norm(r, axis=1)
    dot = (p * r).sum(axis=1)
    with np.errstate(invalid="ignore", divide="ignore"):
        cos = dot / (npn * nrn)
    both_zero = (npn < eps) & (nrn < eps)
    one_zero = (npn < eps) ^ (nrn < eps)
    return np.asarray(np.where(both_zero, 1.0, np.where(one_zero, 0.0, cos)))


def within_tolerance(pred: np.ndarray, ref: np.ndarray, tolerance: float) -> np.ndarray:
    """Per frame: is every action dimension within ``tolerance`` of the reference (max |err| ≤ tol)?

    Shape:
        - pred, ref: :math:`(N, A)`; output: :math:`(N,)` bool.
    """
    p, r = _actions(pred, ref)
    return np.asarray(np.abs(p - r).max(axis=1) <= tolerance)


def action_metrics(
    pred: np.ndarray,
    ref: np.ndarray,
    *,
    dead_zone: float = 0.05,
    tolerance: float = 0.1,
    names: Sequence[str] | None = None,
) -> dict[str, float]:
    """Action agreement of a stage with the reference actions.

    Keys: ``action_mae`` (mean |pred − ref| over frames and dimensions), ``action_rmse``
    (root of the mean squared error over frames and dimensions), ``action_mae_<name>`` and
    ``action_rmse_<name>`` per dimension, ``action_cosine`` (mean per-frame cosine similarity),
    ``turn_agreement`` (2-D actions only) and ``within_tolerance``.

    Args:
        pred: predicted actions.
        ref: reference actions.
        dead_zone: turn-direction dead zone.
        tolerance: within-tolerance threshold on max |err| per frame.
        names: a name per action dimension (default ``a0``, ``a1``, ...).

    Returns:
        Metric name → value.

    Shape:
        - pred, ref: :math:`(N, A)`, N ≥ 1.
    """
    p, r = _actions(pred, ref)
    if len(p) == 0:
        raise ValueError("action_metrics needs at least one frame")
    names = list(names) if names is not None else [f"a{i}" for i in range(p.shape[1])]
    if len(names) != p.shape[1]:
        raise ValueError(f"names has {len(names)} entries for {p.shape[1]} action dimensions")
    err = p - r
    out: dict[str, float] = {
        "action_mae": float(np.abs(err).mean()),
        "action_rmse": float(np.sqrt((err * err).mean())),
    }
    for i, n in enumerate(names):
        out[f"action_mae_{n}"] = float(np.abs(err[:, i]).mean())
        out[f"action_rmse_{n}"] = float(np.sqrt((err[:, i] ** 2).mean()))
    out["action_cosine"] = float(cosine_similarity(p, r).mean())
    if p.shape[1] == 2:
        out["turn_agreement"] = float(turn_agreement(p, r, dead_zone).mean())
    out["within_tolerance"] = float(within_tolerance(p, r, tolerance).mean())
    return out


def gap_closed(
    err_raw: float, err_stage: float, err_sim: float, *, atol: float = 1e-6, rtol: float = 1e-3
) -> tuple[float | None, str]:
    """Share of the sim-to-real gap a stage closes: ``(err_raw − err_stage) / (err_raw − err_sim)``.

    1.0 = the stage acts as on sim frames, 0.0 = no better than raw real frames, negative =
    worse than raw. Undefined when there is no gap: ``|err_raw − err_sim| ≤ atol + rtol ·
    max(err_raw, err_sim)``.

    Args:
        err_raw: error on raw real frames.
        err_stage: error of the stage.
        err_sim: error on sim frames.
        atol: absolute tolerance of "no gap".
        rtol: relative tolerance of "no gap".

    Returns:
        ``(value, reason)``: the fraction, or ``(None, why it is undefined)``.

    Example:
        >>> gap_closed(0.5, 0.25, 0.0)
        (0.5, '')
    """
    vals = (err_raw, err_stage, err_sim)
    if not all(isinstance(v, (int, float)) and math.isfinite(v) for v in vals):
        return None, f"non-finite errors (raw {err_raw}, stage {err_stage}, sim {err_sim})"
    gap = err_raw - err_sim
    if abs(gap) <= atol + rtol * max(abs(err_raw), abs(err_sim)):
        return None, (
            f"no sim-to-real gap to close: error on raw real frames ({err_raw:.4g}) ≈ error on "
            f"sim frames ({err_sim:.4g})"
        )
    return (err_raw - err_stage) / gap, ""


# --------------------------------------------------------------------------------------------------
# Rates and temporal consistency
# --------------------------------------------------------------------------------------------------


def wilson_interval(successes: int, n: int, level: float = 0.95) -> tuple[float, float] | None:
    """Wilson score interval of a success rate (closed-loop success over episodes).

    Unlike the normal approximation it stays inside [0, 1] and is usable at 0 or n successes.

    Args:
        successes: number of successes, ``0 <= successes <= n``.
        n: number of trials.
        level: coverage, e.g. 0.95.

    Returns:
        ``(lo, hi)``, or None when ``n == 0``.

    Example:
        >>> lo, hi = wilson_interval(7, 10)
        >>> round(lo, 3), round(hi, 3)
        (0.397, 0.892)
    """
    if not 0.0 < level < 1.0:
        raise ValueError(f"level must be in (0, 1); got {level}")
    if n < 0 or not 0 <= successes <= max(n, 0):
        raise ValueError(f"need 0 <= successes <= n; got successes={successes}, n={n}")
    if n == 0:
        return None
    from statistics import NormalDist

    z = NormalDist().inv_cdf(0.5 + level / 2.0)
    p = successes / n
    denom = 1.0 + z * z / n
    centre = (p + z * z / (2 * n)) / denom
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / denom
    return max(0.0, centre - half), min(1.0, centre + half)


def mean_abs_change(prev: np.ndarray, cur: np.ndarray) -> np.ndarray:
    """Per frame, the mean absolute change from the previous frame, in grey levels (0–255).

    The building block of flicker: a stage's output change over consecutive frames divided by
    its input's own change (``sum(mean_abs_change(y)) / sum(mean_abs_change(x))``) is 1 when the
    stage changes as much as the camera's view does, above 1 when it adds flicker.

    Args:
        prev: the previous frames, uint8 or float.
        cur: the current frames, same shape.

    Returns:
        float64 per frame.

    Shape:
        - prev, cur: :math:`(N, H, W, C)`; output: :math:`(N,)`.
    """
    a, b = np.asarray(prev), np.asarray(cur)
    if a.shape != b.shape or a.ndim != 4:
        raise ValueError(f"prev and cur must both be (N, H, W, C); got {a.shape} and {b.shape}")
    d = np.abs(b.astype(np.int16) - a.astype(np.int16)) if a.dtype == np.uint8 == b.dtype \
        else np.abs(b.astype(np.float64) - a.astype(np.float64))
    return d.reshape(len(d), -1).mean(axis=1, dtype=np.float64)


def action_jitter(actions: np.ndarray) -> float:
    """Mean ``|a_t − a_{t−1}|`` over consecutive steps and action dimensions.

    Args:
        actions: one sequence of actions, in time order.

    Returns:
        The jitter (NaN for fewer than 2 steps).

    Shape:
        - actions: :math:`(T, A)`.

    Example:
        >>> round(action_jitter(np.array([[0.0, 0.0], [0.2, 0.0], [0.2, 0.4]])), 6)
        0.15
    """
    a = np.asarray(actions, np.float64)
    if a.ndim != 2:
        raise ValueError(f"actions must be (T, A); got {a.shape}")
    if len(a) < 2:
        return float("nan")
    return float(np.abs(np.diff(a, axis=0)).mean())


# --------------------------------------------------------------------------------------------------
# Bootstrap
# --------------------------------------------------------------------------------------------------


def bootstrap_ci(
    statistic: Callable[[np.ndarray], np.ndarray],
    n: int,
    *,
    n_resamples: int = 1000,
    seed: int = 0,
    level: float = 0.95,
    max_undefined: float = 0.5,
) -> tuple[float, float] | None:
    """Percentile bootstrap confidence interval over frames, deterministic by seed.

    ``statistic`` gets a batch of resampled frame indices and returns one value per resample,
    so paired statistics (e.g. gap closed, which needs the same frames in every stage) resample
    all their per-frame arrays with the same indices. NaN values (an undefined statistic in a
    resample) are left out; if more than ``max_undefined`` of them are NaN the interval is None.

    Args:
        statistic: maps indices ``(R, n)`` to values ``(R,)``.
        n: number of frames.
        n_resamples: bootstrap resamples.
        seed: seed of the resampling.
        level: coverage, e.g. 0.95.
        max_undefined: largest tolerated share of NaN resamples.

    Returns:
        ``(lo, hi)``, or None for fewer than 2 frames or too many undefined resamples.

    Example:
        >>> e = np.array([0.1, 0.2, 0.3, 0.4])
        >>> lo, hi = bootstrap_ci(lambda idx: e[idx].mean(1), len(e), seed=0)
        >>> 0.1 <= lo <= 0.25 <= hi <= 0.4
        True
    """
    if not 0.0 < level < 1.0:
        raise ValueError(f"level must be in (0, 1); got {level}")
    if n < 2 or n_resamples < 1:
        return None
    rng = np.random.default_rng(seed)
    per_chunk = max(1, min(n_resamples, 4_000_000 // n))  # bound the index matrix's memory
    values: list[np.ndarray] = []
    done = 0
    while done < n_resamples:
        r = min(per_chunk, n_resamples - done)
        idx = rng.integers(0, n, size=(r, n))
        values.append(np.asarray(statistic(idx), np.float64).reshape(r))
        done += r
    v = np.concatenate(values)
    finite = v[np.isfinite(v)]
    if len(finite) == 0 or 1.0 - len(finite) / len(v) > max_undefined:
        return None
    alpha = (1.0 - level) / 2.0
    lo, hi = np.quantile(finite, [alpha, 1.0 - alpha])
    return float(lo), float(hi)


# --------------------------------------------------------------------------------------------------
# Input contract
# --------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class ChannelStats:
    """Per-channel statistics of what a policy receives, in its input's channel order.

    Attributes:
        mean, std, min, max: one value per channel.
        spread: mean over pixels of the standard deviation across the channels of a pixel,
            relative to the overall standard deviation (≈ 0 for grey frames or an NCHW buffer
            read as NHWC, whose "channels" are neighbouring pixels of one plane).
        chroma: quantiles (:data:`CHROMA_QUANTILES`) of first − last channel per pixel (R − B
            for RGB): exchanging those channels negates it, so a swap shows even when the
            channel means are alike (a grey scene with a red object).
        count: pixels per channel the statistics cover.
        profile: mean per row, then per column (over frames and channels); for the layout check,
            not serialised.
        profile_as_nchw: the same profile of the frames re-read as if their buffer were NCHW
            (what undoes an NCHW buffer that was reshaped, not transposed, to NHWC).
    """

    mean: tuple[float, ...]
    std: tuple[float, ...]
    min: tuple[float, ...]
    max: tuple[float, ...]
    spread: float
    chroma: tuple[float, ...]
    count: int
    profile: tuple[float, ...] = ()
    profile_as_nchw: tuple[float, ...] = ()

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready mapping."""
        return {
            "mean": list(self.mean), "std": list(self.std), "min": list(self.min),
            "max": list(self.max), "spread": self.spread, "chroma": list(self.chroma),
            "count": self.count,
        }

    def signature(self, swapped: bool = False) -> np.ndarray:
        """(means, stds, chroma quantiles) as one vector; ``swapped``: as if first and last
        channel were exchanged."""
        mean, std, chroma = list(self.mean), list(self.std), list(self.chroma)
        if swapped:
            mean[0], mean[-1] = mean[-1], mean[0]
            std[0], std[-1] = std[-1], std[0]
            chroma = [-c for c in reversed(chroma)]
        return np.array(mean + std + chroma, np.float64)


def channel_stats(x: np.ndarray, layout: str = "NHWC") -> ChannelStats:
    """Per-channel mean / std / min / max of a batch of model inputs.

    Args:
        x: the preprocessed policy input (any dtype).
        layout: ``NHWC`` or ``NCHW``.

    Returns:
        The statistics.

    Shape:
        - x: :math:`(N, H, W, C)` for NHWC, :math:`(N, C, H, W)` for NCHW.
    """
    a = np.asarray(x)
    if a.ndim != 4:
        raise ValueError(f"x must be a rank-4 batch; got shape {a.shape}")
    if layout not in ("NHWC", "NCHW"):
        raise ValueError(f"layout must be NHWC or NCHW; got {layout!r}")
    if layout == "NCHW":
        a = a.transpose(0, 2, 3, 1)
    flat = a.reshape(-1, a.shape[-1]).astype(np.float32, copy=False)
    overall = float(flat.std(dtype=np.float64))
    per_pixel = np.sqrt(np.maximum(
        (flat * flat).mean(axis=1) - flat.mean(axis=1) ** 2, 0.0))  # std across channels
    spread = float(per_pixel.mean(dtype=np.float64) / overall) if overall > 0 else 0.0
    chroma = np.quantile(flat[:, 0] - flat[:, -1], CHROMA_QUANTILES)
    n, h, w, c = a.shape
    renamed = np.ascontiguousarray(a).reshape(n, c, h, w).transpose(0, 2, 3, 1)

    def profile(v: np.ndarray) -> tuple[float, ...]:
        rows, cols = v.mean(axis=(0, 2, 3), dtype=np.float64), v.mean(axis=(0, 1, 3), dtype=np.float64)
        return tuple(float(x) for x in np.concatenate([rows, cols]))

    return ChannelStats(
        mean=tuple(float(v) for v in flat.mean(0, dtype=np.float64)),
        std=tuple(float(v) for v in flat.std(0, dtype=np.float64)),
        min=tuple(float(v) for v in flat.min(0)),
        max=tuple(float(v) for v in flat.max(0)),
        spread=spread,
        chroma=tuple(float(v) for v in chroma),
        count=int(flat.shape[0]),
        profile=profile(a),
        profile_as_nchw=profile(renamed),
    )


@dataclass(frozen=True)
class ContractWarning:
    """An input-contract warning for one stage: ``kind`` is ``value_scale``, ``channel_order`` or
    ``layout``; ``message`` says what differs and the likely cause."""

    stage: str
    kind: str
    message: str

    def to_dict(self) -> dict[str, str]:
        """JSON-ready mapping."""
        return {"stage": self.stage, "kind": self.kind, "message": self.message}


def check_input_contract(
    stats: Mapping[str, ChannelStats],
    reference: str,
    *,
    channel_order: str = "RGB",
    scale_ratio: float = 20.0,
    swap_ratio: float = 0.5,
    spread_ratio: float = 0.25,
) -> list[ContractWarning]:
    """Compare what each stage feeds the policy with what the sim frames feed it.

    Three checks, each against the ``reference`` stage (the sim frames):

    - value scale: the stage's value range (max − min) is ``scale_ratio`` times smaller or larger
      than the reference's (e.g. 0–1 frames where 0–255 are expected);
    - channel order: the stage's per-channel means and stds and its first − last channel
      quantiles (:meth:`ChannelStats.signature`) match the reference's better with the first
      and last channel exchanged (less than ``swap_ratio`` of the unswapped distance, which must
      exceed 2 % of the reference's value range) — BGR frames fed as RGB or the reverse;
    - layout: the reference's pixels have colour (channel spread ≥ 0.1) but the stage's channels
      are nearly equal at every pixel (spread below ``spread_ratio`` of the reference's), or the
      stage's row/column brightness profile matches the reference's far better (below
      ``swap_ratio`` of the distance) once its buffer is re-read as NCHW — an NCHW buffer
      reshaped (not transposed) to NHWC. The profile test needs frames of the same size.

    Args:
        stats: per-stage statistics, including the reference.
        reference: the key of the reference stage.
        channel_order: the policy's channel order, for the messages.
        scale_ratio: value-range factor that counts as a scale mismatch.
        swap_ratio: swapped / unswapped distance below which the order counts as swapped.
        spread_ratio: channel-spread fraction below which the layout is suspect.

    Returns:
        One warning per finding, in stage order.
    """
    if reference not in stats:
        raise KeyError(f"reference stage {reference!r} not in stats ({', '.join(stats)})")
    ref = stats[reference]
    ref_lo, ref_hi = min(ref.min), max(ref.max)
    ref_range = ref_hi - ref_lo
    ref_vec = ref.signature()
    other = "BGR" if channel_order == "RGB" else "RGB"
    out: list[ContractWarning] = []
    for name, st in stats.items():
        if name == reference:
            continue
        lo, hi = min(st.min), max(st.max)
        rng = hi - lo
        if ref_range > 0 and rng > 0:
            ratio = ref_range / rng
            if ratio >= scale_ratio or ratio <= 1.0 / scale_ratio:
                hint = ""
                if 100 <= ratio <= 650:
                    hint = (" — about 255× smaller: frames scaled to 0–1 where the policy expects "
                            "0–255 (divided by 255 twice?)")
                elif 1 / 650 <= ratio <= 1 / 100:
                    hint = (" — about 255× larger: 0–255 frames where the policy expects 0–1 "
                            "(a missing / 255?)")
                out.append(ContractWarning(name, "value_scale", (
                    f"value-scale mismatch: the policy receives values in [{lo:.3g}, {hi:.3g}] "
                    f"from this stage but [{ref_lo:.3g}, {ref_hi:.3g}] from sim frames{hint}"
                )))
                continue  # channel statistics are meaningless across scales
        if len(st.mean) >= 2 and ref_range > 0:
            d_same = float(np.linalg.norm(st.signature() - ref_vec))
            d_swap = float(np.linalg.norm(st.signature(swapped=True) - ref_vec))
            if d_same > 0.02 * ref_range and d_swap < swap_ratio * d_same:
                first, last = channel_order[0], channel_order[-1]
                means = ", ".join(f"{v:.1f}" for v in st.mean)
                ref_means = ", ".join(f"{v:.1f}" for v in ref.mean)
                out.append(ContractWarning(name, "channel_order", (
                    f"channel order looks swapped (BGR vs RGB): this stage's per-channel "
                    f"statistics match the sim frames' far better with {first} and {last} "
                    f"exchanged (distance {d_swap:.3g} vs {d_same:.3g}; means {means} vs sim "
                    f"{ref_means}; {first}−{last} 1st/99th percentiles {st.chroma[0]:.0f} / "
                    f"{st.chroma[-1]:.0f} vs sim {ref.chroma[0]:.0f} / {ref.chroma[-1]:.0f}) "
                    f"— {other} frames fed as {channel_order}? (the Jetbot CSI camera delivers "
                    "BGR)"
                )))
        evidence = []
        if ref.spread >= 0.1 and st.spread < spread_ratio * ref.spread:
            evidence.append(f"the channels are nearly equal at every pixel (channel spread "
                            f"{st.spread:.3f} vs {ref.spread:.3f} on sim frames)")
        if st.profile and len(st.profile) == len(ref.profile) and ref_range > 0:
            p_ref = np.asarray(ref.profile)
            d_same = float(np.linalg.norm(np.asarray(st.profile) - p_ref))
            d_fix = float(np.linalg.norm(np.asarray(st.profile_as_nchw) - p_ref))
            if d_same > 0.02 * ref_range and d_fix < swap_ratio * d_same:
                evidence.append(f"its row/column brightness profile matches the sim frames' far "
                                f"better once re-read as NCHW (distance {d_fix:.3g} vs "
                                f"{d_same:.3g})")
        if evidence:
            out.append(ContractWarning(name, "layout", (
                "layout mismatch suspected: " + "; ".join(evidence) + " — an NCHW buffer read "
                "as NHWC (reshape instead of transpose)" + ("" if len(evidence) > 1 else
                                                            ", or grey frames"
                                                            if "spread" in evidence[0] else "")
            )))
    return out
