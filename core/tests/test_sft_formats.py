"""qvl.data.conversations: the three layouts users have, and one clear error per malformed row."""

import json

import pytest
from PIL import Image

from qvl import UserError
from qvl.data.conversations import LLAMA_FACTORY, OPENAI, SHAREGPT, read_conversations

# LLaMA-Factory's data/mllm_demo.json, as its README documents the multimodal sharegpt layout (first rows)
MLLM_DEMO = [
    {"messages": [{"content": "<image>Who are they?", "role": "user"},
                  {"content": "They're Kane and Gretzka from Bayern Munich.", "role": "assistant"},
                  {"content": "What are they doing?<image>", "role": "user"},
                  {"content": "They are celebrating on the soccer field.", "role": "assistant"}],
     "images": ["mllm_demo_data/1.jpg", "mllm_demo_data/1.jpg"]},
    {"messages": [{"content": "<image>Who is he?", "role": "user"},
                  {"content": "He's Thomas Muller from Bayern Munich.", "role": "assistant"},
                  {"content": "Why is he on the ground?", "role": "user"},
                  {"content": "Because he's sliding on his knees to celebrate.", "role": "assistant"}],
     "images": ["mllm_demo_data/2.jpg"]},
    {"messages": [{"content": "<image>Please describe this image", "role": "user"},
                  {"content": "Chinese astronaut Gui Haichao is giving a speech.", "role": "assistant"},
                  {"content": "What has he accomplished?", "role": "user"},
                  {"content": "He was appointed to be a payload specialist on Shenzhou 16 mission in June 2022, "
                              "thus becoming the first Chinese civilian of Group 3 in space.", "role": "assistant"}],
     "images": ["mllm_demo_data/3.jpg"]},
]


@pytest.fixture
def demo_dir(tmp_path):
    (tmp_path / "mllm_demo_data").mkdir()
    for index, color in enumerate(["red", "green", "blue"], start=1):
        Image.new("RGB", (48, 32), color).save(tmp_path / "mllm_demo_data" / f"{index}.jpg")
    (tmp_path / "mllm_demo.json").write_text(json.dumps(MLLM_DEMO, indent=2, ensure_ascii=False))
    return tmp_path


def test_llama_factory_mllm_demo_file_reads_with_placeholders_filled_in_order(demo_dir):
    rows = read_conversations(demo_dir / "mllm_demo.json")
    assert [row.id for row in rows] == ["mllm_demo.json[0]", "mllm_demo.json[1]", "mllm_demo.json[2]"]
    assert {row.layout for row in rows} == {LLAMA_FACTORY}
    first = rows[0].messages
    assert [m["role"] for m in first] == ["user", "assistant", "user", "assistant"]
    image = str(demo_dir / "mllm_demo_data" / "1.jpg")  # relative to the file's folder
    assert first[0]["content"] == [{"type": "image", "image": image}, {"type": "text", "text": "Who are they?"}]
    assert first[2]["content"] == [{"type": "text", "text": "What are they doing?"}, {"type": "image", "image": image}]
    assert first[1]["content"] == "They're Kane and Gretzka from Bayern Munich."
    prompt, answer = rows[2].prompt_and_answer()
    assert len(prompt) == 3 and answer.startswith("He was appointed")


def test_sharegpt_and_openai_layouts_give_the_same_messages(tmp_path):
    Image.new("RGB", (32, 32), "red").save(tmp_path / "a.png")
    sharegpt = {"conversations": [{"from": "human", "value": "<image>\nWhat colour?"}, {"from": "gpt", "value": "red"}],
                "images": ["a.png"], "system": "Be brief."}
    llava = {"conversations": [{"from": "human", "value": "<image>\nWhat colour?"}, {"from": "gpt", "value": "red"}],
             "image": "a.png"}
    openai = {"messages": [{"role": "system", "content": "Be brief."},
                           {"role": "user", "content": [{"type": "image_url", "image_url": {"url": "a.png"}},
                                                        {"type": "text", "text": "What colour?"}]},
                           {"role": "assistant", "content": [{"type": "text", "text": "red"}]}]}
    path = tmp_path / "mixed.jsonl"
    path.write_text("\n".join(json.dumps(row) for row in (sharegpt, llava, openai)) + "\n\n")
    rows = read_conversations(path)
    assert [row.layout for row in rows] == [SHAREGPT, SHAREGPT, OPENAI]
    assert [row.id for row in rows] == ["mixed.jsonl:1", "mixed.jsonl:2", "mixed.jsonl:3"]
    assert rows[0].messages == rows[2].messages
    assert rows[0].messages == [
        {"role": "system", "content": "Be brief."},
        {"role": "user", "content": [{"type": "image", "image": str(tmp_path / "a.png")},
                                     {"type": "text", "text": "What colour?"}]},
        {"role": "assistant", "content": "red"}]
    assert rows[1].messages == rows[0].messages[1:]


def test_a_prompt_without_answer_reads_only_for_predict(tmp_path):
    path = tmp_path / "ask.jsonl"
    path.write_text(json.dumps({"messages": [{"role": "user", "content": "Hello?"}]}) + "\n")
    (row,) = read_conversations(path, need_answer=False)
    assert row.prompt_and_answer() == (row.messages, None)
    with pytest.raises(UserError, match=r"ask.jsonl, line 1, field 'messages\[0\]': the conversation ends with a user"):
        read_conversations(path)


@pytest.mark.parametrize(("row", "message"), [
    ({"messages": [{"role": "user", "content": "<image>Hi"}, {"role": "assistant", "content": "x"}],
      "images": ["missing.png"]}, r"line 2, field 'images\[0\]': no such file: .*missing.png"),
    ({"messages": [{"role": "user", "content": "<image><image>Hi"}, {"role": "assistant", "content": "x"}],
      "images": ["a.png"]}, r"line 2, field 'images': more <image> placeholders in 'messages' than the 1 image"),
    ({"messages": [{"role": "user", "content": "Hi"}, {"role": "assistant", "content": "x"}],
      "images": ["a.png"]}, r"line 2, field 'images': 1 image paths but 0 <image> placeholders"),
    ({"conversations": [{"from": "human", "value": "Hi"}, {"from": "bot", "value": "x"}]},
     r"line 2, field 'conversations\[1\].from': expected one of user, human, assistant, gpt, system, got 'bot'"),
    ({"messages": [{"role": "user", "content": "Hi"}, {"role": "user", "content": "Hi"}]},
     r"line 2, field 'messages\[1\]': a user turn where a assistant turn belongs"),
    ({"messages": [{"role": "user", "content": [{"type": "audio", "audio": "x.wav"}]},
                   {"role": "assistant", "content": "x"}]},
     r"line 2, field 'messages\[0\].content\[0\].type': expected 'text', 'image'"),
    ({"messages": [{"role": "user", "content": "Hi"}, {"role": "assistant", "content": 3}]},
     r"line 2, field 'messages\[1\].content': expected a string, got 3"),
    ({"prompt": "Hi"}, r"line 2: no 'messages' \(LLaMA-Factory, OpenAI\) or 'conversations' \(ShareGPT\) field"),
    ({"messages": [{"role": "user", "content": "<image>Hi"}, {"role": "assistant", "content": "x"}],
      "images": ["http://example.com/x.png"]},
     r"line 2, field 'images\[0\]': a web address \(http://example.com/x.png\): qvl reads local files only"),
    ({"messages": [{"role": "user", "content": "<image>Hi"}, {"role": "assistant", "content": "x"}],
      "images": ["sub/../gone.png"]}, r"line 2, field 'images\[0\]': no such file: (?!.*\.\./)\S*/gone.png$"),
])
def test_a_malformed_row_is_one_error_naming_file_line_and_field(tmp_path, row, message):
    Image.new("RGB", (32, 32), "red").save(tmp_path / "a.png")
    good = {"messages": [{"role": "user", "content": "Hi"}, {"role": "assistant", "content": "x"}]}
    path = tmp_path / "data.jsonl"
    path.write_text(json.dumps(good) + "\n" + json.dumps(row) + "\n")
    with pytest.raises(UserError, match=f"data.jsonl, {message}"):
        read_conversations(path)


def test_broken_json_names_the_line(tmp_path):
    path = tmp_path / "data.jsonl"
    path.write_text('{"messages": []}\n{"messages": [\n')
    with pytest.raises(UserError, match="data.jsonl, line 2: not valid JSON"):
        read_conversations(path)
    array = tmp_path / "data.json"
    array.write_text('[\n {"messages": [{"role": "user", "content": "Hi"}]},\n {oops}\n]')
    with pytest.raises(UserError, match="data.json, line 3: not valid JSON"):
        read_conversations(array)
    array.write_text('[{"messages": [{"role": "user", "content": "Hi"}]}]')
    with pytest.raises(UserError, match="data.json, item 0, field 'messages\\[0\\]': the conversation ends"):
        read_conversations(array)
