"""sim2real translate: the robot-facing base layer (image I/O, camera model, policy, metrics, export, runtime)."""

__version__ = "0.1.0"
