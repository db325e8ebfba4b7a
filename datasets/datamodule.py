"""LightningDataModule for unpaired real→sim translator training (folders or the jetbot_synth world)."""

from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import Any, Literal

import lightning as L
import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset

from datasets.folders import resolve_unpaired_folders
from datasets.sampling import KeyedRandomSampler, item_substream
from datasets.unpaired import UnpairedImageDataset, build_transform, to_tensor
from translate.camera import CameraCorrection, load_camera_yaml, resolve_camera_setting
from translate.imageio import read_image
from translate.pairs import find_paired_samples

__all__ = ["PairedValDataset", "Resized", "TranslationDataModule", "WithPairs"]

log = logging.getLogger(__name__)


def _on_cuda(trainer: Any) -> bool:
    """Whether ``trainer`` (or None) trains on a CUDA device."""
    strategy = getattr(trainer, "strategy", None)
    return getattr(getattr(strategy, "root_device", None), "type", "cpu") == "cuda"


class PairedValDataset(Dataset[dict[str, Any]]):
    """Paired frames for validation by action agreement: lens-corrected real, raw real, sim, action.

    ``raw`` is the real frame as the camera gave it (no lens correction): the report's "raw real"
    stage, against which gap closed is measured. It is left out when its size differs from the
    corrected frame's (the batch could not stack them).

    Shape:
        Items: ``{"real": (3, H, W) in [-1, 1], "sim": (3, H, W) in [-1, 1], "action": (A,),
        "index": int}`` and ``"raw": (3, H, W)`` in [-1, 1] when present.
    """

    def __init__(
        self, root: str | os.PathLike[str], correction: CameraCorrection | None,
        *, need_actions: bool = True,
    ) -> None:
        samples, _ = find_paired_samples(root)
        if need_actions and any(s.action is None for s in samples):
            raise ValueError(f"validation folder {root} must carry actions in manifest.jsonl")
        self.samples = samples
        raws = [read_image(s.real) for s in samples]
        reals = list(correction.apply(np.stack(raws))) if correction is not None else raws
        self.real = [to_tensor(r) for r in reals]
        same = all(a.shape == b.shape for a, b in zip(raws, reals, strict=True))
        self.raw = [to_tensor(r) for r in raws] if correction is not None and same else self.real
        self.sim = [to_tensor(read_image(s.sim)) for s in samples if s.sim is not None]
        self.actions = torch.tensor([s.action or (0.0, 0.0) for s in samples], dtype=torch.float32)

    def __len__(self) -> int:
        return len(self.samples)

    def __getitem__(self, i: int) -> dict[str, Any]:
        return {"real": self.real[i], "raw": self.raw[i], "sim": self.sim[i],
                "action": self.actions[i], "index": i}


class WithPairs(Dataset[dict[str, torch.Tensor]]):
    """Adds a random paired (real, sim) sample — full frames, uncropped — to each unpaired item.

    For the optional paired policy term π(G(x_real)) ≈ π(y_sim) (users who can render pairs).

    Shape:
        Items: the unpaired item plus ``paired_real``, ``paired_sim``: (3, H, W) in [-1, 1].
    """

    def __init__(self, base: Dataset[dict[str, torch.Tensor]], pairs: PairedValDataset) -> None:
        self.base = base
        self.pairs = pairs

    def __len__(self) -> int:
        return len(self.base)  # type: ignore[arg-type]

    def __getitem__(self, key: int | tuple[int, int]) -> dict[str, torch.Tensor]:
        item = dict(self.base[key])  # type: ignore[index]
        g = item_substream(key, 0x5BD1E995)
        j = int(torch.randint(len(self.pairs), (1,), generator=g).item())
        pair = self.pairs[j]
        item["paired_real"], item["paired_sim"] = pair["real"], pair["sim"]
        return item


class Resized(Dataset[dict[str, torch.Tensor]]):
    """A dataset seen as ``length`` items: item ``i`` is ``base[i % len(base)]``.

    Sets the epoch length (``steps_per_epoch × batch_size``) while leaving the sampling to the
    DataLoader's shuffle — which Lightning replaces by a ``DistributedSampler`` under DDP, so each
    rank gets its share of the epoch (a custom sampler would be dropped there).
    """

    def __init__(self, base: Dataset[dict[str, torch.Tensor]], length: int) -> None:
        self.base = base
        self.length = int(length)
        self.n = len(base)  # type: ignore[arg-type]

    def __len__(self) -> int:
        return self.length

    def __getitem__(self, key: int | tuple[int, int]) -> dict[str, torch.Tensor]:
        if isinstance(key, (tuple, list)):
            return self.base[(int(key[0]) % self.n, int(key[1]))]  # type: ignore[index]
        return self.base[key % self.n]


def _check_same_size(ds: UnpairedImageDataset) -> None:
    """Without a resize or crop every frame is trained at its own size: they must all match.

    Uses the decoded cache, or (uncached) each file's header; real frames that a lens correction
    maps to the sim camera's size are checked after it.
    """
    from PIL import Image

    def sizes(frames: list[np.ndarray] | None, paths: list[Path], corrected: bool) -> list[tuple[int, int]]:
        if frames is not None:
            return [tuple(f.shape[:2]) for f in frames]  # type: ignore[misc]
        if corrected and ds.correction is not None:
            return [tuple(ds.correction.out_size)] * len(paths)  # type: ignore[list-item]
        out = []
        for p in paths:
            with Image.open(p) as im:
                out.append((im.height, im.width))
        return out

    shapes = {"real": sizes(ds._real, ds.real_paths, True), "sim": sizes(ds._sim, ds.sim_paths, False)}
    for domain, paths in (("real", ds.real_paths), ("sim", ds.sim_paths)):
        dims = shapes[domain]
        if not dims:
            continue
        first = dims[0]
        for hw, path in zip(dims, paths, strict=False):
            if hw != first:
                raise ValueError(
                    f"{domain} frames differ in size ({paths[0].name} {first[1]}x{first[0]}, {path.name} "
                    f"{hw[1]}x{hw[0]}) and data.load_size=null data.crop_size=null train "
                    "them at their own size: set data.load_size (resize) and/or data.crop_size")
    if shapes["real"] and shapes["sim"] and shapes["real"][0] != shapes["sim"][0]:
        r, m = shapes["real"][0], shapes["sim"][0]
        raise ValueError(f"real frames are {r[1]}x{r[0]} but sim frames {m[1]}x{m[0]} and data.load_size=null "
                         "data.crop_size=null: set data.load_size (resize) and/or data.crop_size")


_PROBABILITIES = ("randomized_surfaces", "randomized_objects", "randomized_lens")


def _check_data_settings(**values: Any) -> None:
    """Refuse data settings that would fail later, or silently, naming the key (``data.<key>``).

    Integers (sizes, counts) must be whole numbers >= 1 where given (``num_workers`` >= 0);
    probabilities (``randomized_surfaces``, ``randomized_objects``, ``randomized_lens``) numbers in
    [0, 1]; a crop must fit inside the resize,
    and without a crop the resize must be a multiple of 4 (the generators halve twice and double
    twice).
    """
    for key, v in values.items():
        if key in _PROBABILITIES:
            if isinstance(v, bool) or not isinstance(v, (int, float)) or not 0.0 <= float(v) <= 1.0:
                raise ValueError(f"data.{key} must be a probability in [0, 1], got {v!r}")
            continue
        if v is None and key not in ("batch_size", "num_workers", "randomized_pairs_per_item"):
            continue
        if isinstance(v, bool) or not isinstance(v, int):
            raise ValueError(f"data.{key} must be a whole number, got {v!r}")
        lowest = 0 if key == "num_workers" else 1
        if v < lowest:
            raise ValueError(f"data.{key} must be >= {lowest}, got {v}")
    load, crop = values.get("load_size"), values.get("crop_size")
    if load is not None and crop is not None and crop > load:
        raise ValueError(f"data.crop_size={crop} is larger than data.load_size={load}: the crop must "
                         "fit inside the resized frame")
    size = crop if crop is not None else load
    if size is not None and size % 4:
        key = "crop_size" if crop is not None else "load_size"
        hint = " (with data.crop_size=null the frames are trained at data.load_size; set data.load_size=null to keep their own size)" if crop is None else ""
        raise ValueError(f"data.{key}={size} is not a multiple of 4, which the generators need{hint}")


class TranslationDataModule(L.LightningDataModule):
    """Unpaired real/sim training data, optional paired validation data.

    Args:
        root: dataset root with ``real/`` + ``sim/`` (or ``trainA/`` + ``trainB/``).
        name: a short name for run folders and logs.
        real_dir, sim_dir: explicit folders (override ``root``'s layout).
        synth: parameters of :func:`datasets.jetbot_synth.ensure_dataset`; when given, the
            synthetic world is generated into ``root`` on first use.
        camera_yaml: ``"auto"`` (``root/camera.yaml`` when present), a path, or None (no
            lens correction).
        correct_real: apply the lens correction to real frames before the translator.
        load_size, crop_size, flip: the official resize → random crop → flip pipeline.
        batch_size: images per domain per step.
        num_workers: DataLoader workers (0 = in the main process).
        cache: decode the folders into memory once.
        on_error: undecodable images are skipped (and reported) or fatal.
        steps_per_epoch: iterations per epoch (on every rank under DDP) instead of one pass over
            ``max(n_real, n_sim)``; the LR schedule is per epoch, so this sets its pace.
        val_dir: a paired folder with actions for validation by action agreement, or None.
        paired_dir: a paired folder used in training by the paired policy loss, or None.
        randomized_pairs: add a randomised-to-canonical pair to each item instead: a sim
            training frame through a random camera, paired with itself
            (:class:`datasets.randomize.WithRandomizedPairs`), for the same paired terms.
        randomized_pairs_per_item: random-camera pairs per item (each its own sim frame and
            camera): more per-frame targets per iteration at one extra batched generator pass.
        randomized_surfaces: probability in [0, 1] that the random camera first gives each large
            flat surface of the sim frame (floor, walls) its own colour
            (:class:`datasets.randomize.SurfaceRecolor`); 0 = the random camera as before.
        randomized_objects: probability in [0, 1] that the random camera then turns the hue of
            the sim frame's coloured objects (:class:`datasets.randomize.ObjectRecolor`); 0 =
            the random camera as before.
        randomized_lens: probability in [0, 1] of a random lens geometry in the random camera
            (radial distortion, and at half of it a zoom-in crop;
            :func:`datasets.randomize.build_camera_randomizer`); 0 = the random camera as before.
        val_size: use at most this many validation pairs.
        max_items: use at most this many frames per domain.
        seed: the run's seed: the training order and every item's random draws are keyed by
            (seed, epoch, position), so a run resumed mid-epoch sees the same data
            (:class:`datasets.sampling.KeyedRandomSampler`).
    """

    def __init__(
        self,
        root: str | None = None,
        *,
        name: str = "folders",
        real_dir: str | None = None,
        sim_dir: str | None = None,
        synth: dict[str, Any] | None = None,
        camera_yaml: str | None = "auto",
        correct_real: bool = True,
        load_size: int | None = None,
        crop_size: int | None = None,
        flip: bool = True,
        batch_size: int = 1,
        num_workers: int = 0,
        cache: bool = True,
        on_error: Literal["skip", "raise"] = "skip",
        steps_per_epoch: int | None = None,
        val_dir: str | None = None,
        val_size: int | None = None,
        paired_dir: str | None = None,
        randomized_pairs: bool = False,
        randomized_pairs_per_item: int = 1,
        randomized_surfaces: float = 0.0,
        randomized_objects: float = 0.0,
        randomized_lens: float = 0.0,
        max_items: int | None = None,
        seed: int = 0,
    ) -> None:
        super().__init__()
        _check_data_settings(load_size=load_size, crop_size=crop_size, batch_size=batch_size,
                             num_workers=num_workers, steps_per_epoch=steps_per_epoch,
                             val_size=val_size, max_items=max_items,
                             randomized_pairs_per_item=randomized_pairs_per_item,
                             randomized_surfaces=randomized_surfaces,
                             randomized_objects=randomized_objects,
                             randomized_lens=randomized_lens)
        self.seed = int(seed)
        self.root = Path(root) if root else None
        self.name = name
        self.real_dir, self.sim_dir = real_dir, sim_dir
        self.synth = dict(synth) if synth else None
        self.camera_yaml = camera_yaml
        self.correct_real = correct_real
        self.load_size, self.crop_size, self.flip = load_size, crop_size, flip
        self.batch_size = batch_size
        self.num_workers = num_workers
        self.cache = cache
        self.on_error = on_error
        self.steps_per_epoch = steps_per_epoch
        self.val_dir = val_dir
        self.val_size = val_size
        if paired_dir and randomized_pairs:
            raise ValueError("data.paired_dir and data.randomized_pairs=true both supply the paired "
                             "frames: set one (data.paired_dir=null or data.randomized_pairs=false)")
        self.paired_dir = paired_dir
        self.randomized_pairs = bool(randomized_pairs)
        self.randomized_pairs_per_item = int(randomized_pairs_per_item)
        self.randomized_surfaces = float(randomized_surfaces)
        self.randomized_objects = float(randomized_objects)
        self.randomized_lens = float(randomized_lens)
        self.max_items = max_items
        self.train_set: UnpairedImageDataset | None = None
        self.train_pairs: PairedValDataset | None = None
        self.val_set: PairedValDataset | None = None
        self.correction: CameraCorrection | None = None

    def prepare_data(self) -> None:
        """Generate the synthetic world on first use (rank 0 only)."""
        if self.synth is not None:
            from datasets.jetbot_synth.generate import ensure_dataset

            if self.root is None:
                raise ValueError("data.root must be set when data.synth is given")
            ensure_dataset(self.root, **self.synth)

    def camera_path(self) -> Path | None:
        """The camera.yaml used for lens correction (``auto``: ``root/camera.yaml``), or None."""
        if not self.correct_real:
            return None
        near = [self.root / "camera.yaml"] if self.root is not None else []
        return resolve_camera_setting(self.camera_yaml, near, what="data.camera_yaml")

    def setup(self, stage: str | None = None) -> None:
        """Build the datasets (decodes and lens-corrects the frames once when ``cache``)."""
        cam = self.camera_path()
        self.correction = CameraCorrection.from_rig(load_camera_yaml(cam)) if cam else None
        if self.correction is not None and getattr(self.correction, "is_identity", False):
            self.correction = None
        if self.train_set is None and stage in (None, "fit"):
            real_dir, sim_dir = resolve_unpaired_folders(
                self.root, real_dir=self.real_dir, sim_dir=self.sim_dir
            )
            self.train_set = UnpairedImageDataset(
                real_dir,
                sim_dir,
                correction=self.correction,
                transform=build_transform(
                    load_size=self.load_size, crop_size=self.crop_size, flip=self.flip, train=True
                ),
                cache=self.cache,
                on_error=self.on_error,
                max_items=self.max_items,
            )
            if self.load_size is None and self.crop_size is None:
                _check_same_size(self.train_set)
            if self.paired_dir:
                self.train_pairs = PairedValDataset(self.paired_dir, self.correction, need_actions=False)
            if self.train_set.skipped:
                log.warning("%d undecodable image(s) skipped, e.g. %s",
                            len(self.train_set.skipped), self.train_set.skipped[0])
        if self.val_dir and self.val_set is None and stage in (None, "fit", "validate"):
            self.val_set = PairedValDataset(self.val_dir, self.correction)
            if self.val_size is not None and self.val_size < len(self.val_set):
                self.val_set = torch.utils.data.Subset(self.val_set, range(self.val_size))  # type: ignore[assignment]

    def colour_means(self) -> dict[str, torch.Tensor]:
        """Per-channel means of the real and of the sim training frames
        (:meth:`datasets.unpaired.UnpairedImageDataset.channel_means`), for ``model.colour_match``.

        Returns:
            ``{"real": (3,), "sim": (3,)}`` in [-1, 1].
        """
        if self.train_set is None:
            self.setup("fit")
        assert self.train_set is not None
        return {d: self.train_set.channel_means(d) for d in ("real", "sim")}

    def train_dataloader(self) -> DataLoader[dict[str, torch.Tensor]]:
        assert self.train_set is not None, "call setup('fit') first"
        dataset: Dataset[dict[str, torch.Tensor]] = self.train_set
        if self.train_pairs is not None:
            dataset = WithPairs(self.train_set, self.train_pairs)
        elif self.randomized_pairs:
            from datasets.randomize import WithRandomizedPairs

            dataset = WithRandomizedPairs(self.train_set, flip=self.flip,
                                          per_item=self.randomized_pairs_per_item,
                                          surfaces=self.randomized_surfaces,
                                          objects=self.randomized_objects,
                                          lens=self.randomized_lens)
        trainer = getattr(self, "trainer", None)
        world = int(getattr(trainer, "world_size", 1) or 1)
        rank = int(getattr(trainer, "global_rank", 0) or 0)
        if self.steps_per_epoch:
            # iterations per epoch on every rank: under DDP the epoch holds world_size × as many items
            dataset = Resized(dataset, self.steps_per_epoch * self.batch_size * world)
        sampler = KeyedRandomSampler(len(dataset), seed=self.seed, batch_size=self.batch_size,  # type: ignore[arg-type]
                                     progress=self._progress if trainer is not None else None,
                                     rank=rank, world=world)
        return DataLoader(
            dataset,
            batch_size=self.batch_size,
            sampler=sampler,
            num_workers=self.num_workers,
            drop_last=True,
            persistent_workers=self.num_workers > 0,
            # page-locked batches: Lightning's non_blocking copy to the GPU is then asynchronous
            pin_memory=_on_cuda(trainer),
        )

    def _progress(self) -> int:
        """Batches trained so far (the global step: one batch per iteration); restored on resume."""
        return int(self.trainer.global_step)  # type: ignore[union-attr]

    def val_dataloader(self) -> DataLoader[dict[str, Any]] | list[Any]:
        if self.val_set is None:
            return []
        return DataLoader(self.val_set, batch_size=64, shuffle=False, num_workers=0)
