"""The built-in task ``sft``: supervised fine-tuning on your own image/video conversations.

Reads the files LLaMA-Factory, ShareGPT tools and OpenAI-style pipelines write
(:mod:`qvl.data.conversations`), trains on every assistant turn (masked SFT), and scores the last
answer of each held-out conversation by exact match against a majority-answer baseline. Registered
as ``qvl.sft`` exactly like a third-party plugin (see ``qvl.plugins.DEFAULT_PLUGINS``).
"""
