"""The policy as the runner sees it: built from the config, its optimizer groups, and batch decoding."""

from __future__ import annotations

import zlib
from typing import TYPE_CHECKING, Any

import qvl

if TYPE_CHECKING:
    import torch

    from qvl.config import RunConfig

    from qvl_vla_flow.policy import VlaFlowPolicy

NORM_OR_BIAS = ("bias", "norm", "position", "queries")  # no weight decay on these (nor on embeddings)


def loss_weights(config: RunConfig) -> torch.Tensor:
    import torch

    space = config.task.action_space
    unknown = sorted(set(config.task.loss_weights) - set(space.names))
    if unknown:
        raise qvl.UserError(f"task.loss_weights names {unknown}, which are not action dimensions; "
                            f"expected some of {space.names}")
    return torch.tensor([float(config.task.loss_weights.get(name, 1.0)) for name in space.names])


def build_policy(config: RunConfig, *, feature_dim: int | None = None) -> VlaFlowPolicy:
    """The policy for this config; prints its parameter count against the frozen backbone's."""
    from qvl_vla_flow.frame_features import extractor, tokens_per_frame
    from qvl_vla_flow.policy import VlaFlowPolicy

    t = config.task
    frozen = None
    if feature_dim is None:
        backbone = extractor(config).backbone
        feature_dim = backbone.hidden_size
        frozen = sum(p.numel() for p in backbone.model.parameters())
    space = t.action_space
    policy = VlaFlowPolicy(
        feature_dim=feature_dim, tokens_per_frame=tokens_per_frame(config), num_frames=t.num_frames,
        action_dim=space.dim, state_dim=space.dim if t.state != "none" else 0, chunk_size=t.chunk_size,
        hidden_dim=t.hidden_dim, num_layers=t.num_layers, num_heads=t.num_heads, mlp_ratio=t.mlp_ratio,
        dropout=t.dropout, token_pooler=t.token_pooler, pooler_tokens=t.pooler_tokens,
        loss_weights=loss_weights(config), time_alpha=t.time_alpha, time_beta=t.time_beta)
    trainable = sum(p.numel() for p in policy.parameters() if p.requires_grad)
    if frozen is not None:
        share = trainable / (trainable + frozen)
        print(f"vla_flow policy: {trainable:,} trainable parameters; frozen backbone {frozen:,} "
              f"({share:.1%} trainable)")
    return policy


def optimizer_groups(config: RunConfig, policy: VlaFlowPolicy) -> list[dict[str, Any]]:
    """Expert at ``train.lr``, projectors at ``train.lr * task.projector_lr_scale``; no decay on
    biases, norms, positions and pooler queries."""
    from qvl_vla_flow.policy import parameter_groups

    lr = config.train.lr
    rates = {"expert": lr, "projectors": lr * config.task.projector_lr_scale}
    groups = []
    for family, named in parameter_groups(policy).items():
        decays = {n: p.dim() >= 2 and not any(key in n for key in NORM_OR_BIAS) for n, p in named}
        for suffix, decayed, weight_decay in (("", True, config.train.weight_decay), ("/no_decay", False, 0.0)):
            params = [p for n, p in named if decays[n] is decayed]
            if params:
                groups.append({"params": params, "lr": rates[family], "weight_decay": weight_decay,
                               "name": family + suffix})
    return groups


def decode_batch(config: RunConfig, policy: VlaFlowPolicy, batch: dict[str, Any]) -> list[dict[str, Any]]:
    """A sampled chunk per sample (``task.sampler``, ``task.sampling_steps``) and, when the batch
    has the recorded chunks, the metric sums of every (sampler, steps) of ``task.eval_steps``."""
    import torch

    from qvl_vla_flow.metrics import chunk_statistics

    t = config.task
    space = t.action_space
    features, state = batch["features"], batch.get("state")
    # a seed from the samples themselves: the same noise for a sample in any batch order or process
    seed = (t.seed_noise * 1_000_003 + sum(zlib.crc32(f"{e}@{s}".encode()) for e, s in batch["refs"])) % 2**31

    def sample(method: str, steps: int, length: int | None = None) -> torch.Tensor:
        # the same noise for every setting of one batch: the sweep compares samplers, not draws
        generator = torch.Generator().manual_seed(seed)
        return policy.sample(features, state, steps=steps, method=method, generator=generator,
                             length=length).float().cpu()

    chunks = sample(t.sampler, t.sampling_steps).clamp(-1, 1).numpy()
    results = [{"episode": episode, "step": step, "chunk": [[round(float(v), 4) for v in row] for row in chunk]}
               for (episode, step), chunk in zip(batch["refs"], chunks)]
    if "actions" in batch:
        targets, valid = batch["actions"].cpu().numpy(), batch["valid"].cpu().numpy()
        length = int(valid.any(axis=0).nonzero()[0].max()) + 1 if valid.any() else 1
        for method in ("euler", "heun"):
            for steps in t.eval_steps:
                # only the steps some sample scores: the same values as the full chunk's (causal)
                swept = sample(method, steps, length).clamp(-1, 1).numpy()
                for result, p, y, v in zip(results, swept, targets[:, :length], valid[:, :length]):
                    result.setdefault("sweep", {})[f"{method}/{steps}"] = chunk_statistics(p, y, v, space)
    return results
