"""qvl-vla-flow: a flow-matching action expert on frozen Qwen-VL features (Miniworld mouse/keyboard recordings)."""
