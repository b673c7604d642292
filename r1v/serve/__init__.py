"""`r1v serve`: an R1V model behind an OpenAI-compatible API and a chat page.

    r1v serve --model runs/tiny/grpo            # http://127.0.0.1:8000/ (page), /v1/chat/completions

* `config.py`   the server's settings (limits, queue, key), checked before the model loads;
* `protocol.py` the OpenAI chat-completions protocol: requests checked and turned into prompts,
  replies and stream chunks built (pure, no torch, no HTTP);
* `engines.py`  generation: vLLM's async engine when vLLM is installed and a GPU is there,
  else transformers' `generate` with requests batched together;
* `app.py`      the HTTP layer (FastAPI on uvicorn, as `transformers serve` and vLLM use);
* `page.html`   the chat page served at `/`;
* `cli.py`      the command line.
"""
