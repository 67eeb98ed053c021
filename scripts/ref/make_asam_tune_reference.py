#!/usr/bin/env python3
"""Three token-tuning Adam steps made by the OFFICIAL ASAM training code (issue 16).

Runs luckybird1994/ASAM @ 9e5280f sam_continue_learning (utils/dataloader_sam.py SamDataset,
utils/dataloader.py RandomHFlip + LargeScaleJitter, main.py MaskDecoder_Tuning, utils/misc.py
masks_to_boxes / masks_sample_points / masks_noise, utils/loss_mask.py loss_masks) on the tiny
fixture SAM (../shared/fixtures/sam_tiny) and writes tests/data/asam_ref/tune/ (the data set in
the official layout: adv/sa_N.jpg 128x128 "adversarial" images, gt/sa_N/segmentation_j.png masks
at the original size) and tests/data/asam_ref/tune.{json,safetensors}.

Plain /usr/bin/python3 (Debian torch 1.13, numpy, PIL); no venv needed.

Nothing of the official arithmetic is changed. What is patched at run time, and why:
  * CUDA: Tensor.cuda returns its object (CPU run); DDP is absent (one rank: a rank batch of
    K = 2 images x 4 masks per step, main.py:300 uses 4 images, 8 GPUs).
  * imports the code never uses on this path (skimage, pycocotools, torchvision, cv2,
    matplotlib) are stub modules; skimage.io.imread, the only one called
    (dataloader_sam.py:75, :87), is PIL: np.array(Image.open(path)) (imageio's PIL plugin).
  * main.py:96 MaskDecoder_Tuning loads ../ckpt/sam_vit_b_maskdecoder.pth: torch.load of that
    name returns the tiny SAM's mask_decoder weights (same decoder shape as ViT-B's).
  * main.py:426 the frozen SAM is the tiny fixture SAM built by segment_anything_training.
  * main.py's train loop is a function body (main.py:442-516), not importable in pieces: its
    lines for one step are repeated below, each with its official line.
  * randomness (torch / numpy / random draws cannot be reproduced in C) is SCRIPTED, and every
    draw is written to tune.json / tune.safetensors so that asam's test injects the same values:
      - random.random (RandomHFlip, dataloader.py:180) and torch.rand(1) (LSJ scale,
        dataloader.py:254) return listed values; np.random.randint (LSJ crop, :264-265) returns
        a listed fraction of its range; random.choice (main.py:471) returns a listed prompt kind
        and asserts it is one of the official input_keys (so the D8 rule is the official one);
      - torch.randperm (masks_sample_points, misc.py:486) is seeded torch; the 10 indices it
        picks per mask are recorded;
      - torch.randn in masks_noise (misc.py:510) and torch.rand in the point-sampled loss
        (loss_mask.py:60, :76) return counter-based values asam computes the same way:
        u24(key, i) = (mix64(key + (i + 1) * 0x9E3779B97F4A7C15) >> 40) / 2^24 (splitmix64's
        output function, exact in float32), normal = sum of 12 u24 - 6 (Irwin-Hall, exact in
        double, rounded to float32); key = mix64(step << 40 | which << 32 | mask) with which 1 =
        loss candidates, 2 = loss random share, 3 = mask noise, mask = the mask's index in the
        step's batch.
Usage: /usr/bin/python3 scripts/ref/make_asam_tune_reference.py OFFICIAL_DIR OUT_DIR
"""
import json
import os
import random
import sys
import types

import numpy as np
import torch

OFF = os.path.abspath(sys.argv[1])
OUT = os.path.abspath(sys.argv[2])
FIX = os.environ.get("ASAM_FIXTURES", os.path.join(os.path.dirname(__file__), "../../../shared/fixtures"))
FIX = os.path.abspath(FIX)
torch.set_num_threads(int(os.environ.get("OMP_NUM_THREADS", "2")))
DATA = os.path.join(OUT, "tune")
LR = 2e-3 * (0 + 1) / 10  # main.py:417 lr 2e-3 (tuning.sh), LambdaLR lr_lambda(0) main.py:24-28

from PIL import Image  # noqa: E402

# ---- stub imports ------------------------------------------------------------------------------
for name in ["skimage", "skimage.io", "pycocotools", "pycocotools.mask", "pycocotools.coco",
             "torchvision", "torchvision.transforms", "torchvision.transforms.functional",
             "cv2", "matplotlib", "matplotlib.pyplot"]:
    sys.modules[name] = types.ModuleType(name)
sys.modules["skimage"].io = sys.modules["skimage.io"]
sys.modules["skimage.io"].imread = lambda p: np.array(Image.open(p))
sys.modules["pycocotools"].mask = sys.modules["pycocotools.mask"]
sys.modules["pycocotools.coco"].COCO = None
sys.modules["torchvision"].transforms = sys.modules["torchvision.transforms"]
sys.modules["torchvision"].utils = None
sys.modules["torchvision.transforms"].functional = sys.modules["torchvision.transforms.functional"]
sys.modules["torchvision.transforms.functional"].normalize = None
sys.modules["torchvision.transforms.functional"].resize = None
sys.modules["torchvision.transforms.functional"].to_pil_image = None
sys.modules["matplotlib"].pyplot = sys.modules["matplotlib.pyplot"]
torch.Tensor.cuda = lambda self, *a, **k: self
sys.path.insert(0, os.path.join(OFF, "sam_continue_learning"))


# ---- counter-based draws asam reproduces -------------------------------------------------------
M64 = (1 << 64) - 1
GAMMA = 0x9E3779B97F4A7C15


def mix64(z):  # splitmix64 output function on uint64 arrays (asam_mix64)
    z = np.asarray(z, dtype=np.uint64)
    with np.errstate(over="ignore"):
        z = (z ^ (z >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
        z = (z ^ (z >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
        return z ^ (z >> np.uint64(31))


def key_of(step, which, mask):
    return int(mix64(np.uint64((step << 40) | (which << 32) | mask)))


def u24(key, n):
    i = np.arange(n, dtype=np.uint64)
    with np.errstate(over="ignore"):
        x = mix64(np.uint64(key) + (i + np.uint64(1)) * np.uint64(GAMMA))
    return (x >> np.uint64(40)).astype(np.float64) * 2.0 ** -24


def normal12(key, n):
    u = u24(key, 12 * n).reshape(n, 12)
    s = np.zeros(n)
    for j in range(12):  # left-to-right sum, as asam's loop
        s = s + u[:, j]
    return (s - 6.0).astype(np.float32)


STATE = {"step": 0, "mode": None, "rand1": [], "flip": [], "crop": [], "kinds": []}
REC = {"rand1": [], "flip": [], "crop": [], "kind": [], "keys": [], "perm": []}
_rand, _randn, _randperm = torch.rand, torch.randn, torch.randperm


def rand_patch(*size, **kw):
    shape = size[0] if len(size) == 1 and isinstance(size[0], (tuple, list, torch.Size)) else size
    shape = tuple(int(s) for s in shape)
    if STATE["mode"] == "loss":  # loss_mask.py:60 candidates (which 1), :76 random share (which 2)
        which = 1 if STATE["loss_calls"] == 0 else 2
        STATE["loss_calls"] += 1
        n_masks, per = shape[0], int(np.prod(shape[1:]))
        out = np.stack([u24(key_of(STATE["step"], which, m), per) for m in range(n_masks)])
        return torch.from_numpy(out.astype(np.float32)).reshape(shape)
    if STATE["mode"] == "lsj":  # LargeScaleJitter scale (dataloader.py:254)
        assert shape == (1,), shape
        v = STATE["rand1"].pop(0)
        REC["rand1"].append(v)
        return torch.tensor([v], dtype=torch.float32)
    return _rand(*size, **kw)


def randn_patch(*size, **kw):
    shape = size[0] if len(size) == 1 and isinstance(size[0], (tuple, list, torch.Size)) else size
    shape = tuple(int(s) for s in shape)
    if STATE["mode"] != "noise":
        return _randn(*size, **kw)
    n_masks, per = shape[0], int(np.prod(shape[1:]))
    out = np.stack([normal12(key_of(STATE["step"], 3, m), per) for m in range(n_masks)])
    return torch.from_numpy(out).reshape(shape)


def randperm_patch(n, *a, **k):
    p = _randperm(n, *a, **k)
    REC["perm"][-1].append(p[:10].tolist())
    return p


torch.rand, torch.randn, torch.randperm = rand_patch, randn_patch, randperm_patch


def random_patch():  # RandomHFlip (dataloader.py:180): flip when >= 0.5
    v = STATE["flip"].pop(0)
    REC["flip"].append(v)
    return v


def randint_patch(lo, hi):  # LSJ crop offsets (dataloader.py:264-265)
    f = STATE["crop"].pop(0)
    v = lo + min(int(f * (hi - lo)), hi - lo - 1)
    REC["crop"].append([v, hi - 1])  # (offset, margin)
    return v


def choice_patch(keys):  # main.py:471 input_type = random.choice(input_keys)
    k = STATE["kinds"].pop(0)
    assert k in keys, (k, keys)
    REC["kind"].append([k, list(keys)])
    return k


random.random = random_patch
np.random.randint = randint_patch
random.choice = choice_patch


# ---- the data set, in the official layout --------------------------------------------------------
def disc(h, w, cy, cx, r):
    yy, xx = np.mgrid[0:h, 0:w]
    return (yy - cy) ** 2 + (xx - cx) ** 2 <= r * r


def rect(h, w, y0, y1, x0, x1):
    m = np.zeros((h, w), bool)
    m[y0:y1, x0:x1] = True
    return m


def synth_image(seed):
    yy, xx = np.mgrid[0:128, 0:128].astype(np.float64)
    img = np.zeros((128, 128, 3))
    for c in range(3):
        img[..., c] = 120 + 60 * np.sin(xx / (5.0 + seed) + c) + 40 * np.cos(yy / (3.0 + seed) - c)
    return np.clip(np.round(img), 0, 255).astype(np.uint8)


os.makedirs(os.path.join(DATA, "adv"), exist_ok=True)
images = {}
# sa_1: the official attack's saved image (asam_ref/adv_sa_1.jpg) with its three masks (90x120)
H, W = 90, 120
yy, xx = np.mgrid[0:H, 0:W].astype(np.float64)
images["sa_1"] = [((xx - 40) / 22) ** 2 + ((yy - 45) / 15) ** 2 <= 1,
                  (xx >= 70) & (xx <= 105) & (yy >= 20) & (yy <= 60),
                  (xx - 95) ** 2 + (yy - 76) ** 2 <= 25]
images["sa_2"] = [disc(100, 80, 30, 40, 18), rect(100, 80, 55, 95, 5, 60),
                  rect(100, 80, 10, 40, 60, 78), disc(100, 80, 70, 60, 12), disc(100, 80, 50, 20, 8)]
images["sa_3"] = [rect(64, 96, 5, 60, 10, 50), rect(64, 96, 30, 31, 70, 71)]  # a 1-px mask (D8)
images["sa_4"] = [disc(120, 90, 60, 45, 30), rect(120, 90, 0, 30, 0, 90), rect(120, 90, 80, 120, 10, 40),
                  disc(120, 90, 95, 70, 14)]
images["sa_5"] = [rect(70, 70, 10, 60, 10, 35), disc(70, 70, 35, 50, 15), rect(70, 70, 60, 70, 0, 70)]
images["sa_6"] = [disc(96, 128, 48, 64, 40), rect(96, 128, 10, 30, 90, 125)]
for k, (stem, ms) in enumerate(images.items()):
    d = os.path.join(DATA, "gt", stem)
    os.makedirs(d, exist_ok=True)
    for j, m in enumerate(ms):
        Image.fromarray((m * 255).astype(np.uint8)).save(os.path.join(d, f"segmentation_{j}.png"))
    dst = os.path.join(DATA, "adv", stem + ".jpg")
    if stem == "sa_1":
        with open(os.path.join(OUT, "adv_sa_1.jpg"), "rb") as f, open(dst, "wb") as g:
            g.write(f.read())
    else:  # ptp_utils.py:60-62: PIL JPEG defaults (quality 75)
        Image.fromarray(synth_image(k)).save(dst)

# ---- official modules ----------------------------------------------------------------------------
from segment_anything_training.build_sam import _build_sam  # noqa: E402
import utils.misc as misc  # noqa: E402
from utils.dataloader_sam import SamDataset  # noqa: E402
from utils.dataloader import RandomHFlip, LargeScaleJitter  # noqa: E402
from utils.loss_mask import loss_masks  # noqa: E402
import torch.nn.functional as F  # noqa: E402

cfg = json.load(open(os.path.join(FIX, "sam_tiny/config.json")))
sam = _build_sam(cfg["encoder_embed_dim"], cfg["encoder_depth"], cfg["encoder_num_heads"],
                 cfg["encoder_global_attn_indexes"])
sam_sd = torch.load(os.path.join(FIX, "sam_tiny/model.pth"), map_location="cpu")
sam.load_state_dict(sam_sd)
sam.eval()
_load = torch.load
torch.load = lambda p, *a, **k: ({kk[len("mask_decoder."):]: v for kk, v in sam_sd.items()
                                  if kk.startswith("mask_decoder.")}
                                 if str(p).endswith("maskdecoder.pth") else _load(p, *a, **k))
sys.argv = ["main.py"]
import main as official  # noqa: E402

net = official.MaskDecoder_Tuning("vit_b")
torch.load = _load
net.train()
# main.py:417
optimizer = torch.optim.Adam(net.parameters(), lr=LR, betas=(0.9, 0.999), eps=1e-08, weight_decay=0)

names = sorted(images)
im_gt = {"dataset_name": "ref", "im_path": [os.path.join(DATA, "adv", n + ".jpg") for n in names],
         "gt_path": [os.path.join(DATA, "gt", n) for n in names], "im_ext": ".jpg", "gt_ext": ""}
# main.py:345-352 training transforms; dataloader.py:122 SamDataset(batch_size_prompt=4, start 0)
dataset = SamDataset([im_gt], transform=None, batch_size_prompt=4, batch_size_prompt_start=0)
flip_t, lsj_t = RandomHFlip(), LargeScaleJitter()

# the scripted draws: per step two images (batch order), flip value, LSJ scale u, crop fractions,
# prompt kind
PLAN = [
    [("sa_2", 0.7, 0.45, (0.3, 0.6), "box"), ("sa_4", 0.2, 0.25, (0.5, 0.5), "point")],
    # a mask below 10 px after the jitter: no point prompts for the batch (D8)
    [("sa_3", 0.8, 0.05, (0.5, 0.5), "noise_mask"), ("sa_5", 0.6, 0.5, (0.9, 0.1), "box")],
    # the crop empties two masks of sa_1: kept, box (1e8, 1e8, 0, 0), zero target (D9)
    [("sa_1", 0.1, 0.9, (0.0, 0.0), "box"), ("sa_6", 0.3, 0.35, (0.2, 0.7), "noise_mask")],
]
steps = []
tensors = {}
for step, plan in enumerate(PLAN):
    STATE["step"] = step
    REC["perm"].append([])
    samples = []
    for stem, fv, u, crop, kind in plan:
        STATE["flip"].append(fv)
        STATE["rand1"].append(u)
        STATE["crop"].extend(crop)
        STATE["kinds"].append(kind)
        s = dataset[names.index(stem)]
        s = flip_t(s)
        STATE["mode"] = "lsj"
        s = lsj_t(s)
        STATE["mode"] = None  # dataloader.py:122 transforms.Compose([RandomHFlip(), LargeScaleJitter()])
        samples.append(s)
    inputs = torch.stack([s["image"] for s in samples])  # default collate
    labels = torch.stack([s["label"] for s in samples])
    # ---- main.py:447-516, one step ----
    K, N, Hh, Ww = labels.shape  # :448
    labels = labels.reshape(K * N, Hh, Ww)  # :451
    imgs = inputs.permute(0, 2, 3, 1).cpu().numpy()  # :453
    input_keys = ['box', 'point', 'noise_mask']  # :456
    labels_box = misc.masks_to_boxes(labels)  # :457
    try:
        labels_points = misc.masks_sample_points(labels)  # :459
    except Exception:
        input_keys = ['box', 'noise_mask']  # :462
        labels_points = None
    labels_256 = F.interpolate(labels.unsqueeze(1), size=(256, 256), mode='bilinear')  # :463
    STATE["mode"] = "noise"
    labels_noisemask = misc.masks_noise(labels_256)  # :464
    STATE["mode"] = None
    batched_input = []
    for bi in range(len(imgs)):  # :467-489
        dict_input = dict()
        input_image = torch.as_tensor(imgs[bi].astype(dtype=np.uint8)).permute(2, 0, 1).contiguous()
        dict_input['image'] = input_image
        input_type = random.choice(input_keys)
        sparse_slice = slice(bi * N, (bi + 1) * N)
        if input_type == 'box':
            dict_input['boxes'] = labels_box[sparse_slice, ...]
        elif input_type == 'point':
            point_coords = labels_points[sparse_slice, ...]
            dict_input['point_coords'] = point_coords
            dict_input['point_labels'] = torch.ones(point_coords.shape[:-1])
        else:
            dict_input['mask_inputs'] = labels_noisemask[sparse_slice]
        dict_input['original_size'] = imgs[0].shape[:2]
        batched_input.append(dict_input)
    with torch.no_grad():
        batched_output, interm_embeddings = sam(batched_input, multimask_output=False)  # :491
    batch_len = len(batched_output)
    encoder_embedding = torch.cat([batched_output[i]['encoder_embedding'] for i in range(batch_len)], dim=0)
    image_pe = [batched_output[i]['image_pe'] for i in range(batch_len)]
    sparse_embeddings = [batched_output[i]['sparse_embeddings'] for i in range(batch_len)]
    dense_embeddings = [batched_output[i]['dense_embeddings'] for i in range(batch_len)]
    masks = net(image_embeddings=encoder_embedding, image_pe=image_pe,  # :499-505
                sparse_prompt_embeddings=sparse_embeddings, dense_prompt_embeddings=dense_embeddings,
                multimask_output=False)
    STATE["mode"], STATE["loss_calls"] = "loss", 0
    loss_mask, loss_dice = loss_masks(masks, labels.unsqueeze(1) / 255.0, len(masks))  # :506
    STATE["mode"] = None
    loss = loss_mask + loss_dice  # :507
    optimizer.zero_grad()  # :514-516
    loss.backward()
    g_iou = net.iou_token.weight.grad.detach().clone()
    g_mask = net.mask_tokens.weight.grad.detach().clone()
    optimizer.step()
    counts = [int((labels[i] > 128).sum()) for i in range(K * N)]
    steps.append({"images": [p[0] for p in plan], "loss": float(loss.item()),
                  "loss_mask": float(loss_mask.item()), "loss_dice": float(loss_dice.item()),
                  "input_keys": input_keys, "fg_px": counts,
                  "boxes": labels_box.tolist(), "canvas_sum": [float(np.floor(i).sum()) for i in imgs]})
    tensors[f"grad_iou_{step}"] = g_iou.contiguous()
    tensors[f"grad_mask_{step}"] = g_mask.contiguous()
    tensors[f"iou_token_{step}"] = net.iou_token.weight.detach().clone().contiguous()
    tensors[f"mask_tokens_{step}"] = net.mask_tokens.weight.detach().clone().contiguous()
    tensors[f"logits_s8_{step}"] = masks.detach()[:, :, ::8, ::8].contiguous()
    if labels_points is not None:
        tensors[f"points_{step}"] = labels_points.contiguous()
    print(f"step {step}: loss {loss.item():.6f} keys {input_keys} fg px {counts}")



def save_file(ts, path):  # the safetensors format (little-endian F32), without the package
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


tensors["iou_token_init"] = sam_sd["mask_decoder.iou_token.weight"].contiguous()
tensors["mask_tokens_init"] = sam_sd["mask_decoder.mask_tokens.weight"].contiguous()
save_file(tensors, os.path.join(OUT, "tune.safetensors"))
json.dump({"official": "luckybird1994/ASAM@9e5280fb73397c9a4f763f37b222881aad14c889",
           "torch": torch.__version__, "lr": LR, "images_per_step": 2, "masks_per_image": 4,
           "steps": steps, "flip": REC["flip"], "lsj_u": REC["rand1"], "crop": REC["crop"],
           "kind": REC["kind"], "perm": REC["perm"]},
          open(os.path.join(OUT, "tune.json"), "w"), indent=1)
