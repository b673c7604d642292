"""`r1v serve`'s vLLM glue against a stand-in for vLLM's API (no GPU here): what r1v hands vLLM (the
prompt, its BOS, the stop tokens, the budget, the dtype), what it makes of vLLM's outputs (the reasoning
split, token counts), and its refusals (a too-long prompt is a 400 even when streaming; a gone client
is aborted). The stand-in answers from a script; vLLM itself is only run where a GPU is lent."""

from __future__ import annotations

import sys
import types
from dataclasses import dataclass, field

import openai
import pytest

from r1v.model.checkpoint import save_model
from r1v.serve.app import build_app, running
from r1v.serve.config import ServeConfig

SCRIPT = "Three red shapes.</think>\n\n\\boxed{3}"


@dataclass
class SamplingParams:
    max_tokens: int = 16
    temperature: float = 1.0
    top_p: float = 1.0
    repetition_penalty: float = 1.0
    seed: int | None = None
    stop_token_ids: list = field(default_factory=list)
    output_kind: object = None
    thinking_token_budget: int | None = None


class FakeLLM:
    """Streams SCRIPT's tokens a few at a time, as DELTA outputs; records what it was given."""

    calls: list = []
    aborted: list = []
    tokenizer = None
    prompt_tokens = 10

    @classmethod
    def from_engine_args(cls, args):
        cls.args = args
        return cls()

    async def generate(self, prompt, params, request_id):
        FakeLLM.calls.append((prompt, params))
        ids = FakeLLM.tokenizer(SCRIPT, add_special_tokens=False)["input_ids"][:params.max_tokens]
        for k in range(0, len(ids), 4):
            piece = ids[k:k + 4]
            last = k + 4 >= len(ids)
            finish = ("length" if len(ids) == params.max_tokens else "stop") if last else None
            out = types.SimpleNamespace(token_ids=piece, text=FakeLLM.tokenizer.decode(piece), finish_reason=finish)
            yield types.SimpleNamespace(outputs=[out], finished=last, prompt_token_ids=[0] * FakeLLM.prompt_tokens)

    async def abort(self, request_id):
        FakeLLM.aborted.append(request_id)

    def shutdown(self):
        pass


@pytest.fixture
def fake_vllm(monkeypatch, tiny):
    vllm = types.ModuleType("vllm")
    vllm.AsyncEngineArgs = lambda **kw: types.SimpleNamespace(**kw)
    vllm.SamplingParams = SamplingParams
    sp = types.ModuleType("vllm.sampling_params")
    sp.RequestOutputKind = types.SimpleNamespace(DELTA="delta")
    al = types.ModuleType("vllm.v1.engine.async_llm")
    al.AsyncLLM = FakeLLM
    for name, mod in {"vllm": vllm, "vllm.sampling_params": sp, "vllm.v1": types.ModuleType("vllm.v1"),
                      "vllm.v1.engine": types.ModuleType("vllm.v1.engine"), "vllm.v1.engine.async_llm": al}.items():
        monkeypatch.setitem(sys.modules, name, mod)
    FakeLLM.calls, FakeLLM.aborted, FakeLLM.tokenizer, FakeLLM.prompt_tokens = [], [], tiny[1], 10
    return FakeLLM


@pytest.fixture
def hf_dir(tiny, tmp_path):
    return save_model(*tiny, tmp_path / "m")


def test_what_vllm_is_given_and_what_comes_back(fake_vllm, hf_dir, images):
    from r1v.serve.engines import VLLMEngine

    cfg = ServeConfig(max_prompt_tokens=50)
    engine = VLLMEngine(str(hf_dir), cfg, dtype="bf16", max_tiles=4)
    assert fake_vllm.args.dtype == "bfloat16" and fake_vllm.args.reasoning_parser == "deepseek_r1"
    assert fake_vllm.args.mm_processor_kwargs == {"max_dynamic_patch": 4}
    assert getattr(fake_vllm.args, "max_model_len", None) is None  # the prompt limit is not the context
    with running(build_app(engine, cfg, "m")) as url:
        c = openai.OpenAI(base_url=url + "/v1", api_key="none", max_retries=0)
        import base64

        data = "data:image/png;base64," + base64.b64encode(images[2].read_bytes()).decode()
        r = c.chat.completions.create(model="m", max_tokens=64, extra_body={"max_reasoning_tokens": 7},
                                      messages=[{"role": "user", "content": [
                                          {"type": "image_url", "image_url": {"url": data}},
                                          {"type": "text", "text": "How many?"}]}])
        msg = r.choices[0].message
        assert (msg.reasoning_content, msg.content) == ("Three red shapes.", "\\boxed{3}")
        n_reasoning = len(fake_vllm.tokenizer("Three red shapes.", add_special_tokens=False)["input_ids"])
        assert r.usage.completion_tokens_details.reasoning_tokens == n_reasoning
        assert r.usage.prompt_tokens == 10 and r.choices[0].finish_reason == "stop"

        prompt, params = fake_vllm.calls[-1]
        assert prompt["prompt"].count("<IMG_CONTEXT>") == 1 and len(prompt["multi_modal_data"]["image"]) == 1
        assert prompt["prompt"].endswith("<｜Assistant｜><think>\n")
        tok = fake_vllm.tokenizer  # vLLM tokenizes the text with the tokenizer's specials: one BOS in all
        assert tok(prompt["prompt"], add_special_tokens=True)["input_ids"].count(tok.bos_token_id) == 1
        assert params.thinking_token_budget == 8  # vLLM counts the "\n" after the prompt's <think>
        assert fake_vllm.tokenizer.eos_token_id in params.stop_token_ids and params.output_kind == "delta"

        off = c.chat.completions.create(model="m", max_tokens=64, messages=[{"role": "user", "content": "Hi"}],
                                        extra_body={"chat_template_kwargs": {"enable_thinking": False}})
        assert fake_vllm.calls[-1][0]["prompt"].endswith("<think>\n</think>\n\n")
        assert fake_vllm.calls[-1][1].thinking_token_budget is None and off.choices[0].message.reasoning_content is None

        fake_vllm.prompt_tokens = 51  # over --max-prompt-tokens once vLLM has counted the image tokens
        for stream in (False, True):
            with pytest.raises(openai.BadRequestError) as e:
                c.chat.completions.create(model="m", max_tokens=8, stream=stream,
                                          messages=[{"role": "user", "content": "Hi"}])
            assert "at most 50" in str(e.value)
        assert len(fake_vllm.aborted) == len(fake_vllm.calls)  # every request is released in vLLM too


def test_an_old_vllm_is_refused_with_one_line(fake_vllm, hf_dir, monkeypatch):
    from r1v.errors import R1VError
    from r1v.serve.engines import VLLMEngine

    @dataclass
    class Old:
        max_tokens: int = 16

    monkeypatch.setattr(sys.modules["vllm"], "SamplingParams", Old)
    with pytest.raises(R1VError, match="vLLM >= 0.20"):
        VLLMEngine(str(hf_dir), ServeConfig())
