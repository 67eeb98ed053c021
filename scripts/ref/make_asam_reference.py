#!/usr/bin/env python3
"""Reference trajectories of the ASAM pipeline made by the OFFICIAL scripts (issue 16).

Runs luckybird1994/ASAM @ 9e5280f (null_text_inversion.py, grad_null_text_inversion_edit.py,
ptp_utils.py, sam_continue_learning/utils/misc.py) on the tiny fixture models
(../shared/fixtures/sd_tiny, sam_tiny) with fixed inputs and writes tests/data/asam_ref/.

Nothing of the official arithmetic is changed. What is patched at run time, and why:
  * CUDA: Tensor.cuda / Module.cuda return their object (CPU run).
  * hub names: the pipeline and ControlNet come from the fixture folder / file
    (from_pretrained(<sd_tiny/diffusers>), from_single_file(control.pth, original_config_file=
    <cldm_v15-tiny.yaml>)); get_model() returns the tiny SAM built from the official
    segment_anything_training classes.
  * imports the scripts never use on this path (lavis, skimage, pycocotools, IPython.display,
    torchvision) are stub modules.
  * image size: the scripts hard-code 512 for the SD side (invert(): Image.resize((512,512)),
    text2image_ldm_stable_last(): height = width = 512 passed to ptp_utils.init_latent). The tiny
    fixture runs at SIZE (128, latent 16): init_latent is wrapped to take the latent's own
    size, and the loading lines of the scripts' __main__ blocks (not importable functions) are
    repeated below with SIZE in place of 512, each with its official line.
  * a torch 1.13 CPU bug, not the scripts' arithmetic: diffusers' attention calls
    torch.baddbmm(torch.empty(...), q, k^T, beta=0, alpha=scale); this build's CPU kernel
    returns NaN at random for small batches (uninitialised memory; it does so even with a
    zeroed input: 2742 of 3000 calls of shape (8,4,8)x(8,8,4)), and the null-text optimisation
    turned NaN. With beta == 0 the call is computed as alpha * torch.bmm(q, k^T), the value
    baddbmm is defined to give.
  * observation only: wrappers record the values the official code computes (losses, the
    gradient given to torch.norm(p=1), the momentum given to torch.sign, the latent entering
    each sampling chain) and pass them through unchanged.

Usage: build/venv/bin/python scripts/ref/make_asam_reference.py OFFICIAL_DIR OUT_DIR
  (venv: --system-site-packages over Debian's torch 1.13, diffusers==0.27.2,
   transformers==4.26.1, huggingface_hub==0.25.2, opencv-python-headless==4.6.0.66,
   matplotlib==3.7.5)
"""
import json
import os
import sys
import types

import numpy as np
import torch

OFF = os.path.abspath(sys.argv[1])
OUT = os.path.abspath(sys.argv[2])
FIX = os.environ.get("ASAM_FIXTURES", os.path.join(os.path.dirname(__file__), "../../../shared/fixtures"))
FIX = os.path.abspath(FIX)
SIZE = 128          # SD image side for the tiny models (official: 512)
DDIM_STEPS = 4      # --ddim_steps (official default 50)
NULL_INNER = 10     # null_text_inversion.py --steps default (inner Adam steps)
ATTACK_STEPS = 3    # grad...edit.py --steps (official grad.sh: 10)
PROMPT = "a red ellipse and a green box on a striped wall"
os.makedirs(OUT, exist_ok=True)
torch.set_num_threads(int(os.environ.get("OMP_NUM_THREADS", "2")))

# diffusers and transformers probe optional packages when imported: import them before the stubs
from diffusers import StableDiffusionControlNetPipeline, ControlNetModel, DDIMScheduler  # noqa
import transformers  # noqa: E402,F401
import matplotlib  # noqa: E402
matplotlib.use("Agg")
import matplotlib.pyplot  # noqa: E402,F401  (before the IPython stub: pyplot probes IPython)

_baddbmm = torch.baddbmm


def baddbmm_beta0_safe(input, batch1, batch2, *, beta=1, alpha=1, out=None):
    if beta == 0 and out is None:
        return torch.bmm(batch1, batch2) * alpha
    return _baddbmm(input, batch1, batch2, beta=beta, alpha=alpha, out=out)


torch.baddbmm = baddbmm_beta0_safe

# ---- run-time patches: CUDA, stub imports -------------------------------------------------
torch.Tensor.cuda = lambda self, *a, **k: self
torch.nn.Module.cuda = lambda self, *a, **k: self
for name in ["lavis", "lavis.models", "skimage", "skimage.metrics", "pycocotools",
             "IPython", "IPython.display", "torchvision", "timm"]:
    if name not in sys.modules:
        sys.modules[name] = types.ModuleType(name)
sys.modules["lavis.models"].load_model_and_preprocess = None
for f in ["structural_similarity", "peak_signal_noise_ratio", "mean_squared_error"]:
    setattr(sys.modules["skimage.metrics"], f, None)
sys.modules["pycocotools"].mask = None
sys.modules["IPython.display"].display = lambda *a, **k: None
sys.modules["IPython"].get_ipython = lambda: None  # pyplot asks whether it runs in IPython
sys.modules["torchvision"].__version__ = "0.14.1"
sys.path.insert(0, OFF)
sys.path.insert(0, os.path.join(OFF, "sam_continue_learning"))

from PIL import Image  # noqa: E402
import cv2  # noqa: E402
import torch.nn.functional as F  # noqa: E402
from safetensors.torch import save_file  # noqa: E402


def tiny_sam():
    from segment_anything_training.build_sam import _build_sam
    cfg = json.load(open(os.path.join(FIX, "sam_tiny/config.json")))
    sam = _build_sam(cfg["encoder_embed_dim"], cfg["encoder_depth"], cfg["encoder_num_heads"],
                     cfg["encoder_global_attn_indexes"])
    sd = torch.load(os.path.join(FIX, "sam_tiny/model.pth"), map_location="cpu")
    sam.load_state_dict(sd)
    return sam.eval()


gm = types.ModuleType("get_model")
gm.get_model = lambda model, model_type, checkpoint=None: tiny_sam()
sys.modules["get_model"] = gm

# ---- inputs (the official data layout: sa_1.jpg, sa_1/segmentation_j.png, control sa_1.png) --
H, W = 90, 120
yy, xx = np.mgrid[0:H, 0:W].astype(np.float64)
img = np.zeros((H, W, 3))
for c in range(3):
    img[..., c] = 120 + 55 * np.sin(xx / 6.0 + 1.3 * c) + 35 * np.cos(yy / 4.0 - 0.7 * c)
masks = [((xx - 40) / 22) ** 2 + ((yy - 45) / 15) ** 2 <= 1,
         (xx >= 70) & (xx <= 105) & (yy >= 20) & (yy <= 60),
         (xx - 95) ** 2 + (yy - 76) ** 2 <= 25]
img[masks[0]] = img[masks[0]] * 0.3 + np.array([200, 30, 40]) * 0.7
img[masks[1]] = img[masks[1]] * 0.4 + np.array([40, 180, 60]) * 0.6
img = np.clip(np.round(img), 0, 255).astype(np.uint8)
colors = [(255, 0, 0), (0, 255, 0), (40, 90, 200)]
cmap = np.zeros((H, W, 3), np.uint8)
for m, col in zip(masks, colors):
    cmap[m] = col
os.makedirs(os.path.join(OUT, "sa_1"), exist_ok=True)
# PNG content under the official names: lossless, so C reads exactly these pixels
Image.fromarray(img).save(os.path.join(OUT, "sa_1.png"))
Image.fromarray(cmap).save(os.path.join(OUT, "control_sa_1.png"))
for j, m in enumerate(masks):
    Image.fromarray((m * 255).astype(np.uint8)).save(os.path.join(OUT, "sa_1", f"segmentation_{j}.png"))
img_path = os.path.join(OUT, "sa_1.png")
control_path = os.path.join(OUT, "control_sa_1.png")

# ---- models --------------------------------------------------------------------------------
scheduler = DDIMScheduler(beta_start=0.00085, beta_end=0.012, beta_schedule="scaled_linear",
                          clip_sample=False, set_alpha_to_one=False)
controlnet = ControlNetModel.from_single_file(
    os.path.join(FIX, "sd_tiny/control.pth"),
    original_config_file=os.path.join(FIX, "sd_tiny/cldm_v15-tiny.yaml"), local_files_only=True)
ldm_stable = StableDiffusionControlNetPipeline.from_pretrained(
    os.path.join(FIX, "sd_tiny/diffusers"), controlnet=controlnet, scheduler=scheduler,
    safety_checker=None, feature_extractor=None, requires_safety_checker=False,
    local_files_only=True)

# ================================ null-text inversion =========================================
sys.argv = ["null_text_inversion.py", "--ddim_steps", str(DDIM_STEPS), "--steps", str(NULL_INNER)]
import null_text_inversion as nti  # noqa: E402
import ptp_utils  # noqa: E402

nti.NUM_DDIM_STEPS = DDIM_STEPS
nti.GUIDANCE_SCALE = nti.args.guidence_scale
nti.device = torch.device("cpu")
nti.MAX_NUM_WORDS = 77
nti.LOW_RESOURCE = False

rec_null = {"loss": [], "emb": [], "step": []}
cur_step = [0]
_mse = nti.nnf.mse_loss


def mse_rec(a, b, *k, **kw):  # observation: the inner loss of null_optimization
    v = _mse(a, b, *k, **kw)
    rec_null["loss"].append(float(v.item()))
    rec_null["step"].append(cur_step[0])
    return v


class AdamRec(torch.optim.Adam):  # observation: the embedding after each inner step
    def __init__(self, params, lr):
        params = list(params)
        super().__init__(params, lr=lr)
        self.p = params[0]
        cur_step[0] = len(set(rec_null["step"])) if rec_null["step"] else 0

    def step(self, *a, **k):
        r = super().step(*a, **k)
        rec_null["emb"].append(self.p.detach()[0].clone())
        return r


nti.nnf = types.SimpleNamespace(**{k: getattr(F, k) for k in dir(F) if not k.startswith("_")})
nti.nnf.mse_loss = mse_rec
nti.Adam = AdamRec

null_inversion = nti.NullInversion(ldm_stable)
REUSE = os.environ.get("ASAM_REF_REUSE_INVERSION") == "1" and os.path.exists(
    os.path.join(OUT, "inversion.safetensors"))
nti.null_inversion = null_inversion
if REUSE:  # a rerun of the later stages: the inversion file this script wrote before
    from safetensors.torch import load_file
    _inv = load_file(os.path.join(OUT, "inversion.safetensors"))
    x_t, uncond = _inv["x_T"], _inv["uncond"]
    inner_counts = [int(v) for v in _inv["null_inner"].tolist()]
    rec_null["loss"] = _inv["null_loss"].tolist()
else:
    null_inversion.init_prompt(PROMPT)
    ptp_utils.register_attention_control(ldm_stable, None)
    # ref: null_text_inversion.py:718-721 (control map: cv2 float path; 512 -> SIZE)
    mask_control = cv2.imread(control_path).astype(np.float32)
    mask_control = cv2.cvtColor(mask_control, cv2.COLOR_BGR2RGB)
    mask_control = cv2.resize(mask_control, (SIZE, SIZE)) / 255.0
    mask_control = torch.from_numpy(mask_control).permute(2, 0, 1).unsqueeze(0).to(torch.float32)
    # ref: null_text_inversion.py:550-551 (invert(): image 512 -> SIZE, PIL default filter)
    image_gt = np.array(Image.open(img_path).convert("RGB").resize((SIZE, SIZE))).astype(np.float32)
    image_rec, ddim_latents = null_inversion.ddim_inversion(image_gt, mask_control)
    uncond_list = null_inversion.null_optimization(ddim_latents, mask_control, NULL_INNER, 1e-5)
    x_t = ddim_latents[-1]
    uncond = torch.cat(uncond_list, 0)
    steps_arr = np.array(rec_null["step"])
    inner_counts = [int((steps_arr == i).sum()) for i in range(DDIM_STEPS)]
    save_file({
        "image_gt": torch.from_numpy(image_gt).contiguous(),               # (S,S,3) 0..255
        "hint_inv": mask_control.contiguous(),                             # (1,3,S,S)
        "ddim_latents": torch.cat(ddim_latents, 0).contiguous(),           # (steps+1,4,h,w)
        "null_loss": torch.tensor(rec_null["loss"], dtype=torch.float32),  # every inner step
        "null_emb": torch.stack(rec_null["emb"], 0).contiguous(),          # (inner,77,D) after each
        "null_inner": torch.tensor(inner_counts, dtype=torch.float32),     # inner steps per t
        "uncond": uncond.contiguous(),                                     # (steps,77,D) kept
        "x_T": x_t.contiguous(),
        "cond": null_inversion.context.chunk(2)[1].contiguous(),
    }, os.path.join(OUT, "inversion.safetensors"))
    print("inversion: inner steps per t", inner_counts, "last losses",
          [rec_null["loss"][sum(inner_counts[:i + 1]) - 1] for i in range(DDIM_STEPS)])
json.dump({"prompt": PROMPT, "size": SIZE, "ddim_steps": DDIM_STEPS, "null_inner": NULL_INNER,
           "inner_per_step": inner_counts, "loss": rec_null["loss"],
           "official": "luckybird1994/ASAM@9e5280fb73397c9a4f763f37b222881aad14c889",
           "torch": torch.__version__},
          open(os.path.join(OUT, "inversion.json"), "w"), indent=1)

# ================================ MI-FGSM latent attack =======================================
sys.argv = ["grad_null_text_inversion_edit.py", "--steps", str(ATTACK_STEPS), "--ddim_steps",
            str(DDIM_STEPS), "--alpha", "0.02", "--sam_batch", "140", "--beta", "1", "--norm", "2",
            "--mu", "0.5", "--eps", "0.2"]  # grad.sh:9-11 values
for k in list(sys.modules):
    if k == "ptp_utils":
        del sys.modules[k]
import grad_null_text_inversion_edit as gx  # noqa: E402

gx.ldm_stable = ldm_stable
gx.NUM_DDIM_STEPS = DDIM_STEPS
gx.GUIDANCE_SCALE = gx.args.guidance_scale
gx.MAX_NUM_WORDS = 77
gx.LOW_RESOURCE = False
_init_latent = gx.ptp_utils.init_latent
gx.ptp_utils.init_latent = lambda latent, model, height, width, generator, batch_size: _init_latent(
    latent, model, latent.shape[-2] * 8, latent.shape[-1] * 8, generator, batch_size)

rec = {"chain_in": [], "chain_out": [], "bce": [], "dice": [], "iou": [], "l2": [], "grad": [],
       "mom": []}
_step = gx.ptp_utils.diffusion_step
chain_i = [0]


def step_rec(model, controller, latents, mask, context, t, *a, **k):
    if chain_i[0] % DDIM_STEPS == 0:
        rec["chain_in"].append(latents.detach().clone())
    out = _step(model, controller, latents, mask, context, t, *a, **k)
    chain_i[0] += 1
    if chain_i[0] % DDIM_STEPS == 0:
        rec["chain_out"].append(out.detach().clone())
    return out


gx.ptp_utils.diffusion_step = step_rec
_bce = torch.nn.functional.binary_cross_entropy_with_logits


def bce_rec(*a, **k):
    v = _bce(*a, **k)
    rec["bce"].append(float(v.item()))
    return v


torch.nn.functional.binary_cross_entropy_with_logits = bce_rec
_dice = gx.dice_loss
gx.dice_loss = lambda i, t: (lambda v: (rec["dice"].append(float(v.item())), v)[1])(_dice(i, t))
_ciou = gx.compute_iou
gx.compute_iou = lambda p, t: (lambda v: (rec["iou"].append(float(v.item())), v)[1])(_ciou(p, t))
_norm = torch.norm


def norm_rec(x, p="fro", *a, **k):
    v = _norm(x, p, *a, **k)
    if p == 1:
        rec["grad"].append(x.detach().clone())
    elif p == 2:
        rec["l2"].append(float(v.item()))
    return v


torch.norm = norm_rec
_sign = torch.sign
torch.sign = lambda x: (rec["mom"].append(x.detach().clone()), _sign(x))[1]

image_size = gx.image_size
mean = gx.mean
std = gx.std
# ref: grad_null_text_inversion_edit.py:850-854 (L2 reference: original -> 1024 PIL default)
pil_image = Image.open(img_path).convert("RGB").resize(image_size)
raw_img = (torch.tensor(np.array(pil_image).astype(np.float32)).unsqueeze(0) / 255.).permute(0, 3, 1, 2)
raw_img = raw_img - mean[None, :, None, None]
raw_img = raw_img / std[None, :, None, None]
# ref: :857-864 per-mask PNGs -> 'L' -> 1024 PIL default
label_dir = os.path.join(OUT, "sa_1")
gx.origin_len = len(os.listdir(label_dir))
label_masks = torch.empty([0, 1, 1024, 1024])
for j in range(min(gx.args.sam_batch, gx.origin_len)):
    lm = Image.open(os.path.join(label_dir, f"segmentation_{j}.png")).convert("L").resize(image_size)
    label_masks = torch.cat([label_masks, torch.tensor(np.array(lm)).to(torch.float32)[None, None]])
gx.sup_masks = torch.empty([0, 1, 512, 512])
boxes = gx.masks_to_boxes(label_masks.squeeze())  # :874
label_masks_256 = F.interpolate(label_masks, size=(256, 256), mode="bilinear", align_corners=False)
# ref: :898-902 control map: cv2 uint8 path (512 -> SIZE)
control_mask = cv2.imread(control_path)
control_mask = cv2.cvtColor(control_mask, cv2.COLOR_BGR2RGB)
control_mask = cv2.resize(control_mask, (SIZE, SIZE))
control_mask = torch.from_numpy(control_mask).permute(2, 0, 1).unsqueeze(0).to(torch.float32) / 255.0

controller = gx.AttentionStore()
image_inv, best_latent, worst_mask, vis, worst_iou = gx.text2image_ldm_stable_last(
    ldm_stable, [PROMPT], controller, latent=x_t, num_inference_steps=DDIM_STEPS,
    guidance_scale=gx.GUIDANCE_SCALE, generator=None, uncond_embeddings=uncond,
    mask_control=control_mask, raw_img=raw_img, boxes=boxes, label_masks_256=label_masks_256)
torch.norm, torch.sign = _norm, _sign
torch.nn.functional.binary_cross_entropy_with_logits = _bce
# ref: :911 + ptp_utils.py:60-62 the saved adversarial image (PIL JPEG defaults)
gx.ptp_utils.view_images([image_inv[0]], prefix=os.path.join(OUT, "adv_sa_1"), shuffix=".jpg")
jpg = np.array(Image.open(os.path.join(OUT, "adv_sa_1.jpg")).convert("RGB"))
kept = [i for i in range(ATTACK_STEPS) if torch.equal(rec["chain_in"][i], best_latent)]
save_file({
    # (1,3,128,128): every 8th row and column of the (1,3,1024,1024) normalised reference
    "raw_img_s8": raw_img[:, :, ::8, ::8].contiguous(),
    "label_masks_256": label_masks_256.contiguous(),       # (n,1,256,256) 0..255
    "boxes": boxes.contiguous(),                           # (n,4)
    "hint_adv": control_mask.contiguous(),                 # (1,3,S,S)
    "chain_in": torch.cat(rec["chain_in"], 0).contiguous(),    # x_T of iteration k; last = kept
    "chain_out": torch.cat(rec["chain_out"], 0).contiguous(),  # z_0 of iteration k; last = final
    "grad": torch.cat(rec["grad"], 0).contiguous(),        # dL/dz0 of iteration k
    "momentum": torch.cat(rec["mom"], 0).contiguous(),     # momentum after iteration k
    "image_u8": torch.from_numpy(image_inv[0].copy()),     # (S,S,3) truncated uint8
    "jpeg_rgb": torch.from_numpy(jpg.copy()),              # decoded adv_sa_1.jpg
}, os.path.join(OUT, "attack.safetensors"))
json.dump({"prompt": PROMPT, "size": SIZE, "ddim_steps": DDIM_STEPS, "attack_steps": ATTACK_STEPS,
           "null_inner": NULL_INNER, "alpha": 0.02, "eps": 0.2, "mu": 0.5, "gamma": 100,
           "kappa": 100, "beta": 1, "bce": rec["bce"], "dice": rec["dice"], "l2": rec["l2"],
           "iou": rec["iou"], "worst_iou": worst_iou, "kept": kept[0] if kept else -1,
           "official": "luckybird1994/ASAM@9e5280fb73397c9a4f763f37b222881aad14c889",
           "torch": torch.__version__},
          open(os.path.join(OUT, "attack.json"), "w"), indent=1)
print("attack: iou", rec["iou"], "kept", kept, "bce", rec["bce"], "dice", rec["dice"], "l2", rec["l2"])

# ================================ eval protocol (IoU, boundary IoU) ===========================
import utils.misc as misc  # noqa: E402
g = torch.Generator().manual_seed(7)
gt_full = torch.stack([torch.from_numpy(m.astype(np.float32) * 255) for m in masks])[:, None]
logits = torch.randn(len(masks), 1, 256, 256, generator=g) * 2 + 0.5
# ref: main.py:562-589 compute_iou / compute_boundary_iou: bilinear to the GT size, misc.*
pp = F.interpolate(logits, size=(H, W), mode="bilinear", align_corners=False)
ious = [float(misc.mask_iou(pp[i], gt_full[i])) for i in range(len(masks))]
bious = [float(misc.boundary_iou(gt_full[i], pp[i])) for i in range(len(masks))]
save_file({"logits": logits.contiguous(), "gt": gt_full.to(torch.uint8).contiguous()},
          os.path.join(OUT, "eval.safetensors"))
json.dump({"iou": ious, "biou": bious}, open(os.path.join(OUT, "eval.json"), "w"), indent=1)
print("eval: iou", ious, "biou", bious)
