"""The trainable policy: projectors from frozen Qwen-VL features, and the flow-matching action expert.

Context (keys / values of the expert's cross-attention), per sample:

* every frame of the window: its visual tokens (and the instruction's summary token, when the
  features carry one) through ``LayerNorm -> Linear`` to the expert's width, plus a learned
  temporal position (which frame of the window: the seed's "temporal position embeddings") and a
  token position; optionally pooled per frame (``mean``: one token, ``learned``: N learned queries
  attending to the frame's tokens, the seed's ``TokenPooler``);
* the state (the previous frame's action) through ``Linear -> LayerNorm``: one token.

Expert, as SmolVLA's (lerobot ``modeling_smolvla.py``): the noisy action chunk through a linear
projection, concatenated with a sinusoidal embedding of the flow time and mixed by an MLP
(``action_time_mlp``), plus a learned position per chunk step; then ``num_layers`` pre-norm
blocks alternating cross-attention to the context (even blocks) and causal self-attention over
the chunk (odd blocks; step ``i`` sees steps ``<= i``), each followed by a GELU MLP; then a
linear output to ``action_dim``: the velocity.

The context, and the cross-attention keys and values of it, are computed once per observation and
reused across the sampler's steps.
"""

from __future__ import annotations

import math

import torch
from torch import nn

from qvl_vla_flow.flow import flow_loss, integrate, noisy_actions, sample_time

PROJECTOR_PREFIXES = ("feature_projector", "frame_position", "token_position", "pooler", "state_projector")


def timestep_embedding(t: torch.Tensor, dim: int, min_period: float = 4e-3, max_period: float = 4.0) -> torch.Tensor:
    """Sine-cosine embedding ``[B, dim]`` of flow times ``[B]`` in [0, 1] (SmolVLA's periods)."""
    if dim % 2:
        raise ValueError(f"timestep embedding width must be even, got {dim}")
    fraction = torch.linspace(0.0, 1.0, dim // 2, device=t.device, dtype=torch.float32)
    period = min_period * (max_period / min_period) ** fraction
    angle = t.float()[:, None] * (2 * math.pi / period)[None, :]
    return torch.cat([angle.sin(), angle.cos()], dim=-1)


class TokenPooler(nn.Module):
    """Per frame: ``[B, F, N, H] -> [B, F, K, H]`` (``none``: K = N, ``mean``: 1, ``learned``: K queries)."""

    def __init__(self, kind: str, hidden: int, queries: int, heads: int):
        super().__init__()
        self.kind = kind
        if kind == "learned":
            self.queries = nn.Parameter(torch.randn(queries, hidden) * 0.02)
            self.attention = nn.MultiheadAttention(hidden, heads, batch_first=True)
            self.norm = nn.LayerNorm(hidden)
        elif kind not in ("none", "mean"):
            raise ValueError(f"token pooler {kind!r}: expected none, mean or learned")

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        if self.kind == "none":
            return tokens
        if self.kind == "mean":
            return tokens.mean(dim=2, keepdim=True)
        b, f, n, h = tokens.shape
        flat = self.norm(tokens.reshape(b * f, n, h))
        queries = self.queries.unsqueeze(0).expand(b * f, -1, -1)
        pooled, _ = self.attention(queries, flat, flat, need_weights=False)
        return pooled.reshape(b, f, -1, h)


class ExpertBlock(nn.Module):
    """Pre-norm attention (cross to the context, or causal over the chunk) then an MLP, both residual."""

    def __init__(self, cross: bool, hidden: int, heads: int, mlp_ratio: float, dropout: float):
        super().__init__()
        self.cross = cross
        self.norm = nn.LayerNorm(hidden)
        self.context_norm = nn.LayerNorm(hidden) if cross else None
        self.attention = nn.MultiheadAttention(hidden, heads, dropout=dropout, batch_first=True)
        width = int(hidden * mlp_ratio)
        self.mlp_norm = nn.LayerNorm(hidden)
        self.mlp = nn.Sequential(nn.Linear(hidden, width), nn.GELU(), nn.Dropout(dropout), nn.Linear(width, hidden))

    def forward(self, x: torch.Tensor, context: torch.Tensor,
                keys_values: tuple[torch.Tensor, torch.Tensor] | None = None) -> torch.Tensor:
        """:param keys_values: this block's :meth:`context_keys_values` of ``context``, when the
        caller has them (a sampler asks the same context ``steps`` times)."""
        h = self.norm(x)
        if self.cross and keys_values is not None:
            attended = self._attend_to(h, *keys_values)
        elif self.cross:
            keys = self.context_norm(context)
            attended, _ = self.attention(h, keys, keys, need_weights=False)
        else:
            mask = causal_mask(x.shape[1], x.device)
            attended, _ = self.attention(h, h, h, attn_mask=mask, need_weights=False, is_causal=True)
        x = x + attended
        return x + self.mlp(self.mlp_norm(x))

    def context_keys_values(self, context: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """The cross-attention's keys and values of ``context``, ``[B, heads, L, head_dim]`` each.

        They depend on the context only, so a sampler computes them once per chunk instead of once
        per field evaluation (SmolVLA / pi0 keep the prefix's KV cache across denoising steps the
        same way). Computed from ``nn.MultiheadAttention``'s own weights: checkpoints are unchanged.
        """
        if not self.cross:
            raise ValueError("a self-attention block has no context keys")
        width = self.attention.embed_dim
        keys = self.context_norm(context)
        weight, bias = self.attention.in_proj_weight, self.attention.in_proj_bias
        k = nn.functional.linear(keys, weight[width:2 * width], bias[width:2 * width])
        v = nn.functional.linear(keys, weight[2 * width:], bias[2 * width:])
        return self._heads(k), self._heads(v)

    def _heads(self, x: torch.Tensor) -> torch.Tensor:
        b, length, width = x.shape
        heads = self.attention.num_heads
        return x.view(b, length, heads, width // heads).transpose(1, 2)

    def _attend_to(self, h: torch.Tensor, keys: torch.Tensor, values: torch.Tensor) -> torch.Tensor:
        # nn.MultiheadAttention's computation (in-projection, scaled dot product, out-projection)
        # with the keys and values given; dropout only in training, as there
        width = self.attention.embed_dim
        q = nn.functional.linear(h, self.attention.in_proj_weight[:width], self.attention.in_proj_bias[:width])
        dropout = self.attention.dropout if self.training else 0.0
        attended = nn.functional.scaled_dot_product_attention(self._heads(q), keys, values, dropout_p=dropout)
        attended = attended.transpose(1, 2).reshape(h.shape)
        return self.attention.out_proj(attended)


def causal_mask(length: int, device: torch.device | str = "cpu") -> torch.Tensor:
    """``[L, L]`` boolean mask, True where attention is NOT allowed (a later chunk step)."""
    return torch.ones(length, length, dtype=torch.bool, device=device).triu(diagonal=1)


class VlaFlowPolicy(nn.Module):
    """Projectors + token pooler + flow-matching expert; see the module docstring.

    :param feature_dim: width of the backbone features (its hidden size).
    :param tokens_per_frame: feature tokens of one frame (pooled visual tokens + text token).
    :param state_dim: 0 for no state token.
    :param loss_weights: ``[action_dim]`` per-dimension weights of the flow loss.
    """

    def __init__(self, *, feature_dim: int, tokens_per_frame: int, num_frames: int, action_dim: int,
                 state_dim: int, chunk_size: int, hidden_dim: int = 128, num_layers: int = 4, num_heads: int = 4,
                 mlp_ratio: float = 4.0, dropout: float = 0.0, token_pooler: str = "none", pooler_tokens: int = 4,
                 loss_weights: torch.Tensor | None = None, time_alpha: float = 1.5, time_beta: float = 1.0):
        super().__init__()
        if hidden_dim % num_heads:
            raise ValueError(f"hidden_dim {hidden_dim} is not divisible by num_heads {num_heads}")
        self.action_dim, self.chunk_size, self.state_dim = action_dim, chunk_size, state_dim
        self.time_alpha, self.time_beta = time_alpha, time_beta
        self.feature_projector = nn.Sequential(nn.LayerNorm(feature_dim), nn.Linear(feature_dim, hidden_dim))
        self.frame_position = nn.Parameter(torch.randn(num_frames, hidden_dim) * 0.02)
        self.token_position = nn.Parameter(torch.randn(tokens_per_frame, hidden_dim) * 0.02)
        self.pooler = TokenPooler(token_pooler, hidden_dim, pooler_tokens, num_heads)
        self.state_projector = (nn.Sequential(nn.Linear(state_dim, hidden_dim), nn.LayerNorm(hidden_dim))
                                if state_dim else None)
        self.action_in = nn.Linear(action_dim, hidden_dim)
        self.action_time_mlp = nn.Sequential(nn.Linear(2 * hidden_dim, hidden_dim), nn.SiLU(),
                                             nn.Linear(hidden_dim, hidden_dim))
        self.action_position = nn.Parameter(torch.randn(chunk_size, hidden_dim) * 0.02)
        self.blocks = nn.ModuleList(ExpertBlock(i % 2 == 0, hidden_dim, num_heads, mlp_ratio, dropout)
                                    for i in range(num_layers))
        self.out_norm = nn.LayerNorm(hidden_dim)
        self.action_out = nn.Linear(hidden_dim, action_dim)
        weights = torch.ones(action_dim) if loss_weights is None else loss_weights.float()
        self.register_buffer("loss_weights", weights, persistent=False)

    def context(self, features: torch.Tensor, state: torch.Tensor | None = None) -> torch.Tensor:
        """``[B, F, N, D]`` frame features (+ ``[B, S]`` state) -> ``[B, L, H]`` context tokens."""
        tokens = self.feature_projector(features.to(self.action_in.weight.dtype))
        tokens = tokens + self.token_position[None, None] + self.frame_position[None, :, None]
        tokens = self.pooler(tokens)
        b = tokens.shape[0]
        context = tokens.reshape(b, -1, tokens.shape[-1])
        if self.state_projector is not None:
            if state is None:
                raise ValueError("this policy was built with a state token: pass the state")
            context = torch.cat([context, self.state_projector(state.to(context.dtype)).unsqueeze(1)], dim=1)
        return context

    def velocity(self, context: torch.Tensor, x: torch.Tensor, t: torch.Tensor,
                 keys_values: list | None = None) -> torch.Tensor:
        """The predicted velocity ``[B, C, A]`` at noisy actions ``x`` and times ``t`` ``[B]``.

        :param keys_values: :meth:`context_keys_values` of ``context``, to skip recomputing them.
        """
        steps = x.shape[1]
        actions = self.action_in(x.to(context.dtype))
        time = timestep_embedding(t, actions.shape[-1]).to(actions.dtype)
        h = self.action_time_mlp(torch.cat([actions, time[:, None].expand_as(actions)], dim=-1))
        h = h + self.action_position[None, :steps]
        for index, block in enumerate(self.blocks):
            h = block(h, context, None if keys_values is None else keys_values[index])
        return self.action_out(self.out_norm(h))

    def context_keys_values(self, context: torch.Tensor) -> list[tuple[torch.Tensor, torch.Tensor] | None]:
        """Per block, the cross-attention keys and values of ``context`` (None for self-attention)."""
        return [block.context_keys_values(context) if block.cross else None for block in self.blocks]

    def forward(self, features: torch.Tensor, state: torch.Tensor | None, x: torch.Tensor,
                t: torch.Tensor) -> torch.Tensor:
        return self.velocity(self.context(features, state), x, t)

    def loss(self, features: torch.Tensor, state: torch.Tensor | None, actions: torch.Tensor,
             valid: torch.Tensor | None = None, generator: torch.Generator | None = None) -> torch.Tensor:
        """Flow-matching loss of one batch (noise and times drawn here).

        Steps past the last valid one of the batch are cut before the forward: with causal
        self-attention no valid step sees them, so the loss is the same and the padding of short
        episodes costs nothing.
        """
        if valid is not None:
            length = int(valid.any(dim=0).nonzero().max()) + 1 if bool(valid.any()) else 1
            actions, valid = actions[:, :length], valid[:, :length]
        noise = torch.randn(actions.shape, generator=generator, device=actions.device, dtype=actions.dtype) \
            if generator is not None else torch.randn_like(actions)
        t = sample_time(actions.shape[0], self.time_alpha, self.time_beta, device=actions.device, generator=generator)
        x_t, target = noisy_actions(actions, noise, t)
        return flow_loss(self(features, state, x_t, t), target, valid, self.loss_weights)

    @torch.no_grad()
    def sample(self, features: torch.Tensor, state: torch.Tensor | None = None, *, steps: int = 10,
               method: str = "euler", generator: torch.Generator | None = None,
               length: int | None = None) -> torch.Tensor:
        """An action chunk ``[B, C, A]`` per observation, integrated from Gaussian noise.

        :param length: sample only the first ``length`` steps of the chunk: the same values as the
            full chunk's first steps (causal attention, the same noise), for scoring short episodes.
        """
        shape = (features.shape[0], self.chunk_size, self.action_dim)
        noise = torch.randn(shape, generator=generator, dtype=torch.float32)
        if length is not None:
            noise = noise[:, :length]
        noise = noise.to(features.device, self.action_in.weight.dtype).contiguous()
        return self.integrate_chunk(features, state, noise, steps, method)

    def integrate_chunk(self, features: torch.Tensor, state: torch.Tensor | None, noise: torch.Tensor, steps: int,
                        method: str) -> torch.Tensor:
        """From an observation and the chunk's noise to the sampled chunk: the context, its
        cross-attention keys and values, then every step of the sampler. One function of tensors, so
        ``session.compile_sampler`` compiles all of it as one graph (per-operation overhead, not
        arithmetic, is most of a small expert's time on a CPU)."""
        context = self.context(features, state)
        keys_values = self.context_keys_values(context)
        return integrate(lambda x, t: self.velocity(context, x, t, keys_values), noise, steps, method)


def parameter_groups(policy: nn.Module) -> dict[str, list[tuple[str, nn.Parameter]]]:
    """The policy's trainable parameters by module family: ``projectors`` and ``expert``."""
    groups: dict[str, list[tuple[str, nn.Parameter]]] = {"projectors": [], "expert": []}
    for name, parameter in policy.named_parameters():
        if parameter.requires_grad:
            family = "projectors" if name.startswith(PROJECTOR_PREFIXES) else "expert"
            groups[family].append((name, parameter))
    return groups
