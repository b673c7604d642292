"""The server's settings: where it listens, who may call it, what one request may ask for, and how
much work it takes on. Every value is checked here, before a model is loaded."""

from __future__ import annotations

import dataclasses
import ipaddress
from dataclasses import dataclass

from r1v.config import setting
from r1v.errors import R1VError


@dataclass
class ServeConfig:
    host: str = setting("127.0.0.1", "address to listen on; loopback by default, 0.0.0.0 for every interface")
    port: int = setting(8000, "port to listen on (0: any free port, printed at start)")
    api_key: str | None = setting(None, "clients must send `Authorization: Bearer KEY` (default: $R1V_API_KEY; "
                                        "none: no key asked)")
    served_model_name: str | None = setting(None, "the model's name in /v1/models (default: the folder's name)")
    engine: str = setting("auto", "auto (vLLM when installed and a GPU is there, else transformers), vllm, hf")
    max_batch: int = setting(8, "most requests generated together (transformers engine)")
    batch_wait_ms: float = setting(20.0, "how long a batch about to start waits for more requests (longer, "
                                         "up to 10x, while some are still being read; transformers engine)")
    max_queue: int = setting(64, "most requests admitted at once, running or waiting; past it the server "
                                 "answers 429 with Retry-After")
    max_images: int = setting(8, "most images in one request (all turns together)")
    max_image_pixels: int = setting(4096 * 4096, "most pixels in one image (width x height); larger ones get 400")
    max_prompt_tokens: int | None = setting(None, "most prompt tokens, images included (default: the model's "
                                                  "context less one)")
    max_tokens: int = setting(16384, "most tokens one request may ask to generate (`max_tokens`)")
    max_request_mb: float = setting(64.0, "largest request body in MB; larger gets 413")
    allow_remote_images: bool = setting(False, "fetch http(s) image URLs in requests (off: data URLs only; "
                                               "a local path is never read)")
    allow_private_image_hosts: bool = setting(False, "with --allow-remote-images, also fetch from private, "
                                                     "loopback and link-local addresses (your own network)")
    remote_image_timeout: float = setting(10.0, "seconds to fetch one remote image, in all")
    request_timeout: float = setting(60.0, "seconds a request body may take to arrive; slower gets 408")

    def __post_init__(self) -> None:
        def positive(name: str) -> None:
            if getattr(self, name) is not None and getattr(self, name) <= 0:
                raise R1VError(f"--{name.replace('_', '-')} must be positive, got {getattr(self, name)}")

        for name in ("max_batch", "max_queue", "max_images", "max_image_pixels", "max_prompt_tokens",
                     "max_tokens", "max_request_mb", "remote_image_timeout", "request_timeout"):
            positive(name)
        if self.batch_wait_ms < 0:
            raise R1VError(f"--batch-wait-ms must be 0 or more, got {self.batch_wait_ms}")
        if not 0 <= self.port <= 65535:
            raise R1VError(f"--port must be 0..65535, got {self.port}")
        if self.engine not in ("auto", "vllm", "hf"):
            raise R1VError(f"--engine must be auto, vllm or hf, got {self.engine!r}")
        if self.api_key is not None and not self.api_key.strip():
            raise R1VError("--api-key is empty; give a key, or leave it out to serve without one")

    @property
    def loopback(self) -> bool:
        if self.host == "localhost":
            return True
        try:
            return ipaddress.ip_address(self.host).is_loopback
        except ValueError:
            return False


def fields() -> list[dataclasses.Field]:
    return list(dataclasses.fields(ServeConfig))
