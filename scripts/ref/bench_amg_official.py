#!/usr/bin/env python3
"""Seconds per image of the OFFICIAL SamAutomaticMaskGenerator (default options) on a given
SAM ViT-B checkpoint and image: the peer of `asam bench amg` (scripts/bench_amg.sh runs the two
alternately). Prints one JSON line: {"seconds": [...], "masks": N, "threads": T}.

  PYTHONPATH=TORCHVISION_DIR /usr/bin/python3 scripts/ref/bench_amg_official.py \
      --sam-repo PATH/TO/segment-anything --checkpoint vit_b.pth --image IMG [--runs 1]
"""
import argparse
import json
import os
import sys
import time

import numpy as np
import torch


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--sam-repo", required=True)
    ap.add_argument("--checkpoint", required=True)
    ap.add_argument("--image", required=True)
    ap.add_argument("--runs", type=int, default=1)
    ap.add_argument("--points-per-side", type=int, default=32)
    args = ap.parse_args()
    sys.path.insert(0, args.sam_repo)
    from PIL import Image
    from segment_anything import SamAutomaticMaskGenerator, sam_model_registry

    torch.set_num_threads(int(os.environ.get("OMP_NUM_THREADS", "2")))
    sam = sam_model_registry["vit_b"](checkpoint=args.checkpoint)
    sam.eval()
    image = np.array(Image.open(args.image).convert("RGB"))
    gen = SamAutomaticMaskGenerator(sam, points_per_side=args.points_per_side)
    secs, n = [], 0
    for _ in range(args.runs):
        t = time.perf_counter()
        with torch.no_grad():
            n = len(gen.generate(image))
        secs.append(time.perf_counter() - t)
    print(json.dumps({"seconds": secs, "masks": n, "threads": torch.get_num_threads()}))


if __name__ == "__main__":
    main()
