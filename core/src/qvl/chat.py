"""Chat-format batches for Qwen-VL: prompt-masked SFT batches, generation prompts, decoding.

Shared by every task that trains the language-model head on answers (grasp, vqa, the built-in
``colors`` demo): the loss covers the assistant turns only, never the prompt or the image tokens.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

IGNORE_INDEX = -100
Conversation = list[dict[str, Any]]


def vision_inputs(processor: Any, conversations: Sequence[Conversation]) -> tuple[Any, Any, dict]:
    """Images, videos and video kwargs of the conversations, fetched and resized by ``qwen_vl_utils``.

    Videos come back with their metadata (fps, frame indices), which the processor needs for
    Qwen3-VL's timestamps and Qwen2.5-VL's temporal position ids. A video given as a list of frames
    (PIL images) says when they were taken with ``"raw_fps"`` (the recording's frame
    rate), ``"frames_indices"`` (each frame's number in the recording) and optionally
    ``"total_num_frames"``: ``qwen_vl_utils`` alone would number them 0, 1, 2... as if no frame had
    been skipped, and Qwen3-VL's timestamps would be wrong for any subsampled clip. A video given as
    one ``T x H x W x 3`` uint8 array is frames as the model sees them (what
    :func:`qvl.data.frame_lists.shown_frames` made of a list), used without resizing.
    """
    patch_size = int(getattr(processor.image_processor, "patch_size", 14))
    conversations = [_with_decoded_videos(conversation) for conversation in conversations]
    try:
        images, videos, video_kwargs = _process_vision_info(list(conversations), patch_size)
    except Exception as exc:
        culprit = _unreadable_media(conversations)
        if culprit is None:
            raise
        raise culprit from exc
    kwargs: dict[str, Any] = {}
    if videos is not None:
        videos, metadata = zip(*videos)
        videos = list(videos)
        metadata = [_with_frame_numbers(m, part, len(v)) for m, part, v in zip(metadata, _video_parts(conversations), videos)]
        kwargs = {**video_kwargs, "video_metadata": metadata, "do_resize": False}
    return images, videos, kwargs


def _process_vision_info(conversations: list[Conversation], patch_size: int) -> tuple[Any, Any, dict]:
    """``qwen_vl_utils.process_vision_info(..., return_video_kwargs=True, return_video_metadata=True)``, part
    for part, except that a video given as one uint8 array is taken as the frames the model sees
    (:mod:`qvl.data.frame_lists`: what a frame list became, kept by the task, without resizing it again)."""
    from qwen_vl_utils.vision_process import extract_vision_info, fetch_image, fetch_video

    from qvl.data.frame_lists import array_video

    images, videos = [], []
    for part in extract_vision_info(conversations):
        if "image" in part or "image_url" in part:
            images.append(fetch_image(part, image_patch_size=patch_size))
        elif "video" in part:
            videos.append(array_video(part)
                          or fetch_video(_pil_frames(part), image_patch_size=patch_size, return_video_metadata=True))
        else:
            raise ValueError("a vision part needs an image, image_url or video")
    return images or None, videos or None, {"do_sample_frames": False}


def _pil_frames(part: dict[str, Any]) -> dict[str, Any]:
    """A frame list's uint8 arrays as PIL images, which qwen-vl-utils reads."""
    frames = part.get("video")
    if not isinstance(frames, (list, tuple)) or not any(hasattr(frame, "__array_interface__") and
                                                        not hasattr(frame, "mode") for frame in frames):
        return part
    from PIL import Image

    return {**part, "video": [frame if hasattr(frame, "mode") else Image.fromarray(frame) for frame in frames]}


def _with_decoded_videos(conversation: Conversation) -> Conversation:
    """Video parts naming a local file, as frame lists sampled with PyAV (:mod:`qvl.data.video_frames`:
    qwen-vl-utils' own readers are not dependencies), at the part's ``fps`` (2) up to its ``max_frames``."""
    from qvl.data.video_frames import sample_frames

    changed = []
    for message in conversation:
        content = message.get("content")
        if not isinstance(content, list) or not any(_is_video_file(part) for part in content):
            changed.append(message)
            continue
        parts = []
        for part in content:
            if _is_video_file(part):
                sampled = sample_frames(part["video"].removeprefix("file://"), float(part.get("fps", 2.0)),
                                        int(part.get("max_frames", 768)))
                part = {key: value for key, value in part.items() if key not in ("fps", "max_frames")}
                part.update(video=sampled.frames, raw_fps=sampled.native_fps, frames_indices=sampled.indices,
                            total_num_frames=sampled.total,
                            sample_fps=len(sampled.indices) * sampled.native_fps / max(1, sampled.total))
            parts.append(part)
        changed.append({**message, "content": parts})
    return changed


def _is_video_file(part: Any) -> bool:
    source = part.get("video") if isinstance(part, dict) else None
    return isinstance(source, str) and not source.startswith(("http://", "https://", "data:"))


def _video_parts(conversations: Sequence[Conversation]) -> list[dict[str, Any]]:
    """The video parts of the conversations, in the order ``process_vision_info`` returns them."""
    return [part for conversation in conversations for message in conversation
            for part in (message.get("content") if isinstance(message.get("content"), list) else [])
            if isinstance(part, dict) and ("video" in part or part.get("type") == "video")]


def _with_frame_numbers(metadata: Any, part: dict[str, Any], frames: int) -> Any:
    indices = part.get("frames_indices")
    video = part.get("video")
    if indices is None or not (isinstance(video, (list, tuple)) or getattr(video, "ndim", 0) == 4):
        return metadata
    indices = [int(i) for i in indices]
    if len(indices) != len(part["video"]):
        raise ValueError(f"a video of {len(part['video'])} frames with {len(indices)} frames_indices")
    indices += [indices[-1]] * (frames - len(indices))  # qwen_vl_utils repeats the last frame to an even count
    metadata = dict(metadata)
    metadata["frames_indices"] = indices
    metadata["total_num_frames"] = int(part.get("total_num_frames", max(indices) + 1))
    if part.get("raw_fps"):
        metadata["fps"] = float(part["raw_fps"])
    return metadata


def _unreadable_media(conversations: Sequence[Conversation]) -> Exception | None:
    """After qwen_vl_utils failed: the :class:`~qvl.errors.UserError` naming the file that cannot be
    read, or None when every referenced file opens (the failure was not the user's file)."""
    from PIL import Image

    from qvl.errors import UserError, unreadable_file

    for conversation in conversations:
        for message in conversation:
            content = message.get("content")
            for part in content if isinstance(content, list) else []:
                for kind in ("image", "video"):
                    source = part.get(kind) if isinstance(part, dict) else None
                    if not isinstance(source, str) or source.startswith(("http://", "https://", "data:")):
                        continue
                    path = source.removeprefix("file://")
                    try:
                        if kind == "image":
                            with Image.open(path) as image:
                                image.load()
                        else:
                            import av

                            with av.open(path) as container:
                                next(container.decode(video=0))
                    except FileNotFoundError:
                        return UserError(f"{path}: no such {kind} file")
                    except Exception as exc:  # PIL, PyAV: any failure to decode is the file's
                        return unreadable_file(path, kind, exc)
    return None


def _encode(processor: Any, texts: list[str], conversations: Sequence[Conversation], padding_side: str) -> Any:
    images, videos, video_kwargs = vision_inputs(processor, conversations)
    tokenizer = processor.tokenizer
    previous = tokenizer.padding_side
    tokenizer.padding_side = padding_side
    try:
        kwargs: dict[str, Any] = dict(text=texts, images=images, padding=True, return_tensors="pt")
        if videos is not None:
            kwargs.update(videos=videos, **video_kwargs)
        return processor(**kwargs)
    finally:
        tokenizer.padding_side = previous


def assistant_labels(input_ids: Any, tokenizer: Any) -> Any:
    """Labels that keep only assistant-turn tokens (their text and closing ``<|im_end|>``)."""
    import torch

    marker = tokenizer.encode("<|im_start|>assistant\n", add_special_tokens=False)
    end_id = tokenizer.convert_tokens_to_ids("<|im_end|>")
    labels = torch.full_like(input_ids, IGNORE_INDEX)
    width = len(marker)
    marker_t = torch.tensor(marker, dtype=input_ids.dtype)
    for row, ids in enumerate(input_ids):
        windows = ids.unfold(0, width, 1) if ids.numel() >= width else ids.new_empty((0, width))
        starts = (windows == marker_t).all(dim=1).nonzero().flatten().tolist()
        for start in starts:
            first = start + width
            ends = (ids[first:] == end_id).nonzero().flatten()
            last = first + int(ends[0]) if ends.numel() else ids.numel() - 1
            labels[row, first : last + 1] = ids[first : last + 1]
    return labels


def sft_batch(processor: Any, conversations: Sequence[Conversation], padding_side: str = "right") -> dict[str, Any]:
    """Masked-answer SFT: whole conversations tokenized, ``labels`` = -100 on every prompt, image and
    padding token, so the loss covers the assistant turns (their text and ``<|im_end|>``) only."""
    texts = [processor.apply_chat_template(conv, tokenize=False) for conv in conversations]
    encoded = _encode(processor, texts, conversations, padding_side=padding_side)
    batch = dict(encoded)
    labels = assistant_labels(batch["input_ids"], processor.tokenizer)
    labels[batch["attention_mask"] == 0] = IGNORE_INDEX
    if (labels != IGNORE_INDEX).sum() == 0:
        raise ValueError("no assistant turn in the batch: every SFT conversation needs an assistant answer")
    batch["labels"] = labels
    return batch


def prompt_batch(processor: Any, conversations: Sequence[Conversation], padding_side: str = "left") -> dict[str, Any]:
    """Tokenize prompts for generation, ending with the assistant header (left padding, so that every
    row's new tokens start at the same position)."""
    texts = [
        processor.apply_chat_template(conv, tokenize=False, add_generation_prompt=True) for conv in conversations
    ]
    return dict(_encode(processor, texts, conversations, padding_side=padding_side))


def conversation_batch(processor: Any, conversations: Sequence[Conversation], padding_side: str = "right",
                       add_generation_prompt: bool = False) -> dict[str, Any]:
    """Tokenize whole conversations as they are (no labels), for heads that pool hidden states."""
    texts = [processor.apply_chat_template(conv, tokenize=False, add_generation_prompt=add_generation_prompt)
             for conv in conversations]
    return dict(_encode(processor, texts, conversations, padding_side=padding_side))


def lm_loss(model: Any, batch: dict[str, Any], *, padding_free: bool | str = False) -> dict[str, Any]:
    """Mean cross-entropy of the labelled tokens, the same number as the model's own loss.

    Only the positions that predict a labelled token go through the LM head (``logits_to_keep``):
    with Qwen's 151,936-token vocabulary, the full logits of a batch are hundreds of MB and most
    of a small model's step time, while SFT labels cover a few answer tokens.
    ``padding_free`` (``True``, ``False`` or ``"auto"``, as the ``train.padding_free`` setting): the rows
    run packed into one, without their padding (:mod:`qvl.padding_free`; the same loss, to float rounding).
    """
    import torch.nn.functional as F

    batch = _maybe_padding_free(model, batch, padding_free)
    labels = batch["labels"]
    targets = labels[:, 1:]
    positions = (targets != IGNORE_INDEX).any(dim=0).nonzero().flatten()
    inputs = {key: value for key, value in batch.items() if key != "labels"}
    logits = model(**inputs, logits_to_keep=positions).logits
    loss = F.cross_entropy(logits.float().reshape(-1, logits.shape[-1]), targets[:, positions].reshape(-1),
                           ignore_index=IGNORE_INDEX)
    return {"loss": loss}


def _maybe_padding_free(model: Any, batch: dict[str, Any], setting: bool | str) -> dict[str, Any]:
    if not setting:
        return batch
    from qvl.padding_free import padding_free_batch, use_padding_free

    return padding_free_batch(model, batch) if use_padding_free(model, setting) else batch


def single_token_ids(tokenizer: Any, texts: Sequence[str]) -> list[int]:
    """The id of each text, which must be one token (special tokens by name, e.g. ``<|im_end|>``)."""
    ids = []
    for text in texts:
        encoded = tokenizer.encode(text, add_special_tokens=False)
        if len(encoded) != 1:
            raise ValueError(f"the tokenizer splits {text!r} into {len(encoded)} tokens; expected one")
        ids.append(encoded[0])
    return ids


def language_model_parts(model: Any) -> tuple[Any, Any]:
    """The multimodal trunk (ending in the final norm) and the LM head, through a peft wrapper."""
    base = model.get_base_model() if hasattr(model, "get_base_model") else model
    return base.model, base.get_output_embeddings()


_language_model_parts = language_model_parts  # the name plugins imported before it was public


def answer_vocabulary_loss(model: Any, batch: dict[str, Any], token_ids: Sequence[int], *,
                           padding_free: bool | str = False) -> dict[str, Any]:
    """Cross-entropy of the labelled tokens over ``token_ids`` only: the tokens an answer's grammar
    can emit (digits, ``<|im_end|>``...).

    When decoding is constrained to those tokens, which of them wins is all that matters; the full
    softmax would spend the step pushing down ~150,000 tokens the grammar never allows, and with a
    frozen (tied) token embedding it learns far slower. Only the LM head's rows of ``token_ids`` are
    computed, which also skips most of a small model's LM-head cost. Every label must be one of
    ``token_ids`` (a label outside them is left out of the loss). ``padding_free`` as in :func:`lm_loss`.
    """
    batch = _maybe_padding_free(model, batch, padding_free)
    inputs = {key: value for key, value in batch.items() if key != "labels"}
    trunk, _ = language_model_parts(model)
    hidden = trunk(**inputs).last_hidden_state
    return {"loss": vocabulary_cross_entropy(model, hidden, batch["labels"], token_ids)}


def vocabulary_cross_entropy(model: Any, hidden: Any, labels: Any, token_ids: Sequence[int]) -> Any:
    """The loss of :func:`answer_vocabulary_loss` from final hidden states ``[B, S, D]`` already
    computed (a task that also reads other layers of the same forward)."""
    import torch
    import torch.nn.functional as F

    _, head = language_model_parts(model)
    targets = labels[:, 1:]
    positions = (targets != IGNORE_INDEX).any(dim=0).nonzero().flatten()
    hidden = hidden[:, positions]
    allowed = torch.tensor(list(token_ids), device=labels.device)
    weight = head.weight[allowed]
    logits = hidden.to(weight.dtype) @ weight.T
    if getattr(head, "bias", None) is not None:
        logits = logits + head.bias[allowed]
    wanted = targets[:, positions]
    # vocabulary ids -> their index among the allowed ones; anything else is ignored
    top = int(allowed.max())
    lookup = torch.full((top + 1,), IGNORE_INDEX, dtype=torch.long, device=labels.device)
    lookup[allowed] = torch.arange(len(allowed), device=labels.device)
    mapped = torch.where((wanted >= 0) & (wanted <= top), lookup[wanted.clamp(0, top)],
                         torch.full_like(wanted, IGNORE_INDEX))
    return F.cross_entropy(logits.float().reshape(-1, len(allowed)), mapped.reshape(-1), ignore_index=IGNORE_INDEX)


def generate_text(
    model: Any, processor: Any, batch: dict[str, Any], max_new_tokens: int, *, skip_special_tokens: bool = True,
    **generate_kwargs: Any
) -> list[str]:
    """Greedy generation from a :func:`prompt_batch`; returns the new text of each row.

    ``skip_special_tokens=False`` keeps ``<|im_end|>`` and the padding, to tell an answer that
    ended from one cut by ``max_new_tokens``.
    """
    generate_kwargs.setdefault("do_sample", False)
    output = model.generate(**batch, max_new_tokens=max_new_tokens, **generate_kwargs)
    new_tokens = output[:, batch["input_ids"].shape[1] :]
    return processor.tokenizer.batch_decode(new_tokens, skip_special_tokens=skip_special_tokens)
