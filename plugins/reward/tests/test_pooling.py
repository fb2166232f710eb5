import torch

from qvl_reward.head import last_token_index, last_token_pool, pooled_states


def test_last_token_index_under_both_paddings():
    right = torch.tensor([[1, 1, 1, 0, 0], [1, 1, 1, 1, 1], [1, 0, 0, 0, 0]])
    left = torch.tensor([[0, 0, 1, 1, 1], [1, 1, 1, 1, 1], [0, 0, 0, 0, 1]])
    assert last_token_index(right).tolist() == [2, 4, 0]
    assert last_token_index(left).tolist() == [4, 4, 4]
    # the seed's rule is right only for right padding
    assert (left.sum(1) - 1).tolist() != [4, 4, 4]
    hidden = torch.arange(3 * 5 * 2, dtype=torch.float32).reshape(3, 5, 2)
    assert last_token_pool(hidden, left).tolist() == [hidden[0, 4].tolist(), hidden[1, 4].tolist(),
                                                      hidden[2, 4].tolist()]


def test_pooled_states_are_the_same_under_left_and_right_padding(qvl_tiny_backbone):
    from PIL import Image

    from qvl import chat
    from qvl_reward.collate import conversation

    images = [Image.new("RGB", (64, 64), color) for color in ("red", "green", "blue")]
    texts = ["Task: fold", "Task: put the red block onto the green pad, then wait for the bell", "Task: x"]
    conversations = [conversation(images, text, (64, 64)) for text in texts]
    processor, model = qvl_tiny_backbone.processor, qvl_tiny_backbone.model
    with torch.no_grad():
        right = chat.conversation_batch(processor, conversations, padding_side="right")
        left = chat.conversation_batch(processor, conversations, padding_side="left")
        assert (right["attention_mask"] == 0).any() and (left["attention_mask"][:, 0] == 0).any()
        pooled_right = pooled_states(model, right)
        pooled_left = pooled_states(model, left)
        alone = torch.cat([pooled_states(model, chat.conversation_batch(processor, [c])) for c in conversations])
    torch.testing.assert_close(pooled_right, alone, atol=1e-4, rtol=1e-4)
    torch.testing.assert_close(pooled_left, alone, atol=1e-4, rtol=1e-4)
    # the seed's index under left padding picks a different (wrong) token
    seed_index = left["attention_mask"].sum(1) - 1
    outputs = model(**left, output_hidden_states=True, logits_to_keep=1).hidden_states[-1]
    wrong = outputs[torch.arange(3), seed_index]
    assert not torch.allclose(wrong, alone, atol=1e-3)
