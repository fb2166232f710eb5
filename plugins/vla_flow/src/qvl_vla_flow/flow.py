"""Flow matching for action chunks: one convention for the loss and the sampler.

The seed mixed two conventions (``a_t = t*actions + (1-t)*noise`` with target ``noise - actions``,
while its sampler integrated from noise at ``t = 1``); the velocity it learned pointed the wrong
way for the path it trained on. Here, as in SmolVLA / pi0 (lerobot ``modeling_smolvla.py``):

* path ``x_t = t * noise + (1 - t) * actions``: noise at ``t = 1``, data at ``t = 0``;
* target velocity ``u = d x_t / d t = noise - actions``;
* ``t ~ Beta(alpha, beta)`` scaled into ``[0.001, 1]`` (``Beta(1.5, 1)`` leans toward noisy ``t``);
* sampling integrates ``d x / d t = v(x, t)`` from ``t = 1`` (pure noise) to ``t = 0`` in
  ``steps`` equal steps ``dt = -1 / steps``, with Euler or Heun (the trapezoid rule: exact for a
  field linear in ``t``, two evaluations per step; the network is trained down to ``t = 0.001``
  and is smooth at ``t = 0``, so unlike EDM's sampler the last step is a Heun step too).
"""

from __future__ import annotations

from collections.abc import Callable

import torch

VelocityField = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]
METHODS = ("euler", "heun")


def sample_time(batch: int, alpha: float = 1.5, beta: float = 1.0, *, device: torch.device | str = "cpu",
                generator: torch.Generator | None = None) -> torch.Tensor:
    """``[batch]`` flow times in ``[0.001, 1]`` drawn from ``Beta(alpha, beta)``."""
    if generator is None:
        draw = torch.distributions.Beta(torch.tensor(float(alpha)), torch.tensor(float(beta))).sample((batch,))
    else:
        # torch's Beta takes no generator: draw it as X / (X + Y) with X ~ Gamma(alpha), Y ~ Gamma(beta)
        x = torch._standard_gamma(torch.full((batch,), float(alpha)), generator=generator)
        y = torch._standard_gamma(torch.full((batch,), float(beta)), generator=generator)
        draw = x / (x + y)
    return (draw * 0.999 + 0.001).to(device)


def noisy_actions(actions: torch.Tensor, noise: torch.Tensor, t: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """``(x_t, target velocity)`` for actions ``[B, C, A]``, noise like them and times ``[B]``."""
    time = t.to(actions.dtype).view(-1, *([1] * (actions.dim() - 1)))
    return time * noise + (1 - time) * actions, noise - actions


def flow_loss(velocity: torch.Tensor, target: torch.Tensor, valid: torch.Tensor | None = None,
              weights: torch.Tensor | None = None) -> torch.Tensor:
    """Weighted mean squared error between predicted and target velocities.

    :param velocity: ``[B, C, A]``.
    :param valid: ``[B, C]``, False where the chunk runs past the episode (padding): not trained.
    :param weights: ``[A]`` per action dimension; the mean is over valid positions and weighted
        dimensions (a weight of 0 removes a dimension).
    """
    error = (velocity.float() - target.float()) ** 2
    if weights is not None:
        error = error * weights.to(error)
        per_position = weights.to(error).sum()
    else:
        per_position = torch.tensor(float(error.shape[-1]), device=error.device)
    if valid is not None:
        error = error * valid.unsqueeze(-1).to(error)
        positions = valid.to(error).sum()
    else:
        positions = torch.tensor(float(error.shape[0] * error.shape[1]), device=error.device)
    return error.sum() / (positions * per_position).clamp_min(1e-8)


def integrate(field: VelocityField, noise: torch.Tensor, steps: int = 10, method: str = "euler") -> torch.Tensor:
    """Integrate the field from ``noise`` at ``t = 1`` to ``t = 0``: the sampled actions.

    :param field: ``v(x, t)`` with ``x`` like ``noise`` and ``t`` a ``[B]`` tensor.
    """
    if method not in METHODS:
        raise ValueError(f"sampler {method!r}: expected one of {METHODS}")
    if steps < 1:
        raise ValueError(f"sampling steps must be >= 1, got {steps}")
    x = noise
    batch = noise.shape[0]
    for k in range(steps):
        t, t_next = 1.0 - k / steps, 1.0 - (k + 1) / steps
        dt = t_next - t
        time = torch.full((batch,), t, device=noise.device, dtype=noise.dtype)
        velocity = field(x, time)
        if method == "heun":
            guess = x + dt * velocity
            velocity_next = field(guess, torch.full_like(time, t_next))
            velocity = (velocity + velocity_next) / 2
        x = x + dt * velocity
    return x


def field_evaluations(steps: int, method: str) -> int:
    """How many times :func:`integrate` calls the field (the cost of a sample)."""
    return steps if method == "euler" else 2 * steps

