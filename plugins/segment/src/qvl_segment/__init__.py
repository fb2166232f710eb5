"""qvl-segment: temporal action segmentation of robot episodes on Qwen-VL (task ``segment``)."""
