"""Save the generator-step gradients of a translator's first Lightning iteration (DDP or 1 process).

Run by tests/test_ddp_gradients.py: ``python ddp_first_step_grads.py MODEL ddp|single OUT_PREFIX``.
The DDP run uses 2 CPU processes (gloo) × batch 1, the single run 1 process × batch 2, on the
same two fixed items; each rank writes ``OUT_PREFIX_<mode>_<rank>.pt`` (parameter name → grad).
"""

from __future__ import annotations

import sys
from pathlib import Path

import lightning as L
import torch
from torch.utils.data import DataLoader, Dataset

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from models.cut.module import CUTModule  # noqa: E402
from models.cyclegan.module import CycleGANModule  # noqa: E402

# oneDNN's float32 weight gradients at batch 1 differ from batch 2 by ~1e-2 on some CPUs
torch.backends.mkldnn.enabled = False


class TwoItems(Dataset[dict[str, torch.Tensor]]):
    """Two fixed real/sim pairs of 32×32 noise."""

    def __len__(self) -> int:
        return 2

    def __getitem__(self, i: int) -> dict[str, torch.Tensor]:
        g = torch.Generator().manual_seed(i)
        return {"real": torch.rand(3, 32, 32, generator=g) * 2 - 1,
                "sim": torch.rand(3, 32, 32, generator=g) * 2 - 1}


class SaveGrads(L.Callback):
    """Save every gradient at the first step of the generator optimiser (the one Lightning steps)."""

    def __init__(self, prefix: str) -> None:
        self.prefix = prefix
        self.done = False

    def on_before_optimizer_step(self, trainer: L.Trainer, pl_module: L.LightningModule, optimizer: object) -> None:
        if not self.done:
            self.done = True
            grads = {n: p.grad.detach().clone() for n, p in pl_module.named_parameters() if p.grad is not None}
            torch.save(grads, f"{self.prefix}_{trainer.global_rank}.pt")


def main() -> None:
    model, mode, prefix = sys.argv[1], sys.argv[2], sys.argv[3]
    torch.manual_seed(0)
    kw = {"generator": {"ngf": 4, "n_blocks": 1}, "discriminator": {"ndf": 4}}
    # every PatchNCE position (the widest map is 38×38) so that no patch draw differs between runs
    module = (CUTModule(num_patches=2048, **kw) if model == "cut"
              else CycleGANModule(pool_size=0, **kw))
    common = {"max_steps": 1, "logger": False, "enable_checkpointing": False,
              "enable_progress_bar": False, "enable_model_summary": False,
              "callbacks": [SaveGrads(f"{prefix}_{mode}")]}
    if mode == "ddp":
        strategy = L.pytorch.strategies.DDPStrategy(find_unused_parameters=True,
                                                    process_group_backend="gloo")
        trainer = L.Trainer(accelerator="cpu", devices=2, strategy=strategy, **common)
        trainer.fit(module, DataLoader(TwoItems(), batch_size=1))
    else:
        trainer = L.Trainer(accelerator="cpu", devices=1, **common)
        trainer.fit(module, DataLoader(TwoItems(), batch_size=2))


if __name__ == "__main__":
    main()
