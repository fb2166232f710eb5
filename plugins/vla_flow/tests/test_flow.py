"""The flow-matching convention: path, target, time distribution and both samplers."""

import pytest
import torch

from qvl_vla_flow.flow import field_evaluations, flow_loss, integrate, noisy_actions, sample_time


def test_path_runs_from_actions_at_zero_to_noise_at_one_with_the_matching_velocity():
    actions, noise = torch.randn(3, 5, 4), torch.randn(3, 5, 4)
    start, target = noisy_actions(actions, noise, torch.zeros(3))
    end, _ = noisy_actions(actions, noise, torch.ones(3))
    assert torch.equal(start, actions) and torch.equal(end, noise)
    assert torch.allclose(target, noise - actions)
    # the target is the time derivative of the path
    t = torch.full((3,), 0.3)
    ahead, _ = noisy_actions(actions, noise, t + 1e-3)
    here, _ = noisy_actions(actions, noise, t)
    assert torch.allclose((ahead - here) / 1e-3, target, atol=1e-3)


@pytest.mark.parametrize("steps", [1, 3, 10])
def test_euler_follows_the_exact_field_of_a_known_chunk_from_any_noise(steps):
    # along x_t = t*n + (1-t)*a the field is v(x, t) = (x - a) / t: straight lines, which Euler
    # follows exactly; a sampler integrating the wrong way or from the wrong end would not
    a = torch.randn(2, 6, 3)
    calls = []

    def field(x, t):
        calls.append(float(t[0]))
        return (x - a) / t.view(-1, 1, 1)

    result = integrate(field, torch.randn(2, 6, 3), steps=steps, method="euler")
    assert torch.allclose(result, a, atol=1e-5)
    assert len(calls) == field_evaluations(steps, "euler")
    assert calls[0] == 1.0 and min(calls) > 0  # starts at pure noise, never evaluates at t = 0


@pytest.mark.parametrize("steps", [1, 4])
def test_heun_integrates_a_field_linear_in_time_exactly_and_euler_does_not(steps):
    # v(x, t) = b + c*t: x(0) = x(1) - (b + c/2), the trapezoid rule's exact case
    b, c = torch.randn(1, 5, 2), torch.randn(1, 5, 2)
    calls = []

    def field(x, t):
        calls.append(float(t[0]))
        return b + c * t.view(-1, 1, 1)

    start = torch.randn(1, 5, 2)
    heun = integrate(field, start, steps=steps, method="heun")
    assert torch.allclose(heun, start - (b + c / 2), atol=1e-5)
    assert len(calls) == field_evaluations(steps, "heun") == 2 * steps
    euler = integrate(field, start, steps=steps, method="euler")
    assert (euler - (start - (b + c / 2))).abs().max() > 0.05 * c.abs().max() / steps


def test_heun_is_more_accurate_than_euler_on_a_curved_field():
    # v = -x / (1 + t) bends the path; the exact solution from x(1) = 1 is x(0) = 2
    def field(x, t):
        return -x / (1 + t.view(-1, 1, 1))

    start = torch.ones(1, 1, 1)
    euler = integrate(field, start, steps=4, method="euler")
    heun = integrate(field, start, steps=4, method="heun")
    assert abs(float(heun) - 2) < abs(float(euler) - 2) / 5


def test_times_follow_beta_one_and_a_half_one():
    t = sample_time(200_000, 1.5, 1.0, generator=torch.Generator().manual_seed(0))
    assert 0.001 <= float(t.min()) and float(t.max()) <= 1.0
    # Beta(1.5, 1) has mean 0.6 and P(t < 0.5) = 0.5 ** 1.5
    assert float(t.mean()) == pytest.approx(0.6 * 0.999 + 0.001, abs=3e-3)
    assert float((t < 0.5 * 0.999 + 0.001).float().mean()) == pytest.approx(0.5 ** 1.5, abs=3e-3)
    again = sample_time(5, 1.5, 1.0, generator=torch.Generator().manual_seed(1))
    assert torch.equal(again, sample_time(5, 1.5, 1.0, generator=torch.Generator().manual_seed(1)))


def test_loss_ignores_padding_and_weighs_dimensions():
    velocity, target = torch.zeros(1, 2, 2), torch.tensor([[[1.0, 2.0], [100.0, 100.0]]])
    valid = torch.tensor([[True, False]])
    assert float(flow_loss(velocity, target, valid)) == pytest.approx((1 + 4) / 2)
    weights = torch.tensor([1.0, 0.0])
    assert float(flow_loss(velocity, target, valid, weights)) == pytest.approx(1.0)
