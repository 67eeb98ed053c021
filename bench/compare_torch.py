#!/usr/bin/env python3
"""Side-by-side timings of asam and PyTorch 2 on the same machine, in one invocation.

For each precision (fp32, bf16) and each round, the asam benchmark and the PyTorch one run one
after the other (alternating, each in its own process), so a loaded machine slows both alike and
the ratio stays meaningful even when the seconds do not. Workloads, with random weights at the
real model shapes:
  SAM ViT-B image encoder at 1024: forward, backward of mean(y^2) (asam: checkpointed blocks)
  SD 1.5 UNet (latent --size, batch 1): forward, backward to x and the text context (asam:
    --ckpt-level, default 0 = every activation kept, as PyTorch keeps them)
  ControlNet v1.1 branch + UNet forward
  VAE decode (latent -> 8x image)
PyTorch's SAM encoder backward keeps every 12 x 4096 x 4096 attention map (~10 GB at fp32), so it
runs only with ASAM_CMP_SAM_BACKWARD=1 set (a shared machine may not have the memory).
PyTorch side: segment_anything's ImageEncoderViT and diffusers' UNet2DConditionModel,
ControlNetModel, AutoencoderKL with the SD 1.5 configs; bf16 = weights and inputs in bf16
(model.to(torch.bfloat16)), as a PyTorch user turns bf16 on for CPU inference.

usage: bench/compare_torch.py --asam build/asam --python build/venv/bin/python
          [--rounds 1] [--iters 3] [--size 64] [--threads 2] [--only sam,sd]
          [--precisions fp32,bf16] [--ckpt-level 0]
Each piece is warmed up once, then run --iters times on both sides; the best time is reported
(a shared host's noise only ever slows a run down).
"""
import argparse
import json
import os
import re
import resource
import subprocess
import sys
import time


# ---- PyTorch worker (runs in its own process) ----------------------------------------------

def torch_worker(kind, precision, size, threads, iters):
    import torch
    torch.manual_seed(0)
    torch.set_num_threads(threads)
    dt = torch.bfloat16 if precision == "bf16" else torch.float32
    out = {"torch": torch.__version__}

    def timed(fn):  # the best of `iters` calls, as asam reports the best of its warm runs
        best = None
        for _ in range(iters):
            t0 = time.perf_counter()
            r = fn()
            dt = time.perf_counter() - t0
            best = dt if best is None or dt < best else best
        return r, best

    def rss():
        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1e6  # KB -> GB

    if kind == "sam":
        from functools import partial
        import importlib.util
        import types
        # segment_anything's package __init__ imports torchvision (for the predictor's image
        # transforms and the mask generator), which the encoder does not need: load the
        # package's modules without running that __init__.
        spec = importlib.util.find_spec("segment_anything")
        pkg = types.ModuleType("segment_anything")
        pkg.__path__ = list(spec.submodule_search_locations)
        sys.modules.setdefault("segment_anything", pkg)
        from segment_anything.modeling.image_encoder import ImageEncoderViT
        enc = ImageEncoderViT(depth=12, embed_dim=768, img_size=1024, mlp_ratio=4,
                              norm_layer=partial(torch.nn.LayerNorm, eps=1e-6), num_heads=12,
                              patch_size=16, qkv_bias=True, use_rel_pos=True,
                              global_attn_indexes=[2, 5, 8, 11], window_size=14, out_chans=256)
        enc = enc.to(dt).eval()
        for p in enc.parameters():
            p.requires_grad_(False)
        x = torch.randn(1, 3, 1024, 1024).to(dt)
        with torch.no_grad():
            _, out["SAM encoder forward"] = timed(lambda: enc(x))
        out["SAM encoder forward rss"] = rss()
        if not os.environ.get("ASAM_CMP_SAM_BACKWARD"):
            return out  # its global-attention activations need ~10 GB: opt in
        def sam_backward():  # a fresh graph for each timed backward
            xg = x.clone().requires_grad_(True)
            loss = (enc(xg).float() ** 2).mean()
            t0 = time.perf_counter()
            loss.backward()
            return time.perf_counter() - t0
        out["SAM encoder backward"] = min(sam_backward() for _ in range(iters))
        out["SAM encoder backward rss"] = rss()
        return out

    from diffusers import AutoencoderKL, ControlNetModel, UNet2DConditionModel
    unet = UNet2DConditionModel(
        sample_size=64, in_channels=4, out_channels=4, layers_per_block=2,
        block_out_channels=(320, 640, 1280, 1280), cross_attention_dim=768,
        attention_head_dim=8,
        down_block_types=("CrossAttnDownBlock2D",) * 3 + ("DownBlock2D",),
        up_block_types=("UpBlock2D",) + ("CrossAttnUpBlock2D",) * 3).to(dt).eval()
    for p in unet.parameters():
        p.requires_grad_(False)
    x = torch.randn(1, 4, size, size).to(dt)
    ctx = torch.randn(1, 77, 768).to(dt)
    t = torch.tensor([501])
    with torch.no_grad():
        unet(x, t, ctx)  # warm-up, as asam's first (cold) call is not the one reported
        _, out["UNet forward"] = timed(lambda: unet(x, t, ctx))
    out["UNet forward rss"] = rss()
    W = torch.randn(1, 4, size, size)

    def unet_backward():  # a fresh graph for each timed backward
        xg, cg = x.clone().requires_grad_(True), ctx.clone().requires_grad_(True)
        loss = (unet(xg, t, cg).sample.float() * W).sum()
        t0 = time.perf_counter()
        loss.backward()
        return time.perf_counter() - t0
    out["UNet backward"] = min(unet_backward() for _ in range(iters))
    cn = ControlNetModel.from_unet(unet).to(dt).eval()
    hint = torch.rand(1, 3, 8 * size, 8 * size).to(dt)

    def control():
        d, m = cn(x, t, ctx, controlnet_cond=hint, return_dict=False)
        return unet(x, t, ctx, down_block_additional_residuals=d,
                    mid_block_additional_residual=m)
    with torch.no_grad():
        control()  # warm-up, as asam reports its second (warm) call
        _, out["ControlNet + UNet forward"] = timed(control)
    del cn
    vae = AutoencoderKL(
        in_channels=3, out_channels=3, latent_channels=4, layers_per_block=2,
        block_out_channels=(128, 256, 512, 512),
        down_block_types=("DownEncoderBlock2D",) * 4,
        up_block_types=("UpDecoderBlock2D",) * 4).to(dt).eval()
    z = torch.randn(1, 4, size, size).to(dt)
    with torch.no_grad():
        vae.decode(z)  # warm-up, as asam reports its second (warm) decode
        _, out["VAE decode"] = timed(lambda: vae.decode(z))
    out["peak rss"] = rss()
    return out


# ---- asam side ------------------------------------------------------------------------------

def run_asam(asam, kind, precision, size, threads, sd_dir, ckpt_level, iters):
    cmd = [asam, "--threads", str(threads), "--precision", precision, "bench"]
    if kind == "sam":
        cmd += ["sam", "--iters", str(iters), "--prompts", "1"]
    else:
        cmd += ["sd", "--dir", sd_dir, "--size", str(size), "--skip", "text,pipeline,diffusers",
                "--ckpt-level", str(ckpt_level), "--iters", str(iters)]
    p = subprocess.run(cmd, capture_output=True, text=True)
    if p.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd)} failed: {p.stderr.strip()[-500:]}")
    out = {}
    for line in p.stdout.splitlines():
        m = re.match(r"encoder (forward|backward)\s*:\s*([\d.]+) s.*peak RSS ([\d.]+) GB", line)
        if m:
            out[f"SAM encoder {m.group(1)}"] = float(m.group(2))
            out[f"SAM encoder {m.group(1)} rss"] = float(m.group(3))
        m = re.match(r"(UNet forward|UNet backward \(dx, dcontext\)|ControlNet \+ UNet forward|"
                     r"VAE decode [\d>\- ]+?)\s+([\d.]+) s\s+[\d.]+ GFLOP/s\s+([\d.]+) GB", line)
        if m:
            name = m.group(1)
            name = "UNet backward" if name.startswith("UNet backward") else name
            name = "VAE decode" if name.startswith("VAE decode") else name
            out[name] = float(m.group(2))
            out[name + " rss"] = float(m.group(3))
        if line.startswith("overall peak RSS"):
            out["peak rss"] = float(re.findall(r"([\d.]+) GB", line)[0])
    return out


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--asam", default="build/asam")
    ap.add_argument("--python", default=sys.executable, help="a Python with torch 2")
    ap.add_argument("--rounds", type=int, default=1)
    ap.add_argument("--iters", type=int, default=3,
                    help="warm runs of each piece on both sides; the best is reported")
    ap.add_argument("--size", type=int, default=64, help="SD latent side")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--only", default="sam,sd")
    ap.add_argument("--precisions", default="fp32,bf16")
    ap.add_argument("--sd-dir", default="/tmp/asam_sd15_synth")
    ap.add_argument("--json", help="write every measurement here")
    ap.add_argument("--ckpt-level", type=int, default=0,
                    help="asam's UNet gradient checkpointing in the backward row (0: keep every "
                         "activation, as PyTorch does; 1: re-run each block, less memory)")
    ap.add_argument("--torch-worker", nargs=2, metavar=("KIND", "PRECISION"),
                    help=argparse.SUPPRESS)
    a = ap.parse_args()
    if a.torch_worker:
        print(json.dumps(torch_worker(a.torch_worker[0], a.torch_worker[1], a.size, a.threads,
                                      a.iters)))
        return 0
    flags = open("/proc/cpuinfo").read().split("flags", 1)[1].split("\n", 1)[0]
    have = [f for f in ("avx512f", "avx512_bf16", "amx_tile", "amx_bf16") if f" {f}" in flags]
    print(f"CPU flags of note: {' '.join(have)}; load average {os.getloadavg()[0]:.1f} "
          f"on {os.cpu_count()} CPUs; {a.threads} threads each")
    rows = []
    for kind in a.only.split(","):
        for prec in a.precisions.split(","):
            for r in range(a.rounds):
                t0 = time.time()
                mine = run_asam(a.asam, kind, prec, a.size, a.threads, a.sd_dir, a.ckpt_level,
                                a.iters)
                p = subprocess.run([a.python, __file__, "--torch-worker", kind, prec,
                                    "--size", str(a.size), "--threads", str(a.threads),
                                    "--iters", str(a.iters)],
                                   capture_output=True, text=True)
                if p.returncode != 0:
                    print(f"torch {kind} {prec} failed: {p.stderr.strip()[-400:]}")
                    theirs = {}
                else:
                    theirs = json.loads(p.stdout.strip().splitlines()[-1])
                for k, v in mine.items():
                    if k.endswith("rss") or k == "peak rss":
                        continue
                    rows.append({"work": k, "precision": prec, "round": r, "asam_s": v,
                                 "torch_s": theirs.get(k), "asam_rss": mine.get(k + " rss"),
                                 "torch_rss": theirs.get(k + " rss", theirs.get("peak rss")),
                                 "torch": theirs.get("torch")})
                print(f"[{kind} {prec} round {r}: {time.time() - t0:.0f} s, load "
                      f"{os.getloadavg()[0]:.1f}]", flush=True)
    print(f"\n| work | precision | asam s | PyTorch {rows[0]['torch'] if rows else ''} s "
          f"| speed-up (torch / asam) | asam peak RSS GB | torch peak RSS GB |")
    print("| --- | --- | --- | --- | --- | --- | --- |")
    for r in rows:
        t, a_s = r["torch_s"], r["asam_s"]
        torch_s = f"{t:.2f}" if t else "not run"
        ratio = f"{t / a_s:.2f}x" if t else "-"
        t_rss = f"{r['torch_rss']:.2f}" if t and r["torch_rss"] else "-"
        a_rss = f"{r['asam_rss']:.2f}" if r["asam_rss"] else "-"
        print(f"| {r['work']} | {r['precision']} | {a_s:.2f} | {torch_s} | {ratio} | {a_rss} | "
              f"{t_rss} |")
    if a.json:
        with open(a.json, "w") as f:
            json.dump(rows, f, indent=1)
    return 0


if __name__ == "__main__":
    sys.exit(main())
