"""PyTorch side of `deno task gpu-check`: the ViT-B/16 vision tower training step at batch 32
(AdamW, float32) on CUDA, timed like tasks/_bench_webgpu.ts (best of N after a warm-up, each call
ending with a device synchronisation). Prints one JSON line; `{"skipped": reason}` without CUDA.
Usage: python3 tasks/gpu_check_torch.py [--reps N]
"""
import argparse
import json
import os
import sys
import time

import torch
import torch.nn.functional as F

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from bench_torch import VisionTransformer  # noqa: E402 (the reference architecture, condensed)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--reps", type=int, default=3)
    ap.add_argument("--batch", type=int, default=32)
    args = ap.parse_args()
    if not torch.cuda.is_available():
        print(json.dumps({"skipped": f"torch {torch.__version__} has no CUDA device"}))
        return
    dev = torch.device("cuda")
    torch.manual_seed(0)
    visual = VisionTransformer(224, 16, 768, 12, 12, 512).to(dev).train()
    opt = torch.optim.AdamW(visual.parameters(), lr=1e-5, weight_decay=0.1)
    n = args.batch
    x = torch.randn(n, 3, 224, 224, device=dev)
    target = F.normalize(torch.randn(n, 512, device=dev), dim=-1)
    labels = torch.arange(n, device=dev)

    def step():
        opt.zero_grad(set_to_none=True)
        f = F.normalize(visual(x), dim=-1)
        loss = F.cross_entropy(100 * f @ target.t(), labels)
        loss.backward()
        opt.step()
        loss.item()  # the read-back, as the webgpu side does
        torch.cuda.synchronize()

    step()
    best = float("inf")
    for _ in range(args.reps):
        t = time.perf_counter()
        step()
        best = min(best, time.perf_counter() - t)
    print(json.dumps({
        "device": torch.cuda.get_device_name(0),
        "torch": torch.__version__,
        "vitB16TrainStep32": best,
        "peakGpuMiB": torch.cuda.max_memory_allocated() / 2**20,
    }))


if __name__ == "__main__":
    main()
