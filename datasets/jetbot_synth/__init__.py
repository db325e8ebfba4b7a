"""jetbot_synth: the embedded synthetic Jetbot-and-Kong world (paired SIM/REAL renders, expert)."""

from __future__ import annotations

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
