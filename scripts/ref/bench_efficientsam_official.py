#!/usr/bin/env python3
"""Time the OFFICIAL EfficientSAM image encoder (yformer/EfficientSAM, random weights of the
official ViT-Ti / ViT-S shapes) on one 1024x1024 input, as `asam bench efficientsam` times
ours; scripts/bench_efficientsam_vs_official.sh runs the two alternately.

usage: /usr/bin/python3 scripts/ref/bench_efficientsam_official.py OFFICIAL_DIR vit_t|vit_s
       [--iters N] [--threads T]
OFFICIAL_DIR holds the official package efficient_sam/ (not part of asam).
Prints one line: 'official <variant> encoder forward: S s (best of N), C CPU-s, T threads'."""
import argparse
import sys
import time

import torch

ap = argparse.ArgumentParser()
ap.add_argument("official")
ap.add_argument("variant", choices=["vit_t", "vit_s"])
ap.add_argument("--iters", type=int, default=1)
ap.add_argument("--threads", type=int, default=0)
a = ap.parse_args()
sys.path.insert(0, a.official)
from efficient_sam.efficient_sam import build_efficient_sam  # noqa: E402

if a.threads > 0:
    torch.set_num_threads(a.threads)
C, heads = {"vit_t": (192, 3), "vit_s": (384, 6)}[a.variant]
torch.manual_seed(0)
model = build_efficient_sam(C, heads).eval()
x = torch.randn(1, 3, 1024, 1024)
best, best_cpu = float("inf"), 0.0
with torch.no_grad():
    for _ in range(a.iters):
        t0, c0 = time.perf_counter(), time.process_time()
        model.image_encoder(x)
        t, c = time.perf_counter() - t0, time.process_time() - c0
        if t < best:
            best, best_cpu = t, c
print(f"official {a.variant} encoder forward: {best:.3f} s (best of {a.iters}), "
      f"{best_cpu:.2f} CPU-s, {torch.get_num_threads()} threads, torch {torch.__version__}")
