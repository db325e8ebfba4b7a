"""A training iteration of CycleGAN / CUT as few, large GPU launches: bf16, channels_last, fused Adam, CUDA graphs."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch

from models.cut.module import CUTModule
from models.cyclegan.module import CycleGANModule

__all__ = ["FastStepConfig", "TrainStep"]


@dataclass(frozen=True)
class FastStepConfig:
    """What the fast path uses; every field can be switched off to measure its effect.

    Attributes:
        bf16: autocast the forward passes to bfloat16 (the H100's matrix units; no grad scaler).
        channels_last: NHWC memory format for networks and inputs (cuDNN's fast layout).
        fused_adam: one fused kernel per optimiser step instead of per-parameter launches.
        cuda_graph: capture the iteration once and replay it (removes per-kernel launch costs,
            which bind a batch-1 GAN step).
        batched_generators: run independent generator passes as one call (CycleGAN).
        cudnn_benchmark: let cuDNN pick the fastest algorithms for the fixed shapes.
        compile: ``torch.compile`` the networks (Inductor fuses norms, activations and padding
            into fewer kernels; compiled once during the warm-up, before the graph capture).
        ddp: data-parallel over the initialised ``torch.distributed`` group: before each
            optimiser step the gradients of its networks are averaged across ranks in one flat
            all-reduce (NCCL on GPUs, captured into the CUDA graph; gloo on CPUs), as DDP does.
    """

    bf16: bool = True
    channels_last: bool = True
    fused_adam: bool = True
    cuda_graph: bool = True
    batched_generators: bool = True
    cudnn_benchmark: bool = True
    compile: bool = False
    ddp: bool = False

    @classmethod
    def plain(cls) -> FastStepConfig:
        """A plain fp32 eager step, as the official code runs (the baseline)."""
        return cls(False, False, False, False, False, False, False, False)


class TrainStep:
    """One full training iteration (all updates, official order) of a translator module.

    The module keeps its maths; this class owns the optimisers and, with ``cuda_graph``, static
    input buffers and captured graphs: CycleGAN as two graphs (generators; discriminators) with
    the image pool queried on the host in between, CUT as one graph (D then G and F), with the
    PatchNCE positions drawn on the CPU each iteration and copied into static buffers, and FastCUT's
    flip-equivariance as two graphs (flipped or not) chosen per iteration.

    Args:
        module: a :class:`CycleGANModule` or :class:`CUTModule` (moved to ``device``).
        batch_size, image_size: the fixed shapes (graphs are shape-specific).
        config: see :class:`FastStepConfig`.
        device: a CUDA device for graphs; CPU works for the eager variants.
        warmup: eager iterations before capture (cuDNN autotuning, optimiser state creation).

    Example:
        >>> step = TrainStep(CUTModule(), batch_size=1, image_size=256)  # doctest: +SKIP
        >>> losses = step(real, sim)  # dict of scalar tensors (device), no host sync
    """

    def __init__(
        self,
        module: CycleGANModule | CUTModule,
        *,
        batch_size: int,
        image_size: int,
        config: FastStepConfig = FastStepConfig(),
        device: str | torch.device = "cuda",
        warmup: int = 3,
    ) -> None:
        self.m = module
        self.cfg = config
        self.device = torch.device(device)
        self.is_cut = isinstance(module, CUTModule)
        if isinstance(module, CycleGANModule):
            module.batched_generators = config.batched_generators
        if self.device.type == "cuda":
            torch.backends.cudnn.benchmark = config.cudnn_benchmark
        fmt = torch.channels_last if config.channels_last else torch.contiguous_format
        self.fmt = fmt
        module.to(self.device, memory_format=fmt)
        module.train()
        if config.compile:
            nets = ([module.netG, module.netD] if isinstance(module, CUTModule)
                    else [module.netG_A, module.netG_B, module.netD_A, module.netD_B])
            for net in nets:
                net.compile(dynamic=False)  # in place: parameter names and state_dict unchanged
        use_graph = config.cuda_graph and self.device.type == "cuda"
        self.use_graph = use_graph
        self.world_size = 1
        if config.ddp:
            import torch.distributed as dist

            if not dist.is_initialized():
                raise RuntimeError("FastStepConfig(ddp=True) needs torch.distributed initialised "
                                   "(run under torchrun and call init_process_group first)")
            self.world_size = dist.get_world_size()
            # the same initial weights on every rank, as DDP's constructor broadcasts them
            with torch.no_grad():
                for t in [*module.parameters(), *module.buffers()]:
                    dist.broadcast(t.data, src=0)

        def adam(params: Any) -> torch.optim.Adam:
            kw: dict[str, Any] = {"lr": module.lr, "betas": module.betas}
            if config.fused_adam and self.device.type == "cuda":
                kw["fused"] = True
            if use_graph:
                kw["capturable"] = True
            return torch.optim.Adam(list(params), **kw)

        if self.is_cut:
            assert isinstance(module, CUTModule)
            self.opts = [adam(module.netG.parameters()), adam(module.netD.parameters()),
                         adam(module.netF.parameters())]
        else:
            assert isinstance(module, CycleGANModule)
            self.opts = [adam(list(module.netG_A.parameters()) + list(module.netG_B.parameters())),
                         adam(list(module.netD_A.parameters()) + list(module.netD_B.parameters()))]
        shape = (batch_size, 3, image_size, image_size)
        self.real_A = torch.zeros(shape, device=self.device).contiguous(memory_format=fmt)
        self.real_B = torch.zeros_like(self.real_A)
        self.patch_ids_sets: list[list[torch.Tensor]] = []
        self._patch_sizes: list[int] = []
        if self.is_cut:
            assert isinstance(module, CUTModule)
            with torch.no_grad():
                feats = module.netG(torch.zeros(1, 3, image_size, image_size, device=self.device),
                                    layers=module.nce_layers, encode_only=True)
            self._patch_sizes = [int(f.shape[2] * f.shape[3]) for f in feats]
            # one set of positions per PatchNCE call (real→fake, and sim→identity), drawn in the
            # module's order from its patch generator, so eager results equal the module's
            n_sets = 2 if module.nce_idt else 1
            self.patch_ids_sets = [
                [torch.zeros(min(module.num_patches, n), dtype=torch.long, device=self.device)
                 for n in self._patch_sizes] for _ in range(n_sets)
            ]
        self._graphs: dict[Any, torch.cuda.CUDAGraph] = {}
        self._outs: dict[Any, dict[str, torch.Tensor]] = {}
        # CycleGAN: fakes from the G graph, pooled copies for the D graph
        self._fakes: dict[str, torch.Tensor] = {}
        self.pooled_A = torch.zeros_like(self.real_A)
        self.pooled_B = torch.zeros_like(self.real_A)
        g = torch.Generator().manual_seed(0)
        for _ in range(warmup):
            self.real_A.copy_(torch.rand(shape, generator=g) * 2 - 1)
            self.real_B.copy_(torch.rand(shape, generator=g) * 2 - 1)
            self._eager_iteration(flipped=False)
        if use_graph:
            self._capture()

    # -- the maths, in the official order ---------------------------------------------------------
    def _autocast(self) -> Any:
        return torch.autocast(self.device.type, dtype=torch.bfloat16, enabled=self.cfg.bf16,
                              cache_enabled=False)

    def _sync_grads(self, *opt_indices: int) -> None:
        """Average the gradients of these optimisers' parameters across ranks (one all-reduce)."""
        if self.world_size == 1:
            return
        import torch.distributed as dist
        from torch._utils import _flatten_dense_tensors, _unflatten_dense_tensors

        grads = [p.grad for i in opt_indices for group in self.opts[i].param_groups
                 for p in group["params"] if p.grad is not None]
        if not grads:
            return
        flat = _flatten_dense_tensors(grads)
        dist.all_reduce(flat)
        flat.div_(self.world_size)
        for g, avg in zip(grads, _unflatten_dense_tensors(flat, grads), strict=True):
            g.copy_(avg)

    def _zero(self) -> None:
        for o in self.opts:
            o.zero_grad(set_to_none=True)

    def _cut_iteration(self, flipped: bool) -> dict[str, torch.Tensor]:
        m = self.m
        assert isinstance(m, CUTModule)
        n = self.real_A.shape[0]
        opt_G, opt_D, opt_F = self.opts
        with self._autocast():
            real = torch.cat([self.real_A, self.real_B]) if m.nce_idt else self.real_A
            if flipped:
                real = torch.flip(real, [3])
            fake = m.netG(real)
            fake_B = fake[:n]
            idt_B = fake[n:] if m.nce_idt else None
            m.set_requires_grad([m.netD], True)
            d = m.discriminator_losses(self.real_B, fake_B)
        d["loss_D"].float().backward()
        self._sync_grads(1)
        opt_D.step()
        m.set_requires_grad([m.netD], False)
        with self._autocast():
            loss_gan = m.criterionGAN(m.netD(fake_B), True).mean() * m.lambda_GAN
            nce = m.nce_loss(self.real_A, fake_B, flipped, self.patch_ids_sets[0])
            total = nce
            if idt_B is not None:
                nce_y = m.nce_loss(self.real_B, idt_B, flipped, self.patch_ids_sets[1])
                total = (nce + nce_y) * 0.5
            loss_G = loss_gan + total
        loss_G.float().backward()
        self._sync_grads(0, 2)
        opt_G.step()
        opt_F.step()
        return {"loss_G": loss_G.detach(), "loss_NCE": nce.detach(), "loss_D": d["loss_D"].detach()}

    def _cyclegan_g(self) -> dict[str, torch.Tensor]:
        m = self.m
        assert isinstance(m, CycleGANModule)
        m.set_requires_grad([m.netD_A, m.netD_B], False)
        with self._autocast():
            out = m.generator_forward(self.real_A, self.real_B)
            losses = m.generator_losses(self.real_A, self.real_B, out)
        losses["loss_G"].float().backward()
        self._sync_grads(0)
        self.opts[0].step()
        self._fakes = {"A": out.fake_A.detach(), "B": out.fake_B.detach()}
        return {"loss_G": losses["loss_G"].detach()}

    def _cyclegan_d(self) -> dict[str, torch.Tensor]:
        m = self.m
        assert isinstance(m, CycleGANModule)
        m.set_requires_grad([m.netD_A, m.netD_B], True)
        with self._autocast():
            d = m.discriminator_losses(self.real_A, self.real_B, self.pooled_A, self.pooled_B)
        d["loss_D"].float().backward()
        self._sync_grads(1)
        self.opts[1].step()
        return {"loss_D": d["loss_D"].detach()}

    def _pool(self) -> None:
        m = self.m
        assert isinstance(m, CycleGANModule)
        # the pool stores copies and decides on the host; fakes come from the static outputs
        self.pooled_A.copy_(m.fake_A_pool.query(self._fakes["A"].float()))
        self.pooled_B.copy_(m.fake_B_pool.query(self._fakes["B"].float()))

    def _draw_patch_ids(self) -> None:
        m = self.m
        assert isinstance(m, CUTModule)
        for ids in self.patch_ids_sets:
            for buf, n in zip(ids, self._patch_sizes, strict=True):
                buf.copy_(torch.randperm(n, generator=m.patch_gen)[: buf.numel()])

    def _eager_iteration(self, flipped: bool) -> dict[str, torch.Tensor]:
        self._zero()
        if self.is_cut:
            self._draw_patch_ids()
            return self._cut_iteration(flipped)
        out = self._cyclegan_g()
        self._pool()
        self._zero()
        out.update(self._cyclegan_d())
        return out

    # -- capture and replay -------------------------------------------------------------------
    def _capture_one(self, key: Any, fn: Callable[[], dict[str, torch.Tensor]]) -> None:
        s = torch.cuda.Stream()
        s.wait_stream(torch.cuda.current_stream())
        with torch.cuda.stream(s):
            self._zero()
            fn()  # one more eager run on the side stream, as the CUDA-graph recipe asks
        torch.cuda.current_stream().wait_stream(s)
        self._zero()
        g = torch.cuda.CUDAGraph()
        with torch.cuda.graph(g):
            self._outs[key] = fn()
        self._graphs[key] = g

    def _capture(self) -> None:
        if self.is_cut:
            m = self.m
            assert isinstance(m, CUTModule)
            self._draw_patch_ids()
            for flipped in ([False, True] if m.flip_equivariance else [False]):
                self._capture_one(("cut", flipped), lambda f=flipped: self._cut_iteration(f))  # type: ignore[misc]
        else:
            self._capture_one("G", self._cyclegan_g)
            self._pool()
            self._capture_one("D", self._cyclegan_d)

    def __call__(self, real_A: torch.Tensor, real_B: torch.Tensor) -> dict[str, torch.Tensor]:
        """Run one iteration on a batch; returns the main losses as device scalars (no sync).

        Args:
            real_A: (N, 3, H, W) real frames in [-1, 1] (N, H, W as constructed).
            real_B: (N, 3, H, W) sim frames in [-1, 1].
        """
        self.real_A.copy_(real_A, non_blocking=True)
        self.real_B.copy_(real_B, non_blocking=True)
        flipped = False
        if self.is_cut:
            m = self.m
            assert isinstance(m, CUTModule)
            if m.flip_equivariance:
                flipped = bool(torch.rand((), generator=m.patch_gen) < 0.5)
        if not self.use_graph:
            return self._eager_iteration(flipped)
        if self.is_cut:
            self._draw_patch_ids()
            self._graphs[("cut", flipped)].replay()
            return self._outs[("cut", flipped)]
        self._graphs["G"].replay()
        self._pool()
        self._graphs["D"].replay()
        return {**self._outs["G"], **self._outs["D"]}
