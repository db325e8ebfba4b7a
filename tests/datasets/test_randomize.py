"""Tests for datasets.randomize: the random camera and the randomised-to-canonical pairs."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import albumentations as A
import numpy as np
import pytest
import torch
from conftest import tiny_train_overrides

from datasets.datamodule import TranslationDataModule
from datasets.randomize import (
    ObjectRecolor,
    SurfaceRecolor,
    SurfaceTexture,
    WithRandomizedPairs,
    build_camera_randomizer,
    flat_colours,
)
from datasets.unpaired import UnpairedImageDataset, build_transform, to_tensor


def _frame(h: int = 48, w: int = 48) -> np.ndarray:
    """A flat two-region sim-like frame (darker wall over a lighter floor, a red blob)."""
    img = np.full((h, w, 3), 150, np.uint8)
    img[: h // 2] = 100
    img[h // 2 : h // 2 + 6, w // 3 : w // 3 + 6] = (160, 20, 20)
    return img


def _seeded_draws(t: Any, img: np.ndarray) -> list[np.ndarray]:
    """``t`` on ``img`` with seeds 0, 0, 1: the same seed gives the same frame, another seed another."""
    outs = []
    for seed in (0, 0, 1):
        t.set_random_seed(seed)
        outs.append(t(image=img)["image"])
    np.testing.assert_array_equal(outs[0], outs[1])
    assert not np.array_equal(outs[0], outs[2])
    return outs


def test_surface_texture_is_a_seeded_multiplicative_field() -> None:
    t = SurfaceTexture(amplitude=(0.3, 0.3), p=1.0)
    img = _frame()
    outs = []
    for seed in (0, 0, 1):
        t.set_random_seed(seed)
        outs.append(t(image=img)["image"])
    assert outs[0].shape == img.shape and outs[0].dtype == np.uint8
    np.testing.assert_array_equal(outs[0], outs[1])
    assert not np.array_equal(outs[0], outs[2])
    assert not np.array_equal(outs[0], img)
    # multiplicative: a black frame stays black
    t.set_random_seed(3)
    assert t(image=np.zeros_like(img))["image"].max() == 0


def test_surface_recolor_changes_the_large_surfaces_and_keeps_the_objects() -> None:
    t = SurfaceRecolor(min_area=0.12, saturation=(0.4, 0.6), mix=(1.0, 1.0), p=1.0)
    img = _frame()
    blob = (slice(24, 30), slice(16, 22))
    outs = _seeded_draws(t, img)
    for out in outs:
        assert out.shape == img.shape and out.dtype == np.uint8
        np.testing.assert_array_equal(out[blob], img[blob])  # the red object keeps its colour
        wall, floor = out[:20].reshape(-1, 3), out[34:].reshape(-1, 3)
        # each surface is one new flat colour (saturated: no longer grey), each its own
        assert (wall == wall[0]).all() and (floor == floor[0]).all()
        assert np.ptp(wall[0].astype(int)) > 20 and np.ptp(floor[0].astype(int)) > 20
        assert not np.array_equal(wall[0], floor[0])
    # no surface large enough: nothing changes
    t2 = SurfaceRecolor(min_area=0.9, p=1.0)
    t2.set_random_seed(0)
    np.testing.assert_array_equal(t2(image=img)["image"], img)


def test_camera_randomizer_surfaces_zero_keeps_the_old_draws() -> None:
    img = _frame(64, 80)
    old, new = build_camera_randomizer(), build_camera_randomizer(surfaces=0.0)
    assert not any(isinstance(t, SurfaceRecolor) for t in new.transforms)
    with_surfaces = build_camera_randomizer(surfaces=1.0)
    assert isinstance(with_surfaces.transforms[0], SurfaceRecolor)
    for seed in range(4):
        old.set_random_seed(seed)
        new.set_random_seed(seed)
        np.testing.assert_array_equal(old(image=img)["image"], new(image=img)["image"])


def test_datamodule_refuses_a_surfaces_probability_outside_0_1() -> None:
    with pytest.raises(ValueError, match=r"data\.randomized_surfaces must be a probability in \[0, 1\]"):
        TranslationDataModule("unused", randomized_pairs=True, randomized_surfaces=1.5)


def _objects_frame() -> np.ndarray:
    """:func:`_frame` plus a yellow object, a grey shadow and a red object with a darker face."""
    img = _frame()
    img[40:46, 4:10] = (200, 180, 30)  # yellow box
    img[40:46, 30:40] = (90, 90, 90)  # grey shadow on the floor
    img[24:27, 16:22] = (120, 15, 15)  # the red blob's darker upper face
    return img


def test_flat_colours_counts_each_rgb_value() -> None:
    img = _objects_frame()
    colours, inverse, counts = flat_colours(img)
    assert counts.sum() == img.shape[0] * img.shape[1] and inverse.shape == (img.shape[0] * img.shape[1],)
    np.testing.assert_array_equal(colours[inverse].reshape(img.shape), img)
    assert len(colours) == 6


def test_object_recolor_turns_the_objects_hue_together_and_keeps_surfaces_and_greys() -> None:
    import colorsys

    t = ObjectRecolor(min_area=0.12, saturation=(1.0, 1.0), value=(1.0, 1.0), p=1.0)
    img = _objects_frame()
    red, dark_red, yellow = (slice(27, 30), slice(16, 22)), (slice(24, 27), slice(16, 22)), (slice(40, 46), slice(4, 10))
    outs = _seeded_draws(t, img)

    def hue(px: np.ndarray) -> float:
        return colorsys.rgb_to_hsv(*(px.astype(float) / 255.0))[0]

    for out in outs:
        assert out.shape == img.shape and out.dtype == np.uint8
        # the surfaces and the grey shadow keep their colours
        np.testing.assert_array_equal(out[:20], img[:20])
        np.testing.assert_array_equal(out[40:46, 30:40], img[40:46, 30:40])
        # each object stays one flat colour, and all of them turn their hue by the same amount
        turns = []
        for region in (red, dark_red, yellow):
            px = out[region].reshape(-1, 3)
            assert (px == px[0]).all() and not np.array_equal(px[0], img[region][0, 0])
            turns.append((hue(px[0]) - hue(img[region][0, 0])) % 1.0)
        assert max(turns) - min(turns) < 0.03 or max(turns) - min(turns) > 0.97
    # an object large enough to count as a surface is left alone
    t2 = ObjectRecolor(min_area=0.0, p=1.0)
    t2.set_random_seed(0)
    np.testing.assert_array_equal(t2(image=img)["image"], img)


def test_camera_randomizer_objects_zero_keeps_the_draws_and_one_puts_it_after_the_surfaces() -> None:
    img = _objects_frame()
    old, new = build_camera_randomizer(surfaces=0.5), build_camera_randomizer(surfaces=0.5, objects=0.0)
    assert not any(isinstance(t, ObjectRecolor) for t in new.transforms)
    for seed in range(4):
        old.set_random_seed(seed)
        new.set_random_seed(seed)
        np.testing.assert_array_equal(old(image=img)["image"], new(image=img)["image"])
    both = build_camera_randomizer(surfaces=0.5, objects=1.0)
    assert isinstance(both.transforms[0], SurfaceRecolor) and isinstance(both.transforms[1], ObjectRecolor)
    only = build_camera_randomizer(objects=0.3)
    assert isinstance(only.transforms[0], ObjectRecolor) and only.transforms[0].p == pytest.approx(0.3)


def test_camera_randomizer_lens_zero_keeps_the_draws_and_one_bends_straight_lines() -> None:
    img = _objects_frame()
    old, new = build_camera_randomizer(surfaces=0.5), build_camera_randomizer(surfaces=0.5, lens=0.0)
    assert not any(isinstance(t, A.OpticalDistortion) for t in new.transforms)
    for seed in range(4):
        old.set_random_seed(seed)
        new.set_random_seed(seed)
        np.testing.assert_array_equal(old(image=img)["image"], new(image=img)["image"])
    on = build_camera_randomizer(lens=1.0)
    kinds = [type(t) for t in on.transforms]
    lens_at = kinds.index(A.OpticalDistortion)
    assert kinds[lens_at + 1] is A.Affine and on.transforms[lens_at + 1].p == pytest.approx(0.5)
    assert lens_at > kinds.index(A.RandomToneCurve)  # with the lens ops, after the tone
    # the geometry alone: pixels move (by their coordinates, written into the image) a few pixels
    # near the border, much less at the centre
    yy, xx = np.mgrid[0:96, 0:96]
    coords = np.stack([xx * 2, yy * 2, np.zeros_like(xx)], axis=2).astype(np.uint8)  # 2 levels a pixel
    bend = A.Compose([t for t in on.transforms if isinstance(t, A.OpticalDistortion)])
    border, centre = [], []
    for seed in range(8):
        bend.set_random_seed(seed)
        shift = np.abs(bend(image=coords)["image"].astype(float) - coords)[..., :2].sum(axis=2) / 2
        border.append(np.concatenate([shift[4:12, 4:92].ravel(), shift[84:92, 4:92].ravel()]).mean())
        centre.append(shift[40:56, 40:56].mean())
    # (albumentations' map has a constant half-pixel offset: about 1 at the centre here)
    assert np.mean(border) > 2 * np.mean(centre) > 0


def test_datamodule_refuses_a_lens_probability_outside_0_1() -> None:
    with pytest.raises(ValueError, match=r"data\.randomized_lens must be a probability in \[0, 1\]"):
        TranslationDataModule("unused", randomized_pairs=True, randomized_lens=1.5)


def test_datamodule_refuses_an_objects_probability_outside_0_1() -> None:
    with pytest.raises(ValueError, match=r"data\.randomized_objects must be a probability in \[0, 1\]"):
        TranslationDataModule("unused", randomized_pairs=True, randomized_objects=-0.1)


def test_camera_randomizer_is_seeded_and_changes_the_look_not_the_size() -> None:
    r = build_camera_randomizer()
    img = _frame(64, 80)
    outs = []
    for seed in range(12):
        r.set_random_seed(seed)
        outs.append(r(image=img)["image"])
    r.set_random_seed(5)
    np.testing.assert_array_equal(r(image=img)["image"], outs[5])
    assert all(o.shape == img.shape and o.dtype == np.uint8 for o in outs)
    changed = [not np.array_equal(o, img) for o in outs]
    assert sum(changed) >= 10  # nearly every draw is another camera
    means = np.stack([o.reshape(-1, 3).mean(0) for o in outs])
    assert means.std(0).min() > 3.0  # the colour cast varies between draws


def _train_set(root: Path) -> UnpairedImageDataset:
    return UnpairedImageDataset(root / "real", root / "sim",
                                transform=build_transform(load_size=None, crop_size=32, flip=True, train=True))


def test_randomized_pairs_pair_a_sim_frame_with_its_randomised_self(tiny_unpaired: Path) -> None:
    base = _train_set(tiny_unpaired)
    ds = WithRandomizedPairs(base, flip=False)
    assert len(ds) == len(base)
    item = ds[(3, 12345)]
    assert set(item) == {"real", "sim", "paired_real", "paired_sim"}
    assert item["real"].shape == (3, 32, 32)  # the unpaired item keeps its crop
    assert item["paired_real"].shape == item["paired_sim"].shape == (3, 32, 32)  # full 32 px frames
    sims = [to_tensor(base._get("sim", j)) for j in range(len(base.sim_paths))]
    assert any(torch.equal(item["paired_sim"], s) for s in sims)  # the target is a sim training frame
    assert not torch.equal(item["paired_real"], item["paired_sim"])
    # keyed: the same key gives the same pair, another key another; the unpaired item is unchanged
    again = ds[(3, 12345)]
    for k in item:
        torch.testing.assert_close(again[k], item[k], rtol=0, atol=0)
    torch.testing.assert_close(item["real"], base[(3, 12345)]["real"], rtol=0, atol=0)
    assert not torch.equal(ds[(3, 999)]["paired_real"], item["paired_real"])


def test_randomized_pairs_flip_both_frames_together(tiny_unpaired: Path) -> None:
    base = _train_set(tiny_unpaired)
    ds = WithRandomizedPairs(base, flip=True)
    sims = [to_tensor(base._get("sim", j)) for j in range(len(base.sim_paths))]
    flipped = 0
    for seed in range(16):
        pair = ds[(0, seed)]
        plain = any(torch.equal(pair["paired_sim"], s) for s in sims)
        mirrored = any(torch.equal(pair["paired_sim"], s.flip(-1)) for s in sims)
        assert plain or mirrored
        flipped += int(mirrored and not plain)
        # the randomised input follows its target's orientation: closer to it than to its mirror
        d_same = (pair["paired_real"] - pair["paired_sim"]).abs().mean()
        d_mirror = (pair["paired_real"] - pair["paired_sim"].flip(-1)).abs().mean()
        assert d_same <= d_mirror + 1e-6
    assert 0 < flipped < 16


def test_datamodule_batches_carry_the_randomized_pairs(tiny_unpaired: Path) -> None:
    dm = TranslationDataModule(str(tiny_unpaired), camera_yaml=None, crop_size=16, batch_size=2,
                               randomized_pairs=True, steps_per_epoch=2)
    dm.setup("fit")
    batch = next(iter(dm.train_dataloader()))
    assert batch["real"].shape == (2, 3, 16, 16)
    assert batch["paired_real"].shape == batch["paired_sim"].shape == (2, 3, 32, 32)


def test_datamodule_hands_the_surfaces_probability_to_the_random_camera(tiny_unpaired: Path) -> None:
    dm = TranslationDataModule(str(tiny_unpaired), camera_yaml=None, crop_size=16, randomized_pairs=True,
                               randomized_surfaces=0.7, steps_per_epoch=2)
    dm.setup("fit")
    pairs = dm.train_dataloader().dataset.base  # Resized(WithRandomizedPairs)
    assert isinstance(pairs, WithRandomizedPairs)
    first = pairs.randomizer.transforms[0]
    assert isinstance(first, SurfaceRecolor) and first.p == pytest.approx(0.7)


def test_datamodule_hands_the_objects_probability_to_the_random_camera(tiny_unpaired: Path) -> None:
    dm = TranslationDataModule(str(tiny_unpaired), camera_yaml=None, crop_size=16, randomized_pairs=True,
                               randomized_surfaces=0.6, randomized_objects=0.4, steps_per_epoch=2)
    dm.setup("fit")
    pairs = dm.train_dataloader().dataset.base
    assert isinstance(pairs, WithRandomizedPairs)
    second = pairs.randomizer.transforms[1]
    assert isinstance(second, ObjectRecolor) and second.p == pytest.approx(0.4)


def test_paired_dir_and_randomized_pairs_are_exclusive() -> None:
    with pytest.raises(ValueError, match=r"data\.paired_dir and data\.randomized_pairs=true"):
        TranslationDataModule("unused", paired_dir="somewhere", randomized_pairs=True)


def test_training_with_randomized_pairs_logs_the_paired_term_and_strip(
    compose_cfg: Any, tiny_synth: Path, tmp_path: Path
) -> None:
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    from workflows.training import train

    ov = tiny_train_overrides("cyclegan", tiny_synth, tmp_path, steps=2) + [
        "data.randomized_pairs=true", "model.policy_losses.paired_pixel=10", "trainer.log_every_n_steps=1",
    ]
    out = train(compose_cfg("train", ov))
    assert out["global_step"] == 2
    ea = EventAccumulator(str(Path(out["run_dir"]) / "tb"))
    ea.Reload()
    assert "train/loss_paired_pixel" in set(ea.Tags()["scalars"])
    assert "train/paired_real|translated|paired_sim" in set(ea.Tags()["images"])


def test_k_randomized_pairs_per_item_are_k_independent_pairs(tiny_unpaired: Path) -> None:
    base = _train_set(tiny_unpaired)
    one = WithRandomizedPairs(base, flip=False)[(3, 12345)]
    four = WithRandomizedPairs(base, flip=False, per_item=4)[(3, 12345)]
    assert four["paired_real"].shape == four["paired_sim"].shape == (4, 3, 32, 32)
    # the first of k is the pair a one-pair run draws (same keyed stream), the others differ
    torch.testing.assert_close(four["paired_real"][0], one["paired_real"], rtol=0, atol=0)
    torch.testing.assert_close(four["paired_sim"][0], one["paired_sim"], rtol=0, atol=0)
    assert len({tuple(x.flatten()[:64].tolist()) for x in four["paired_real"]}) == 4
    torch.testing.assert_close(four["real"], one["real"], rtol=0, atol=0)


def test_datamodule_checks_and_batches_k_pairs_per_item(tiny_unpaired: Path) -> None:
    with pytest.raises(ValueError, match=r"data\.randomized_pairs_per_item must be >= 1"):
        TranslationDataModule("unused", randomized_pairs=True, randomized_pairs_per_item=0)
    dm = TranslationDataModule(str(tiny_unpaired), camera_yaml=None, crop_size=16, batch_size=2,
                               randomized_pairs=True, randomized_pairs_per_item=3, steps_per_epoch=2)
    dm.setup("fit")
    batch = next(iter(dm.train_dataloader()))
    assert batch["paired_real"].shape == batch["paired_sim"].shape == (2, 3, 3, 32, 32)


@pytest.mark.parametrize("step", ["eager", "fast"])
def test_training_with_k_randomized_pairs_runs_on_both_executors(
    compose_cfg: Any, tiny_synth: Path, tmp_path: Path, step: str
) -> None:
    from workflows.training import train

    ov = tiny_train_overrides("cyclegan", tiny_synth, tmp_path, steps=2) + [
        "data.randomized_pairs=true", "data.randomized_pairs_per_item=3",
        "model.policy_losses.paired_pixel=10", "model.policy_losses.paired=5",
        "policy=custom", f"policy.path={tiny_synth / 'policy' / 'policy.onnx'}", f"step={step}",
    ]
    out = train(compose_cfg("train", ov))
    assert out["global_step"] == 2
