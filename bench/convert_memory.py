"""Peak memory of `r1v convert` (streaming, shard by shard) beside loading the whole model.

    python bench/convert_memory.py [--hidden 768] [--layers 8]

Writes an official-layout checkpoint of a mid-size random model (a few hundred MB), then in
fresh processes measures the peak RSS above the import baseline of
* r1v's streaming conversion to the transformers layout, writing 32 MB shards;
* the naive route: every tensor in memory at once, converted, then saved.
A 38B model (~76 GB in bf16) converts only if the first stays near one shard, not one model.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

CHILD = r"""
import resource, sys, torch
sys.path.insert(0, {root!r})
from r1v.model import checkpoint as C
from safetensors.torch import save_file
def rss_kb():
    return int(open("/proc/self/statm").read().split()[1]) * resource.getpagesize() // 1024
import transformers.models.internvl.modeling_internvl, transformers.models.qwen2.modeling_qwen2  # noqa
from r1v.model import tokenizer, processor  # noqa: F401
base = rss_kb()  # after imports: the peak below counts only what the conversion adds
src, dst, mode = sys.argv[1], sys.argv[2], sys.argv[3]
if mode == "stream":
    C.convert(src, dst, to="hf", max_shard_size="32MB", progress=False)
else:
    s = C.inspect(src)
    mapper = C.TensorMapper("hf")
    state = {{}}
    for k, t in C.iter_tensors(s.weight_files):
        state.update(mapper.feed(k, t))
    save_file(state, dst)
# VmHWM, not ru_maxrss: the latter survives exec and would report the parent's peak.
hwm = int(next(l for l in open("/proc/self/status") if l.startswith("VmHWM")).split()[1])
print((hwm - base) / 1024)
"""


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--hidden", type=int, default=1024)
    ap.add_argument("--layers", type=int, default=12)
    a = ap.parse_args()
    from r1v.model.builder import build_r1v, tiny_language_config, tiny_vision_config
    from r1v.model.checkpoint import save_model
    from r1v.model.tokenizer import tiny_tokenizer

    tok = tiny_tokenizer()
    lm = tiny_language_config(32000, hidden_size=a.hidden, intermediate_size=4 * a.hidden,
                              num_hidden_layers=a.layers, num_attention_heads=16, num_key_value_heads=4)
    model = build_r1v(vision=tiny_vision_config(hidden_size=256, num_hidden_layers=4, intermediate_size=1024,
                                                num_attention_heads=4), language=lm, tokenizer=tok)
    size_mb = sum(p.numel() * p.element_size() for p in model.parameters()) / 2**20
    work = Path(tempfile.mkdtemp())
    src = save_model(model, tok, work / "official", layout="skywork", max_shard_size="64MB")
    del model
    root = str(Path(__file__).resolve().parents[1])
    peaks = {}
    for mode in ("stream", "naive"):
        out = subprocess.run([sys.executable, "-c", CHILD.format(root=root), str(src),
                              str(work / f"out-{mode}"), mode], capture_output=True, text=True, check=True)
        peaks[mode] = float(out.stdout.strip().splitlines()[-1])
    print(f"model: {size_mb:.0f} MB of fp32 weights")
    print(f"naive (all tensors in memory)   : {peaks['naive']:7.0f} MB peak above baseline")
    print(f"r1v convert (streaming, 32 MB)  : {peaks['stream']:7.0f} MB peak above baseline")
    print(f"ratio streaming / naive         : {peaks['stream'] / peaks['naive']:7.2f}  (lower is better)")


if __name__ == "__main__":
    main()
