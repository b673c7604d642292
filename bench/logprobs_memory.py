"""Peak memory of the GRPO / MPO loss head: per-token log-probs of sampled completions, forward and
backward, r1v's `token_logprobs` beside the plain float32 log-softmax.

    python bench/logprobs_memory.py [--group 8] [--tokens 512] [--vocab 65536] [--dtype bfloat16] [--rounds 5]

Each measurement runs in a fresh process, the two alternating (ABAB...), and reports the peak RSS
(VmHWM) above the moment the logits (the model's output, G x tokens x vocab, bf16 unless --dtype)
exist, with the time of the forward and backward. The plain way, `log_softmax(logits.float() / T)
.gather(...)`, holds float32 copies of the whole (G, C, V) logits; `token_logprobs` holds nothing that size beyond the logits and
their gradient. At R1V's scale (G = 8, 8K tokens, Qwen's 152K vocabulary: 20 GB of bf16 logits) each
float32 copy is 40 GB. Printed: each figure's median over the rounds, and the median ratio with
its range.
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
from pathlib import Path

CHILD = r"""
import resource, sys, time, torch
sys.path.insert(0, {root!r})
from r1v.train.grpo import token_logprobs
torch.set_num_threads(2)
G, C, V, mode, dtype = int(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3]), sys.argv[4], sys.argv[5]
def rss_kb():
    return int(open("/proc/self/statm").read().split()[1]) * resource.getpagesize() // 1024
torch.manual_seed(0)
logits = (torch.randn(G, C, V) * 2).to(getattr(torch, dtype)).requires_grad_()
tokens = torch.randint(0, V, (G, C))
adv = torch.randn(G, 1)
base = rss_kb()
t0 = time.perf_counter()
if mode == "plain":
    logp = torch.log_softmax(logits.float() / 0.9, -1).gather(-1, tokens[..., None])[..., 0]
else:
    logp = token_logprobs(logits, tokens, temperature=0.9)
(logp * adv).sum().backward()
seconds = time.perf_counter() - t0
# VmHWM, not ru_maxrss: the latter survives exec and would report the parent's peak.
hwm = int(next(l for l in open("/proc/self/status") if l.startswith("VmHWM")).split()[1])
print((hwm - base) / 1024, seconds)
"""


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--group", type=int, default=8, help="completions in one forward (G)")
    ap.add_argument("--tokens", type=int, default=512, help="completion length")
    ap.add_argument("--vocab", type=int, default=65536, help="vocabulary size (Qwen2.5's is 152,064)")
    ap.add_argument("--dtype", default="bfloat16", choices=("bfloat16", "float32"), help="the logits' dtype")
    ap.add_argument("--rounds", type=int, default=5, help="ABAB rounds (at least 5)")
    a = ap.parse_args()
    root = str(Path(__file__).resolve().parents[1])
    got = {"plain": [], "r1v": []}
    for _ in range(max(5, a.rounds)):
        for mode in ("plain", "r1v"):
            out = subprocess.run([sys.executable, "-c", CHILD.format(root=root), str(a.group), str(a.tokens),
                                  str(a.vocab), mode, a.dtype], capture_output=True, text=True, check=True)
            mb, s = map(float, out.stdout.split())
            got[mode].append((mb, s))
    logits_mb = a.group * a.tokens * a.vocab * (2 if a.dtype == "bfloat16" else 4) / 2**20
    print(f"logits: {a.group} x {a.tokens} x {a.vocab} {a.dtype} = {logits_mb:.0f} MB; {len(got['r1v'])} rounds, ABAB")
    for mode, name in (("plain", "plain float32 log_softmax"), ("r1v", "r1v token_logprobs")):
        print(f"{name:27}: peak {statistics.median(m for m, _ in got[mode]):7.0f} MB above the logits, "
              f"{statistics.median(s for _, s in got[mode]):6.2f} s forward + backward")
    for k, what in ((0, "peak memory"), (1, "time")):
        ratios = sorted(r[k] / p[k] for r, p in zip(got["r1v"], got["plain"]))
        print(f"r1v / plain, {what:11}: median {statistics.median(ratios):.2f} "
              f"(range {ratios[0]:.2f} to {ratios[-1]:.2f}; lower is better)")


if __name__ == "__main__":
    main()
