"""Timing loops the benchmarks share (imported as a sibling module: running ``python benchmarks/NAME.py``
puts this folder on ``sys.path``). torch is imported only when a loop runs, so ``--help`` stays fast.

* ``seconds_per_call``: warm-up calls, then the mean of timed calls, with the GPU synchronised around them;
* ``train_steps_per_second``: training steps over a data loader, each what the runner does around the loss;
* ``best_of_rounds``: the best rate of each measurement over alternating rounds.
"""

import time
from collections.abc import Callable, Iterable
from typing import Any


def _synchronize(device: str) -> None:
    if device == "cuda":
        import torch

        torch.cuda.synchronize()


def seconds_per_call(fn: Callable[[], Any], repeats: int, *, warmup: int, device: str) -> float:
    """Mean seconds of ``repeats`` calls of ``fn`` after ``warmup`` untimed ones; on ``"cuda"`` the GPU's
    queued work is waited for before the clock starts and before it stops."""
    for _ in range(warmup):
        fn()
    _synchronize(device)
    start = time.perf_counter()
    for _ in range(repeats):
        fn()
    _synchronize(device)
    return (time.perf_counter() - start) / repeats


def train_steps_per_second(loader: Iterable[Any], steps: int, loss_of: Callable[[Any, int], Any],
                           parameters: list[Any], optimizer: Any) -> float:
    """Steps per second of ``steps`` training steps over ``loader`` (started again when it runs out), reading
    the batches included: each step is ``loss_of(batch, step)``, backward, gradients clipped to norm 1.0 and an
    optimizer step, as the runner does."""
    import torch

    batches = iter(loader)
    done = 0
    begin = time.perf_counter()
    while done < steps:
        try:
            batch = next(batches)
        except StopIteration:
            batches = iter(loader)
            continue
        loss_of(batch, done).backward()
        torch.nn.utils.clip_grad_norm_(parameters, 1.0)
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        done += 1
    return steps / (time.perf_counter() - begin)


def best_of_rounds(rounds: int, rates: dict[str, Callable[[], float]]) -> dict[str, float]:
    """The highest of each rate over ``rounds`` rounds that measure them in turn: on a shared machine the
    slow rounds measure the neighbours."""
    best = {name: 0.0 for name in rates}
    for _ in range(rounds):
        for name, rate in rates.items():
            best[name] = max(best[name], rate())
    return best
