"""qvl-vqa: static VQA data sets from robot trajectories and answer-only SFT of Qwen-VL on them."""
