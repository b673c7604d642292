"""`python -m r1v ...` under accelerate's FSDP2 on CPU processes (gloo), for the sharded-engine tests.

    ACCELERATE_USE_CPU=true accelerate launch --use_fsdp --fsdp_version 2 --num_processes 2 ... \\
        tests/sharded_cpu.py recipe run R.yaml

With ACCELERATE_USE_CPU, accelerate makes every process a gloo CPU rank (MULTI_CPU) and then sets
`distributed_type = FSDP` only for accelerator devices, so `--use_fsdp` silently becomes DDP. torch's
FSDP2 (`fully_shard`) itself runs on CPU tensors over gloo. This shim turns the FSDP flag back on
after accelerate made its state, and changes nothing else: the model is prepared by accelerate's own
`fsdp2_prepare_model`, saved by its `get_state_dict` / `save_state`, and r1v's code runs unchanged.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

from accelerate.state import AcceleratorState, PartialState
from accelerate.utils import DistributedType

_init = AcceleratorState.__init__


def _fsdp_on_cpu(self, *args, **kwargs):
    _init(self, *args, **kwargs)
    plugin = kwargs.get("fsdp_plugin")
    if plugin is not None and self.distributed_type == DistributedType.MULTI_CPU:
        self.distributed_type = DistributedType.FSDP
        self.fsdp_plugin = plugin
        PartialState._shared_state["distributed_type"] = DistributedType.FSDP


if os.environ.get("ACCELERATE_USE_FSDP", "false").lower() == "true":
    AcceleratorState.__init__ = _fsdp_on_cpu

ROOT = Path(__file__).resolve().parent.parent
FSDP = ["--use_fsdp", "--fsdp_version", "2", "--fsdp_auto_wrap_policy", "TRANSFORMER_BASED_WRAP",
        "--fsdp_transformer_layer_cls_to_wrap", "Qwen2DecoderLayer,InternVLVisionLayer",
        "--fsdp_state_dict_type", "SHARDED_STATE_DICT", "--fsdp_reshard_after_forward", "true"]


def launch(engine: str = "ddp") -> tuple[list[str], dict]:
    """`accelerate launch` with two CPU processes under `engine` (ddp or fsdp): the command up to
    r1v's own arguments, and the environment to run it in."""
    import socket

    with socket.socket() as s:  # a free port: a run still ending elsewhere may hold accelerate's default
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    env = {**os.environ, "ACCELERATE_USE_CPU": "true"}
    head = [sys.executable, "-m", "accelerate.commands.launch", "--num_machines", "1", "--mixed_precision", "no",
            "--dynamo_backend", "no", "--main_process_port", str(port)]
    if engine == "ddp":
        return [*head, "--config_file", str(ROOT / "recipes" / "accelerate" / "ddp-cpu.yaml"), "-m", "r1v"], env
    return [*head, "--num_processes", "2", *FSDP, __file__], env

if __name__ == "__main__":
    from r1v.cli import main

    sys.exit(main(sys.argv[1:]))
