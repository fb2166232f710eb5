"""qvl-reward: a multi-camera reward classifier on LeRobot datasets (``qvl run reward STAGE``)."""

__version__ = "0.1.0"
