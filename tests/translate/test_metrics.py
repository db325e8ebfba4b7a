"""Metrics against hand-computed values: images, distributions, actions, bootstrap, input contract."""

from __future__ import annotations

import math

import numpy as np
import pytest

from translate.metrics import (
    PSNR_CAP_DB,
    Lpips,
    action_jitter,
    action_metrics,
    bootstrap_ci,
    channel_stats,
    check_input_contract,
    cosine_similarity,
    energy_distance,
    frechet_distance,
    gap_closed,
    kid,
    mean_abs_change,
    per_frame_abs_error,
    psnr,
    sliced_wasserstein,
    ssim,
    turn_agreement,
    turn_direction,
    wasserstein_1d,
    wilson_interval,
    within_tolerance,
)

# ---------------------------------------------------------------------------- paired images


def test_psnr_hand_values() -> None:
    a = np.zeros((2, 4, 4, 3), np.uint8)
    b = a.copy()
    b[0] = 255  # MSE 255² -> 0 dB
    b[1] = 1  # MSE 1 -> 20 log10(255)
    got = psnr(a, b)
    assert got.shape == (2,)
    assert got[0] == pytest.approx(0.0)
    assert got[1] == pytest.approx(20 * math.log10(255))
    assert psnr(a, a)[0] == pytest.approx(PSNR_CAP_DB)  # identical frames: capped, not inf
    assert psnr(a[0], b[0]).shape == (1,)  # a single HWC frame is a batch of one


def test_psnr_shape_mismatch_names_both() -> None:
    with pytest.raises(ValueError, match="same shape"):
        psnr(np.zeros((1, 4, 4, 3)), np.zeros((1, 4, 5, 3)))


def test_ssim_identical_and_constant_frames() -> None:
    a = np.random.default_rng(0).integers(0, 256, (2, 24, 24, 3), dtype=np.uint8)
    assert ssim(a, a) == pytest.approx([1.0, 1.0], abs=1e-5)
    # constant frames: no variance, so SSIM is the luminance term (2 μ1 μ2 + C1) / (μ1² + μ2² + C1)
    c1, c2 = np.full((1, 16, 16, 3), 51, np.uint8), np.full((1, 16, 16, 3), 153, np.uint8)
    mu1, mu2, k1 = 0.2, 0.6, 0.01**2
    expected = (2 * mu1 * mu2 + k1) / (mu1**2 + mu2**2 + k1)
    assert ssim(c1, c2)[0] == pytest.approx(expected, abs=1e-5)


def test_lpips_unavailable_without_cached_weights(tmp_path) -> None:
    metric = Lpips(cache_dir=tmp_path)  # an empty hub folder: nothing cached
    assert not metric.available
    assert "alexnet-owt-7be5be79.pth" in metric.reason and "never downloads" in metric.reason
    with pytest.raises(RuntimeError, match="LPIPS is unavailable"):
        metric(np.zeros((1, 32, 32, 3), np.uint8), np.zeros((1, 32, 32, 3), np.uint8))


def test_lpips_corrupt_cache_is_a_reason_not_a_crash(tmp_path) -> None:
    bad = tmp_path / "checkpoints" / "alexnet-owt-7be5be79.pth"
    bad.parent.mkdir()
    bad.write_bytes(b"not a checkpoint")
    metric = Lpips(cache_dir=tmp_path)
    assert not metric.available and "cannot build LPIPS" in metric.reason


@pytest.mark.slow
def test_lpips_with_locally_cached_backbone(tmp_path) -> None:
    torch = pytest.importorskip("torch")
    torchvision = pytest.importorskip("torchvision")
    pytest.importorskip("lpips")
    weights = tmp_path / "checkpoints" / "alexnet-owt-7be5be79.pth"
    weights.parent.mkdir()
    torch.manual_seed(0)
    torch.save(torchvision.models.alexnet(weights=None).state_dict(), weights)
    metric = Lpips(cache_dir=tmp_path)
    assert metric.available, metric.reason
    rng = np.random.default_rng(0)
    a = rng.integers(0, 256, (2, 64, 64, 3), dtype=np.uint8)
    b = rng.integers(0, 256, (2, 64, 64, 3), dtype=np.uint8)
    assert metric(a, a) == pytest.approx([0.0, 0.0], abs=1e-6)
    assert (metric(a, b) > 0).all()


# ---------------------------------------------------------------------------- distributions


def test_frechet_distance_hand_values() -> None:
    # 1-D: means 1 and 4, unbiased variances 2 and 2: 9 + 2 + 2 - 2 sqrt(4) = 9
    assert frechet_distance([[0.0], [2.0]], [[3.0], [5.0]]) == pytest.approx(9.0)
    # variances 2 and 8: (1 - 2)² + 2 + 8 - 2 sqrt(16) = 3
    assert frechet_distance([[0.0], [2.0]], [[0.0], [4.0]]) == pytest.approx(3.0)
    x = np.random.default_rng(0).normal(size=(40, 8))
    assert frechet_distance(x, x) == pytest.approx(0.0, abs=1e-9)


def test_frechet_distance_small_and_large_sets_agree_with_the_covariance_formula() -> None:
    rng = np.random.default_rng(1)

    def reference(a: np.ndarray, b: np.ndarray) -> float:
        ca, cb = np.cov(a, rowvar=False), np.cov(b, rowvar=False)
        w, v = np.linalg.eigh(ca)
        sa = (v * np.sqrt(np.clip(w, 0, None))) @ v.T
        cross = np.sqrt(np.clip(np.linalg.eigvalsh(sa @ cb @ sa), 0, None)).sum()
        mu = a.mean(0) - b.mean(0)
        return float(mu @ mu + np.trace(ca) + np.trace(cb) - 2 * cross)

    for n, m, d in [(6, 9, 12), (30, 40, 5), (50, 7, 6)]:  # N < D, N > D, mixed
        a, b = rng.normal(size=(n, d)), rng.normal(size=(m, d)) * 1.5 + 0.3
        assert frechet_distance(a, b) == pytest.approx(reference(a, b), rel=1e-6)


def test_kid_hand_value() -> None:
    # k(x, y) = (x y + 1)³ with γ = 1, c0 = 1 on a = {0, 1}, b = {1, 2}:
    # mean_{i≠j} k(a) = 1, mean_{i≠j} k(b) = 27, mean k(a, b) = (1 + 1 + 8 + 27) / 4 = 9.25
    value, std = kid([[0.0], [1.0]], [[1.0], [2.0]], gamma=1.0)
    assert value == pytest.approx(1 + 27 - 2 * 9.25)
    assert std is None
    rng = np.random.default_rng(0)
    a, b = rng.normal(size=(200, 4)), rng.normal(size=(200, 4))
    same, shifted = kid(a, b)[0], kid(a, b + 1.0)[0]
    assert abs(same) < 0.1 * shifted  # two samples of one distribution: ≈ 0 (unbiased)


def test_kid_subsets_are_seeded() -> None:
    rng = np.random.default_rng(0)
    a, b = rng.normal(size=(60, 4)), rng.normal(size=(50, 4)) + 0.5
    v1, s1 = kid(a, b, subset_size=20, n_subsets=10, seed=3)
    v2, s2 = kid(a, b, subset_size=20, n_subsets=10, seed=3)
    assert (v1, s1) == (v2, s2) and s1 is not None and v1 > 0


def test_energy_distance_hand_values() -> None:
    assert energy_distance(np.array([0.0]), np.array([1.0])) == pytest.approx(math.sqrt(2))
    # a = {0, 2}, b = {1}: 2·1 − (0 + 2 + 2 + 0)/4 − 0 = 1
    assert energy_distance(np.array([0.0, 2.0]), np.array([1.0])) == pytest.approx(1.0)
    x = np.random.default_rng(0).normal(size=(20, 2))
    assert energy_distance(x, x) == 0.0


def test_wasserstein_hand_values() -> None:
    assert wasserstein_1d(np.array([0.0, 1.0, 3.0]), np.array([5.0, 6.0, 8.0])) == pytest.approx(5)
    assert wasserstein_1d(np.array([0.0]), np.array([1.0, 3.0])) == pytest.approx(2.0)
    assert sliced_wasserstein(np.array([[0.0], [1.0]]), np.array([[2.0], [3.0]])) == 2.0
    # point masses 1 apart in 2-D: E|cos θ| over random directions is 2/π
    swd = sliced_wasserstein(np.zeros((3, 2)), np.tile([[1.0, 0.0]], (3, 1)), n_projections=4000)
    assert swd == pytest.approx(2 / math.pi, rel=0.03)


# ---------------------------------------------------------------------------- actions


def test_turn_direction_and_dead_zone() -> None:
    a = np.array([[0.5, 0.1], [0.1, 0.5], [0.3, 0.32], [0.3, 0.25]])
    assert turn_direction(a, 0.05).tolist() == [1, -1, 0, 0]  # |0.05| ≤ dead zone: straight
    assert turn_direction(a, 0.0).tolist() == [1, -1, -1, 1]
    with pytest.raises(ValueError, match=r"\(left, right\)"):
        turn_direction(np.zeros((3, 3)))


def test_action_metrics_hand_values() -> None:
    pred = np.array([[0.0, 0.0], [1.0, 1.0]])
    ref = np.array([[0.0, 1.0], [1.0, 1.0]])
    m = action_metrics(pred, ref, dead_zone=0.05, tolerance=0.1, names=["left", "right"])
    assert m["action_mae"] == pytest.approx(0.25)
    assert m["action_rmse"] == pytest.approx(0.5)
    assert m["action_mae_left"] == 0.0 and m["action_mae_right"] == pytest.approx(0.5)
    assert m["action_rmse_right"] == pytest.approx(math.sqrt(0.5))
    assert m["action_cosine"] == pytest.approx(0.5)  # zero vs non-zero = 0; equal = 1
    assert m["turn_agreement"] == pytest.approx(0.5)  # straight vs left; straight vs straight
    assert m["within_tolerance"] == pytest.approx(0.5)
    assert per_frame_abs_error(pred, ref).tolist() == [0.5, 0.0]
    assert turn_agreement(pred, ref).tolist() == [False, True]
    assert within_tolerance(pred, ref, 1.0).tolist() == [True, True]
    assert cosine_similarity(np.zeros((1, 2)), np.zeros((1, 2))).tolist() == [1.0]
    with pytest.raises(ValueError, match="same shape"):
        action_metrics(pred, ref[:1])


def test_gap_closed_definition() -> None:
    assert gap_closed(0.4, 0.2, 0.1)[0] == pytest.approx(2 / 3)
    assert gap_closed(0.4, 0.4, 0.1)[0] == 0.0  # raw
    assert gap_closed(0.4, 0.1, 0.1)[0] == 1.0  # sim
    assert gap_closed(0.4, 0.7, 0.1)[0] == pytest.approx(-1.0)  # worse than raw
    value, reason = gap_closed(0.2, 0.1, 0.2)
    assert value is None and "no sim-to-real gap" in reason
    value, reason = gap_closed(float("nan"), 0.1, 0.2)
    assert value is None and "non-finite" in reason


# ---------------------------------------------------------------------------- bootstrap


def test_bootstrap_is_deterministic_and_brackets_the_mean() -> None:
    e = np.random.default_rng(0).random(200)

    def stat(idx: np.ndarray) -> np.ndarray:
        return e[idx].mean(1)

    ci = bootstrap_ci(stat, len(e), n_resamples=500, seed=7)
    assert ci == bootstrap_ci(stat, len(e), n_resamples=500, seed=7)
    assert ci != bootstrap_ci(stat, len(e), n_resamples=500, seed=8)
    assert ci is not None and ci[0] < e.mean() < ci[1]
    const = np.full(10, 0.3)
    assert bootstrap_ci(lambda idx: const[idx].mean(1), 10) == pytest.approx((0.3, 0.3))
    assert bootstrap_ci(stat, 1) is None
    # a statistic that is undefined in most resamples has no interval
    assert bootstrap_ci(lambda idx: np.full(len(idx), np.nan), 10) is None


# ---------------------------------------------------------------------------- input contract


def _scene(n: int = 4, size: int = 24) -> np.ndarray:
    """Grey room with a red object: channel means alike, R − B tails not."""
    rng = np.random.default_rng(0)
    f = np.full((n, size, size, 3), 140, np.float32) + rng.normal(0, 6, (n, size, size, 1))
    f[:, 8:14, 8:14] = (200, 30, 30)
    return np.clip(f, 0, 255)


def test_channel_stats_hand_values_and_layouts() -> None:
    x = np.zeros((1, 2, 2, 3), np.float32)
    x[..., 0] = [[0, 2], [4, 6]]
    x[..., 2] = 1
    st = channel_stats(x)
    assert st.mean == (3.0, 0.0, 1.0)
    assert st.min == (0.0, 0.0, 1.0) and st.max == (6.0, 0.0, 1.0)
    assert st.std[0] == pytest.approx(math.sqrt(5.0))
    assert st.count == 4
    assert channel_stats(x.transpose(0, 3, 1, 2), "NCHW") == st


def test_contract_check_names_scale_swap_and_layout() -> None:
    sim = _scene()
    stats = {
        "sim": channel_stats(sim),
        "good": channel_stats(np.clip(sim + 3, 0, 255)),
        "unit": channel_stats(sim / 255.0),  # 0–1 where 0–255 is expected
        "swapped": channel_stats(sim[..., ::-1]),  # BGR fed as RGB
        "nchw": channel_stats(sim.transpose(0, 3, 1, 2).reshape(sim.shape)),  # reshape, no transpose
    }
    warnings = {(w.stage, w.kind): w.message for w in check_input_contract(stats, "sim")}
    assert set(warnings) == {("unit", "value_scale"), ("swapped", "channel_order"),
                             ("nchw", "layout")}
    assert "255" in warnings[("unit", "value_scale")]
    assert "BGR" in warnings[("swapped", "channel_order")]
    assert "NCHW" in warnings[("nchw", "layout")]
    with pytest.raises(KeyError, match="reference stage"):
        check_input_contract(stats, "nope")


# ---------------------------------------------------------------------------- rates, temporal


def test_wilson_interval() -> None:
    lo, hi = wilson_interval(7, 10)
    assert (round(lo, 4), round(hi, 4)) == (0.3968, 0.8922)  # textbook value for 7/10 at 95 %
    assert wilson_interval(0, 20)[0] == pytest.approx(0.0, abs=1e-12) and 0 < wilson_interval(0, 20)[1] < 0.2
    assert wilson_interval(20, 20)[1] == pytest.approx(1.0)
    assert wilson_interval(0, 0) is None
    with pytest.raises(ValueError, match="successes <= n"):
        wilson_interval(3, 2)


def test_mean_abs_change_and_jitter() -> None:
    a = np.zeros((2, 2, 2, 3), np.uint8)
    b = a.copy()
    b[0] = 10
    b[1, 0] = 255  # no uint8 wrap-around: |0 - 255| = 255, half the pixels
    assert mean_abs_change(a, b).tolist() == [10.0, 127.5]
    assert mean_abs_change(b, a).tolist() == [10.0, 127.5]
    with pytest.raises(ValueError, match=r"\(N, H, W, C\)"):
        mean_abs_change(a[0], b[0])
    assert action_jitter(np.array([[0.0, 0.0], [0.2, 0.0], [0.2, 0.4]])) == pytest.approx(0.15)
    assert math.isnan(action_jitter(np.zeros((1, 2))))
