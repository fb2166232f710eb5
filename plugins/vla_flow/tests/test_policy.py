"""The policy network: causal chunk attention, context reuse, parameter groups, and learning one batch."""

import pytest
import torch

from qvl_vla_flow.policy import VlaFlowPolicy, causal_mask, parameter_groups, timestep_embedding


def small_policy(**overrides):
    settings = dict(feature_dim=24, tokens_per_frame=5, num_frames=3, action_dim=6, state_dim=6, chunk_size=8,
                    hidden_dim=32, num_layers=4, num_heads=4)
    settings.update(overrides)
    torch.manual_seed(0)
    return VlaFlowPolicy(**settings).eval()


def inputs(batch=2, policy_frames=3):
    g = torch.Generator().manual_seed(1)
    return (torch.randn(batch, policy_frames, 5, 24, generator=g), torch.randn(batch, 6, generator=g),
            torch.randn(batch, 8, 6, generator=g), torch.rand(batch, generator=g))


def test_causal_mask_blocks_only_later_steps():
    mask = causal_mask(4)
    assert mask.tolist() == [[False, True, True, True], [False, False, True, True],
                             [False, False, False, True], [False, False, False, False]]


def test_a_chunk_step_sees_earlier_steps_but_never_later_ones():
    policy = small_policy()
    features, state, x, t = inputs()
    base = policy(features, state, x, t)
    changed = x.clone()
    changed[:, 5] += 3.0  # perturb step 5 of the noisy chunk
    after = policy(features, state, changed, t)
    assert torch.allclose(base[:, :5], after[:, :5], atol=1e-6)  # steps 0-4 cannot see step 5
    assert not torch.allclose(base[:, 5:], after[:, 5:], atol=1e-3)  # step 5 and later do


@pytest.mark.parametrize("pooler", ["none", "mean", "learned"])
def test_every_input_changes_the_velocity(pooler):
    policy = small_policy(token_pooler=pooler, pooler_tokens=2)
    features, state, x, t = inputs()
    base = policy(features, state, x, t)
    older = features.clone()
    older[:, 0] += torch.randn(older[:, 0].shape)  # the oldest frame of the window (a constant shift
    # would vanish in the projector's LayerNorm)
    assert not torch.allclose(base, policy(older, state, x, t), atol=1e-4)
    assert not torch.allclose(base, policy(features, state + 1.0, x, t), atol=1e-4)
    assert not torch.allclose(base, policy(features, state, x, t * 0.5), atol=1e-4)
    assert policy.context(features, state).shape[1] == 3 * {"none": 5, "mean": 1, "learned": 2}[pooler] + 1


def test_frame_order_matters_through_the_temporal_positions():
    policy = small_policy()
    features, state, x, t = inputs()
    swapped = features[:, [2, 1, 0]]
    assert not torch.allclose(policy(features, state, x, t), policy(swapped, state, x, t), atol=1e-4)


def test_timestep_embedding_separates_nearby_times():
    e = timestep_embedding(torch.tensor([0.0, 0.01, 1.0]), 32)
    assert e.shape == (3, 32)
    assert (e[0] - e[1]).norm() > 0.1


def test_parameter_groups_cover_every_parameter_once():
    policy = small_policy(token_pooler="learned", pooler_tokens=2)
    groups = parameter_groups(policy)
    names = [n for named in groups.values() for n, _ in named]
    assert sorted(names) == sorted(n for n, _ in policy.named_parameters())
    assert {n.split(".")[0] for n, _ in groups["projectors"]} == {
        "feature_projector", "frame_position", "token_position", "pooler", "state_projector"}
    assert all(not n.startswith(("feature_projector", "pooler")) for n, _ in groups["expert"])


def test_sampling_is_deterministic_given_a_generator_and_has_the_chunk_shape():
    policy = small_policy()
    features, state, _, _ = inputs()
    a = policy.sample(features, state, steps=3, generator=torch.Generator().manual_seed(5))
    b = policy.sample(features, state, steps=3, generator=torch.Generator().manual_seed(5))
    assert a.shape == (2, 8, 6) and torch.equal(a, b)


def test_overfitting_one_batch_drives_the_flow_loss_near_zero_and_samples_to_the_chunks():
    # two observations with fixed chunks: the exact field is learnable, so the loss falls far
    # below its start (its floor is the network's fit of (x_t - actions) / t near t = 0) and
    # sampling lands on the memorised chunks
    torch.manual_seed(0)
    policy = VlaFlowPolicy(feature_dim=16, tokens_per_frame=2, num_frames=2, action_dim=4, state_dim=4,
                           chunk_size=4, hidden_dim=32, num_layers=2, num_heads=4)
    g = torch.Generator().manual_seed(0)
    features, state = torch.randn(2, 2, 2, 16, generator=g), torch.randn(2, 4, generator=g)
    actions = torch.rand(2, 4, 4, generator=g) * 2 - 1

    def held_out_loss():
        with torch.no_grad():
            return float(torch.stack([policy.loss(features, state, actions, generator=torch.Generator().manual_seed(s))
                                      for s in range(20)]).mean())

    before = held_out_loss()
    optimizer = torch.optim.Adam(policy.parameters(), lr=3e-3)
    for _ in range(400):
        optimizer.zero_grad()
        policy.loss(features, state, actions).backward()
        optimizer.step()
    after = held_out_loss()
    assert before > 1.0 and after < 0.15 * before
    sampled = policy.sample(features, state, steps=10, generator=torch.Generator().manual_seed(0))
    assert float(((sampled - actions) ** 2).mean()) < 0.15 * float(actions.var())


def test_padding_past_the_last_valid_step_neither_changes_the_loss_nor_costs_a_forward():
    policy = small_policy()
    features, state, x, _ = inputs()
    valid = torch.zeros(2, 8, dtype=torch.bool)
    valid[0, :3], valid[1, :5] = True, True
    padded = x.clone()
    padded[:, 5:] = 1e3  # whatever fills the padding
    full = policy.loss(features, state, padded, valid, generator=torch.Generator().manual_seed(3))
    cut = policy.loss(features, state, x[:, :5], valid[:, :5], generator=torch.Generator().manual_seed(3))
    assert torch.allclose(full, cut)


def test_sampling_a_prefix_of_the_chunk_gives_the_full_chunks_first_steps():
    policy = small_policy()
    features, state, _, _ = inputs()
    for method in ("euler", "heun"):
        whole = policy.sample(features, state, steps=4, method=method, generator=torch.Generator().manual_seed(2))
        prefix = policy.sample(features, state, steps=4, method=method, generator=torch.Generator().manual_seed(2),
                               length=3)
        assert torch.allclose(whole[:, :3], prefix, atol=1e-6)


@pytest.mark.parametrize("dropout", [0.0, 0.3])
def test_cached_context_keys_and_values_give_the_velocity_of_the_plain_attention(dropout):
    policy = small_policy(dropout=dropout)  # eval mode: dropout off in both paths
    features, state, x, t = inputs()
    context = policy.context(features, state)
    keys_values = policy.context_keys_values(context)
    assert [kv is None for kv in keys_values] == [False, True, False, True]  # cross blocks only
    assert keys_values[0][0].shape == (2, 4, context.shape[1], 8)  # [B, heads, L, head_dim]
    plain = policy.velocity(context, x, t)
    cached = policy.velocity(context, x, t, keys_values)
    assert torch.allclose(plain, cached, atol=1e-5)
    # and the keys are those of this context: another context's give another velocity
    other = policy.context_keys_values(policy.context(features + torch.randn_like(features), state))
    assert not torch.allclose(plain, policy.velocity(context, x, t, other), atol=1e-4)
    # sampling (which uses the cached keys) integrates the plain field
    from qvl_vla_flow.flow import integrate

    noise = torch.randn(2, 8, 6, generator=torch.Generator().manual_seed(2))
    expected = integrate(lambda y, s: policy.velocity(context, y, s), noise, 4, "euler")
    assert torch.allclose(policy.sample(features, state, steps=4, generator=torch.Generator().manual_seed(2)),
                          expected, atol=1e-5)


def test_the_compiled_sampler_is_one_graph_and_samples_the_same_chunks():
    from qvl_vla_flow.session import compile_sampler

    policy = small_policy()
    features, state, _, _ = inputs()
    expected = {length: policy.sample(features, state, steps=3, generator=torch.Generator().manual_seed(4),
                                      length=length) for length in (None, 2)}
    # aot_eager traces what inductor compiles (fullgraph: a graph break raises) without its minutes of C++
    compile_sampler(policy, backend="aot_eager")
    compile_sampler(policy, backend="aot_eager")  # a second call does not wrap it twice
    assert policy._sampler_compiled
    for length, chunk in expected.items():
        again = policy.sample(features, state, steps=3, generator=torch.Generator().manual_seed(4), length=length)
        assert torch.allclose(again, chunk, atol=1e-5)


def test_heads_that_do_not_divide_the_width_are_refused_when_the_config_is_read(qvl_host):
    from qvl.config import ConfigError, load_config

    task = qvl_host.task("vla_flow")
    with pytest.raises(ConfigError) as caught:
        load_config(task, [], ["task.num_heads=3"])
    assert caught.value.problems == ["--set task.num_heads=3: task.num_heads: must divide hidden_dim (128); got 3"]
    config = load_config(task, [], ["task.hidden_dim=96", "task.num_heads=8"])
    assert (config.task.hidden_dim, config.task.num_heads) == (96, 8)
