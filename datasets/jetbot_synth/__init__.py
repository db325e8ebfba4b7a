"""jetbot_synth: the embedded synthetic Jetbot-and-Kong world (paired SIM/REAL renders, expert)."""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from datasets.jetbot_synth.generate import (
        ensure_dataset,
        generate_dataset,
        make_contact_sheet,
        render_arrays,
    )
    from datasets.jetbot_synth.render import DOMAINS, Domain, Renderer, jpeg_roundtrip
    from datasets.jetbot_synth.world import (
        Distractor,
        RealStyle,
        SceneState,
        WorldConfig,
        expert_action,
        expert_actions,
        kong_in_view,
        make_rig,
        sample_states,
        turn_direction,
    )

__all__ = [
    "DOMAINS",
    "Distractor",
    "Domain",
    "RealStyle",
    "Renderer",
    "SceneState",
    "WorldConfig",
    "ensure_dataset",
    "expert_action",
    "expert_actions",
    "generate_dataset",
    "jpeg_roundtrip",
    "kong_in_view",
    "make_contact_sheet",
    "make_rig",
    "render_arrays",
    "sample_states",
    "turn_direction",
]

# Attributes load their module on first use, so ``python -m datasets.jetbot_synth --help`` and
# argument errors answer without importing torch (seconds on a busy 2-core machine).
_HOME = {
    **dict.fromkeys(("ensure_dataset", "generate_dataset", "make_contact_sheet",
                     "render_arrays"), "generate"),
    **dict.fromkeys(("DOMAINS", "Domain", "Renderer", "jpeg_roundtrip"), "render"),
}


def __getattr__(name: str) -> Any:
    if name not in __all__:
        raise AttributeError(f"module 'datasets.jetbot_synth' has no attribute {name!r}")
    module = importlib.import_module(f"datasets.jetbot_synth.{_HOME.get(name, 'world')}")
    return getattr(module, name)
