"""qvl-grasp: grasp rectangles from Qwen-VL as five constrained integers (``qvl run grasp STAGE``)."""

__version__ = "0.1.0"
