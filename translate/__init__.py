"""sim2real translate: the installed package, in three layers by how heavy their dependencies are.

- :data:`CORE` (numpy, pillow, pyyaml): the data formats and contracts — image I/O, recording
  sessions, paired folders, the camera model, its calibration and the lens correction, the
  PolicySpec and its preprocessing, the policy self-check, the metrics, the exported graphs' format.
- :data:`ROBOT` (adds onnxruntime): what runs on the robot — the translator runtime, the robot
  loop, frame and action sources.
- :data:`TOOLS` (torch, onnx; a workstation): the ONNX export, the translator + policy fusion, the
  differentiable policy, the evaluation (translators, sets, stages, accumulators, the
  ``metrics.json`` schema, the core loop) and its report.

The base install (``pip install .``) is CORE + ROBOT; a layer imports nothing from a later one at
import time (``tests/test_install.py`` holds both true).
"""

__version__ = "0.1.0"

#: Modules of the numpy core (numpy, pillow, pyyaml).
CORE = ("fsutil", "imageio", "recording", "pairs", "camera", "calibrate", "policy", "policy_check",
        "metrics", "export_format")
#: Modules of the robot layer (adds onnxruntime).
ROBOT = ("runtime", "pipeline", "sources", "teleop")
#: Modules of the tools (torch, onnx).
TOOLS = ("export", "fusion", "torch_policy", "eval_translators", "eval_sets", "eval_stages",
         "eval_schema", "eval_accumulators", "evaluate", "report")
