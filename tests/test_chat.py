"""The chat API: batching, streaming, multi-turn, and its clear errors."""

import pytest
import torch

from r1v.chat import Chat, ReasoningStreamer
from r1v.errors import R1VError
from r1v.model.builder import build_r1v, tiny_language_config, tiny_vision_config


@pytest.fixture(scope="module")
def chat(tiny):
    return Chat(*tiny, max_tiles=2)


def test_batched_greedy_equals_unbatched(chat, images):
    reqs = [("What is shown?", [images[0]]), ("Compare them, please, in detail.", images[:2]),
            ("Just text.", []), ("<image> then <image> then <image>", images)]
    batched = chat.ask_batch(reqs, max_new_tokens=16, temperature=0)
    single = [chat.ask(q, images=i, max_new_tokens=16, temperature=0) for q, i in reqs]
    assert [b.text for b in batched] == [s.text for s in single]
    assert all(r.new_tokens == 16 and not r.stopped for r in single)


def test_sampling_is_seeded(chat, images):
    a = chat.ask("Q", images=[images[0]], max_new_tokens=8, seed=3)
    b = chat.ask("Q", images=[images[0]], max_new_tokens=8, seed=3)
    assert a.text == b.text


def test_stream_concatenates_to_the_reply(chat, images):
    parts = []
    reply = chat.ask("Q", images=[images[1]], max_new_tokens=12, temperature=0,
                     stream=lambda kind, text: parts.append((kind, text)))
    assert "".join(t for _, t in parts) == reply.text


def test_streamer_tells_reasoning_from_answer(tiny):
    _, tok = tiny
    text = "Count: 2 + 3 = 5 ✓.</think>The answer is \\boxed{5} ✓"
    parts = []
    s = ReasoningStreamer(tok, lambda kind, t: parts.append((kind, t)))
    s.put(torch.tensor([[1, 2, 3]]))  # the prompt, skipped
    for i in tok(text, add_special_tokens=False)["input_ids"]:  # byte-level: multi-byte chars split
        s.put(torch.tensor([i]))
    s.end()
    reasoning = "".join(t for k, t in parts if k == "reasoning")
    answer = "".join(t for k, t in parts if k == "answer")
    assert reasoning == "Count: 2 + 3 = 5 ✓."
    assert answer == "The answer is \\boxed{5} ✓"
    assert "\ufffd" not in reasoning + answer


def test_conversation_carries_history_and_images(chat, images):
    conv = chat.conversation()
    first = conv.ask("What is in it?", images=[images[0]], max_new_tokens=4, temperature=0)
    text, imgs = chat.prompt("And now?", [images[1]], history=conv)
    assert len(imgs) == 2
    assert text.count(chat.processor.image_token) == 2
    assert text.count("<｜User｜>") == 2 and (first.answer or "") in text
    conv.ask("And now?", images=[images[1]], max_new_tokens=4, temperature=0)
    assert len(conv.messages) == 4


def test_stops_at_end_of_turn(tiny, images):
    model, tok = tiny
    m = build_r1v(vision=tiny_vision_config(), language=tiny_language_config(len(tok)), tokenizer=tok)
    with torch.no_grad():  # make the end-of-sentence token the argmax everywhere
        m.lm_head.bias = torch.nn.Parameter(torch.zeros(len(tok)))
        m.lm_head.weight.zero_()
        m.lm_head.bias[tok.eos_token_id] = 1.0
    reply = Chat(m, tok).ask("Q", max_new_tokens=10, temperature=0)
    assert reply.stopped and reply.new_tokens == 0 and reply.text == ""


def test_errors(chat, images, tiny):
    with pytest.raises(R1VError, match="empty"):
        chat.ask("   ", images=[images[0]])
    with pytest.raises(R1VError, match="placeholder"):
        chat.ask("<image> and <image>", images=[images[0]])
    model, tok = tiny
    short = build_r1v(vision=tiny_vision_config(),
                      language=tiny_language_config(len(tok), max_position_embeddings=300), tokenizer=tok)
    with pytest.raises(R1VError, match="context holds 300"):
        Chat(short, tok, max_tiles=2).ask("Q", images=[images[0]])
