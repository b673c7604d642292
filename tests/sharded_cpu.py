"""`python -m r1v ...` under accelerate's FSDP2 or DeepSpeed ZeRO-3 on CPU processes (gloo), for the
sharded-engine tests.

    ACCELERATE_USE_CPU=true accelerate launch --use_fsdp --fsdp_version 2 --num_processes 2 ... \\
        tests/sharded_cpu.py recipe run R.yaml

With ACCELERATE_USE_CPU, accelerate makes every process a gloo CPU rank (MULTI_CPU) and then sets
`distributed_type = FSDP` (or DEEPSPEED) only for accelerator devices, so `--use_fsdp` and
`--use_deepspeed` silently become DDP. torch's FSDP2 (`fully_shard`) itself runs on CPU tensors over
gloo, and so does DeepSpeed with `DS_ACCELERATOR=cpu`. This shim turns the flag back on after
accelerate made its state (for DeepSpeed, selecting the plugin as accelerate does on a GPU), and
changes nothing else: the model is prepared by accelerate's own `fsdp2_prepare_model` /
`deepspeed.initialize`, saved by its `get_state_dict` / `save_state`, and r1v's code runs unchanged.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

from accelerate.state import AcceleratorState, PartialState
from accelerate.utils import DistributedType

_init = AcceleratorState.__init__
SWITCHED = "tests/sharded_cpu.py: on CPU processes:"  # then the engine's name, on stderr


def _sharded_on_cpu(self, *args, **kwargs):
    _init(self, *args, **kwargs)
    if self.distributed_type != DistributedType.MULTI_CPU:  # set already (a later Accelerator)
        return
    fsdp, deepspeed = kwargs.get("fsdp_plugin"), kwargs.get("deepspeed_plugin")
    if fsdp is not None:
        self.distributed_type = DistributedType.FSDP
        self.fsdp_plugin = fsdp
    elif deepspeed is not None:
        self.distributed_type = DistributedType.DEEPSPEED
        deepspeed.set_mixed_precision(self._mixed_precision)
        deepspeed.select(_from_accelerator_state=True)
        self.deepspeed_plugins = deepspeed
    else:
        return
    PartialState._shared_state["distributed_type"] = self.distributed_type
    print(f"{SWITCHED} {self.distributed_type.value}", file=sys.stderr)


if any(os.environ.get(f"ACCELERATE_USE_{k}", "false").lower() == "true" for k in ("FSDP", "DEEPSPEED")):
    AcceleratorState.__init__ = _sharded_on_cpu

ROOT = Path(__file__).resolve().parent.parent
FSDP = ["--use_fsdp", "--fsdp_version", "2", "--fsdp_auto_wrap_policy", "TRANSFORMER_BASED_WRAP",
        "--fsdp_transformer_layer_cls_to_wrap", "Qwen2DecoderLayer,InternVLVisionLayer",
        "--fsdp_state_dict_type", "SHARDED_STATE_DICT", "--fsdp_reshard_after_forward", "true"]
ZERO3 = ["--use_deepspeed", "--zero_stage", "3", "--zero3_init_flag", "false", "--zero3_save_16bit_model", "true",
         "--offload_param_device", "none", "--offload_optimizer_device", "none",
         "--gradient_accumulation_steps", "1", "--gradient_clipping", "1.0"]  # as recipes/accelerate/zero3.yaml
ZERO2 = ["--use_deepspeed", "--zero_stage", "2", "--offload_optimizer_device", "none",
         "--gradient_accumulation_steps", "1", "--gradient_clipping", "1.0"]  # as recipes/accelerate/zero2.yaml


def launch(engine: str = "ddp") -> tuple[list[str], dict]:
    """`accelerate launch` with two CPU processes under `engine` (ddp, fsdp, zero2 or zero3): the command up
    to r1v's own arguments, and the environment to run it in."""
    import socket

    with socket.socket() as s:  # a free port: a run still ending elsewhere may hold accelerate's default
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    env = {**os.environ, "ACCELERATE_USE_CPU": "true", "DS_ACCELERATOR": "cpu"}
    head = [sys.executable, "-m", "accelerate.commands.launch", "--num_machines", "1", "--mixed_precision", "no",
            "--dynamo_backend", "no", "--main_process_port", str(port)]
    if engine == "ddp":
        return [*head, "--config_file", str(ROOT / "recipes" / "accelerate" / "ddp-cpu.yaml"), "-m", "r1v"], env
    return [*head, "--num_processes", "2", *{"fsdp": FSDP, "zero2": ZERO2, "zero3": ZERO3}[engine], __file__], env

if __name__ == "__main__":
    from r1v.cli import main

    sys.exit(main(sys.argv[1:]))
