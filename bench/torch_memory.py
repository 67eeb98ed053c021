#!/usr/bin/env python3
"""Peak memory of PyTorch inference, measured the way `asam bench sd` / `asam bench sam` measure
theirs, for the memory comparison of issue 14.

One model and precision per process (so one run's pages never count in another's):
  unet: SD 1.5 UNet (diffusers UNet2DConditionModel, SD 1.5 config, random weights), latent
        --size, batch 1, timestep 501, a random (1, 77, 768) text context;
  sam:  SAM ViT-B image encoder (segment_anything's ImageEncoderViT) on a 1024x1024 input.
Precisions: fp32; bf16-autocast (fp32 weights, torch.autocast("cpu", bfloat16), as a user
turns bf16 on without touching the model); bf16-weights (model.to(torch.bfloat16)).
Under torch.no_grad(), after one warm-up forward. Printed, in GB:
  weights   - RSS once the model is built (Python + torch + the weights);
  forward   - peak RSS during the measured forward (VmHWM reset through
              /proc/self/clear_refs just before it, as asam's benchmarks do);
  build     - peak RSS before the measured forward (building the model, the conversion to
              bf16, the warm-up forward); the whole process's peak is the larger of the two.

usage: PYTHONPATH=<diffusers, segment_anything> /usr/bin/python3 bench/torch_memory.py
           [--model unet|sam] [--precision fp32|bf16-autocast|bf16-weights] [--threads 1]
           [--size 64]
Without --model / --precision it runs every combination, each in its own process.
"""
import argparse
import contextlib
import json
import subprocess
import sys


def rss_gb(field):
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(field + ":"):
                return int(line.split()[1]) / 1048576.0
    return 0.0


def reset_peak():
    with open("/proc/self/clear_refs", "w") as f:
        f.write("5")


def worker(model, precision, size, threads):
    import torch
    torch.manual_seed(0)
    torch.set_num_threads(threads)
    if model == "sam":
        import importlib.util
        import types
        from functools import partial
        # Load segment_anything's modules without its package __init__ (torchvision imports).
        spec = importlib.util.find_spec("segment_anything")
        pkg = types.ModuleType("segment_anything")
        pkg.__path__ = list(spec.submodule_search_locations)
        sys.modules.setdefault("segment_anything", pkg)
        from segment_anything.modeling.image_encoder import ImageEncoderViT
        net = ImageEncoderViT(depth=12, embed_dim=768, img_size=1024, mlp_ratio=4,
                              norm_layer=partial(torch.nn.LayerNorm, eps=1e-6), num_heads=12,
                              patch_size=16, qkv_bias=True, use_rel_pos=True,
                              global_attn_indexes=[2, 5, 8, 11], window_size=14, out_chans=256)
        args = (torch.randn(1, 3, 1024, 1024),)
    else:
        from diffusers import UNet2DConditionModel
        net = UNet2DConditionModel(
            sample_size=64, in_channels=4, out_channels=4, layers_per_block=2,
            block_out_channels=(320, 640, 1280, 1280), cross_attention_dim=768,
            attention_head_dim=8,
            down_block_types=("CrossAttnDownBlock2D",) * 3 + ("DownBlock2D",),
            up_block_types=("UpBlock2D",) + ("CrossAttnUpBlock2D",) * 3)
        args = (torch.randn(1, 4, size, size), torch.tensor([501]), torch.randn(1, 77, 768))
    net = net.eval()
    if precision == "bf16-weights":
        net = net.to(torch.bfloat16)
        args = tuple(a.to(torch.bfloat16) if a.is_floating_point() else a for a in args)
    for p in net.parameters():
        p.requires_grad_(False)
    n_params = sum(p.numel() for p in net.parameters())
    cast = (torch.autocast("cpu", dtype=torch.bfloat16) if precision == "bf16-autocast"
            else contextlib.nullcontext())
    weights = rss_gb("VmRSS")
    with torch.no_grad(), cast:
        net(*args)  # warm-up, as asam's cold call is not the one reported
        build = rss_gb("VmHWM")  # clear_refs resets this (and ru_maxrss): read it first
        reset_peak()
        net(*args)
        forward = rss_gb("VmHWM")
    return {"torch": torch.__version__, "model": model, "precision": precision,
            "params_M": n_params / 1e6, "threads": threads, "weights_gb": weights,
            "forward_peak_gb": forward, "build_peak_gb": build}


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--model", choices=["unet", "sam"])
    ap.add_argument("--precision", choices=["fp32", "bf16-autocast", "bf16-weights"])
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--size", type=int, default=64)
    a = ap.parse_args()
    if a.model and a.precision:
        print(json.dumps(worker(a.model, a.precision, a.size, a.threads)))
        return 0
    print("(GB here: GiB, as /proc reports kB / 1048576)")
    for model in [a.model] if a.model else ["unet", "sam"]:
        for prec in [a.precision] if a.precision else ["fp32", "bf16-autocast", "bf16-weights"]:
            p = subprocess.run([sys.executable, __file__, "--model", model, "--precision", prec,
                                "--threads", str(a.threads), "--size", str(a.size)],
                               capture_output=True, text=True)
            if p.returncode:
                print(f"{model} {prec}: failed: {p.stderr.strip()[-300:]}")
                continue
            r = json.loads(p.stdout.strip().splitlines()[-1])
            print(f"torch {r['torch']} {model:4s} {prec:13s} {r['params_M']:6.1f}M params: "
                  f"weights {r['weights_gb']:.2f} GB, forward peak {r['forward_peak_gb']:.2f} "
                  f"GB, build + warm-up peak {r['build_peak_gb']:.2f} GB", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
