#!/usr/bin/env python3
"""Reference numbers of the OFFICIAL ASAM code for two small stages (issue 16, D18 and D19):

  * eval_tuned.json: IoU and boundary IoU per mask of the official eval's tuned-decoder path
    (sam_continue_learning/main.py:664 F.interpolate(masks, scale_factor=4, 'bilinear'), then
    compute_iou / compute_boundary_iou :562-589, misc.mask_iou / misc.boundary_iou) for the
    logits and GT masks of tests/data/asam_ref/eval.safetensors (which make_asam_reference.py
    scored on the one-step --baseline path).
  * cn.safetensors: ControlNet training data (ControlNet/tutorial_dataset.py MyDataset) of
    tests/data/asam_ref/sa_1.png (target) and control_sa_1.png (source), and the latent of
    ldm's DiagonalGaussianDistribution.sample() scaled by 0.18215 (ldm/models/diffusion/
    ddpm.py:655-661) for fixed moments.

What is patched at run time, and why: imports main.py needs but this path never uses are stubs
(skimage, pycocotools, torchvision, matplotlib); tutorial_dataset.py hard-codes 512 in
cv2.resize: cv2.resize is wrapped to give SIZE (128, the tiny SD side) instead, nothing else;
torch.randn in DiagonalGaussianDistribution.sample returns the listed eps (stored), since
asam draws its own seeded normals. Stored at every 2nd row and column (the arrays are
(SIZE, SIZE, 3) float32).

Usage: build/venv/bin/python scripts/ref/make_asam_eval_cn_reference.py OFFICIAL_DIR OUT_DIR
  (venv: --system-site-packages over Debian's torch 1.13, opencv-python-headless==4.6.0.66)
"""
import json
import os
import sys
import types

import numpy as np
import torch

OFF = os.path.abspath(sys.argv[1])
OUT = os.path.abspath(sys.argv[2])
SIZE = 128
for name in ["skimage", "skimage.io", "pycocotools", "pycocotools.mask", "pycocotools.coco",
             "torchvision", "torchvision.transforms", "torchvision.transforms.functional",
             "matplotlib", "matplotlib.pyplot"]:
    sys.modules[name] = types.ModuleType(name)
sys.modules["skimage"].io = sys.modules["skimage.io"]
sys.modules["pycocotools"].mask = sys.modules["pycocotools.mask"]
sys.modules["pycocotools.coco"].COCO = None
sys.modules["torchvision"].transforms = sys.modules["torchvision.transforms"]
sys.modules["torchvision"].utils = None
sys.modules["torchvision.transforms"].functional = sys.modules["torchvision.transforms.functional"]
for f in ["normalize", "resize", "to_pil_image"]:
    setattr(sys.modules["torchvision.transforms.functional"], f, None)
sys.modules["matplotlib"].pyplot = sys.modules["matplotlib.pyplot"]
sys.path.insert(0, os.path.join(OFF, "sam_continue_learning"))
import torch.nn.functional as F  # noqa: E402


def load_st(path):  # safetensors reader (F32 / U8), without the package
    raw = open(path, "rb").read()
    n = int.from_bytes(raw[:8], "little")
    hdr = json.loads(raw[8:8 + n])
    out = {}
    for k, v in hdr.items():
        if k == "__metadata__":
            continue
        a, b = v["data_offsets"]
        dt = {"F32": np.float32, "U8": np.uint8}[v["dtype"]]
        out[k] = torch.from_numpy(np.frombuffer(raw[8 + n + a:8 + n + b], dtype=dt).reshape(v["shape"]).copy())
    return out


def save_st(ts, path):
    header, blobs, off = {}, [], 0
    for k in sorted(ts):
        a = ts[k].detach().to(torch.float32).contiguous().numpy().astype("<f4")
        header[k] = {"dtype": "F32", "shape": list(a.shape), "data_offsets": [off, off + a.nbytes]}
        blobs.append(a.tobytes())
        off += a.nbytes
    h = json.dumps(header, separators=(",", ":")).encode()
    h += b" " * ((8 - len(h) % 8) % 8)
    with open(path, "wb") as f:
        f.write(len(h).to_bytes(8, "little") + h + b"".join(blobs))


# ================================ D18: the tuned decoder's eval path ===========================
sys.argv = ["main.py"]
import main as official  # noqa: E402

ev = load_st(os.path.join(OUT, "eval.safetensors"))
masks = ev["logits"]                       # (3, 1, 256, 256) as a decoder's low-res output
labels_ori = ev["gt"].to(torch.float32)    # (3, 1, H, W) 0 / 255
# ref: main.py:664
masks = F.interpolate(masks, scale_factor=4, mode='bilinear', align_corners=False)
iou, iou_list = official.compute_iou(masks, labels_ori)                     # :666
biou, biou_list = official.compute_boundary_iou(masks, labels_ori)          # :667
json.dump({"iou": [float(v) for v in iou_list], "biou": [float(v) for v in biou_list],
           "official": "luckybird1994/ASAM@9e5280fb73397c9a4f763f37b222881aad14c889"},
          open(os.path.join(OUT, "eval_tuned.json"), "w"), indent=1)
print("tuned-decoder eval: iou", [float(v) for v in iou_list], "biou", [float(v) for v in biou_list])

# ================================ D19: ControlNet training data ===============================
import cv2  # noqa: E402

_resize = cv2.resize
cv2.resize = lambda img, dsize, *a, **k: _resize(img, (SIZE, SIZE) if tuple(dsize) == (512, 512) else dsize, *a, **k)
sys.path.insert(0, os.path.join(OFF, "ControlNet"))
from tutorial_dataset import MyDataset  # noqa: E402
from ldm.modules.distributions.distributions import DiagonalGaussianDistribution  # noqa: E402

jl = os.path.join(OUT, "cn_train.jsonl")
with open(jl, "w") as f:
    f.write(json.dumps({"source": "control_sa_1.png", "target": "sa_1.png", "prompt": "p"}) + "\n")
item = MyDataset(OUT, jl)[0]
os.remove(jl)
g = torch.Generator().manual_seed(11)
moments = torch.randn(1, 8, SIZE // 8, SIZE // 8, generator=g) * 2
moments[:, 4:] = moments[:, 4:] * 12 - 4  # logvar, partly beyond the [-30, 20] clamp
eps = torch.randn(1, 4, SIZE // 8, SIZE // 8, generator=g)
_randn = torch.randn
torch.randn = lambda *a, **k: eps.clone()
post = DiagonalGaussianDistribution(moments)
z = 0.18215 * post.sample()  # ddpm.py:657 sample(), :661 self.scale_factor * z (sd_v15 0.18215)
torch.randn = _randn
save_st({"jpg_s2": torch.from_numpy(item["jpg"][::2, ::2].copy()),
         "hint_s2": torch.from_numpy(item["hint"][::2, ::2].copy()),
         "moments": moments, "eps": eps, "z": z}, os.path.join(OUT, "cn.safetensors"))
print("controlnet data: jpg", item["jpg"].shape, "z", float(z.abs().max()))
