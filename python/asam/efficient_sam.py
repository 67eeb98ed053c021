"""EfficientSAM's Python API (yformer/EfficientSAM, efficient_sam/efficient_sam.py) over asam's C
EfficientSAM (include/asam/efficientsam.h): build_efficient_sam(encoder_patch_embed_dim,
encoder_num_heads, checkpoint) and the model call of the official examples,

    predicted_logits, predicted_iou = model(batched_images, batched_points, batched_point_labels)

with batched_images (B, 3, H, W) float in [0, 1] (ToTensor), batched_points (B, Q, N, 2) in
original pixels, batched_point_labels (B, Q, N) (1 foreground, 0 background, 2 / 3 box corners,
-1 none), returning logits (B, Q, 3, H, W) and IoU predictions (B, Q, 3). Inputs may be numpy
arrays or CPU torch tensors; outputs are numpy float32 arrays, or torch tensors (sharing the
memory) when batched_images is a torch tensor, so the official examples' torch post-processing
(argsort, take_along_dim) runs unchanged. Calls run with the GIL released.

# ref: yformer/EfficientSAM efficient_sam/efficient_sam.py:19 (EfficientSam)"""

import ctypes
import os

import numpy as np

from . import _lib
from ._lib import AsamError

_P = ctypes.POINTER


def _is_torch(x):
    return type(x).__module__.startswith("torch")


def _np(x, dtype, name):
    """A C-contiguous numpy array of x (a torch tensor is read without a copy where it can)."""
    if _is_torch(x):
        x = x.detach().cpu().numpy()
    a = np.asarray(x)
    if name == "batched_images" and not np.issubdtype(a.dtype, np.floating):
        raise ValueError(
            "batched_images: expected a float (B, 3, H, W) array in [0, 1] (ToTensor of the image), got %s" % a.dtype
        )
    return np.ascontiguousarray(a, dtype=dtype)


def _out(a, torch_out):
    if torch_out:
        import torch

        return torch.from_numpy(a)
    return a


class EfficientSam:
    """A loaded EfficientSAM (the C asam_esam). CPU only: .to()/.cpu()/.eval() return the model
    so that existing code runs unchanged."""

    mask_threshold = 0.0
    image_format = "RGB"

    def __init__(self, handle, path=None):
        self._handle = handle
        self._owner = _lib.Owner(_lib.asam_esam_free, handle)
        self.checkpoint = path
        self._p = _lib.EsamPredictorS()
        _lib.check(_lib.asam_esam_predictor_init(ctypes.byref(self._p), handle))
        self._powner = _lib.Owner(_lib.asam_esam_predictor_free, ctypes.byref(self._p))

    @property
    def config(self):
        return _lib.asam_esam_cfg(self._handle).contents

    @property
    def device(self):
        return "cpu"

    def to(self, *args, **kwargs):
        return self

    def cpu(self):
        return self

    def eval(self):
        return self

    def save(self, path):
        """Every tensor under its official name (.pt: torch.save of {"model": state_dict})."""
        _lib.check(_lib.asam_esam_save(self._handle, _lib.fspath(path)))

    # ref: yformer/EfficientSAM efficient_sam/efficient_sam.py:168 (get_image_embeddings)
    def get_image_embeddings(self, batched_images):
        """(B, 3, H, W) float in [0, 1] -> (B, D, 64, 64) float32 image embeddings."""
        torch_out = _is_torch(batched_images)
        x = self._images(batched_images)
        D = self.config.dim
        out = np.empty((x.shape[0], D, 64, 64), np.float32)
        for b in range(x.shape[0]):
            self._set_image(x[b])
            out[b] = np.ctypeslib.as_array(self._p.embedding.contents.data, shape=(D, 64, 64))
        return _out(out, torch_out)

    # ref: yformer/EfficientSAM efficient_sam/efficient_sam.py:183 (forward)
    def forward(self, batched_images, batched_points, batched_point_labels, scale_to_original_image_size=True):
        """Encode each image, decode its Q queries with multimask output: logits
        (B, Q, 3, H, W) (or (B, Q, 3, 256, 256) low-res with scale_to_original_image_size=False)
        and IoU predictions (B, Q, 3)."""
        torch_out = _is_torch(batched_images)
        x = self._images(batched_images)
        pts, lab = self._prompts(batched_points, batched_point_labels, x.shape[0])
        B, Q, N = lab.shape
        H, W = x.shape[2], x.shape[3]
        outs, ious = [], []
        for b in range(B):
            self._set_image(x[b])
            r = self._predict(Q, N, pts[b], lab[b], True)
            outs.append(r[2] if scale_to_original_image_size else r[0])
            ious.append(r[1])
        logits = outs[0][None] if B == 1 else np.stack(outs)
        iou = ious[0][None] if B == 1 else np.stack(ious)
        del H, W
        return _out(logits, torch_out), _out(iou, torch_out)

    __call__ = forward

    # ref: yformer/EfficientSAM efficient_sam/efficient_sam.py:57 (predict_masks)
    def predict_masks(
        self,
        image_embeddings,
        batched_points,
        batched_point_labels,
        multimask_output,
        input_h,
        input_w,
        output_h=-1,
        output_w=-1,
    ):
        """Decode prompts against embeddings from get_image_embeddings(): image_embeddings
        (B, D, 64, 64), points in the pixels of an input_h x input_w image. Returns masks
        (B, Q, C, output_h, output_w) (low-res (B, Q, C, 256, 256) when no output size is
        given) and IoU (B, Q, C); C = 3 with multimask_output, else 1."""
        torch_out = _is_torch(image_embeddings)
        emb = _np(image_embeddings, np.float32, "image_embeddings")
        D = self.config.dim
        if emb.ndim != 4 or emb.shape[1:] != (D, 64, 64):
            raise ValueError("image_embeddings: expected (B, %d, 64, 64), got %s" % (D, emb.shape))
        pts, lab = self._prompts(batched_points, batched_point_labels, None)
        B, Q, N = lab.shape
        if emb.shape[0] == B:
            per_query = False
        elif emb.shape[0] == B * Q:  # one embedding per query (the official [B*Q, C, H, W] form)
            per_query = True
        else:
            raise ValueError("image_embeddings: %d embeddings for %d images of %d queries" % (emb.shape[0], B, Q))
        sized = output_h > 0 and output_w > 0
        C = 3 if multimask_output else 1
        masks, ious = [], []
        for b in range(B):
            groups = [(q, 1) for q in range(Q)] if per_query else [(0, Q)]
            for q0, nq in groups:
                e = emb[b * Q + q0] if per_query else emb[b]
                _lib.check(
                    _lib.asam_esam_predictor_set_embedding(ctypes.byref(self._p), _lib.float_ptr(e), int(input_h), int(input_w))
                )
                low, iou, full = self._predict(nq, N, pts[b, q0 : q0 + nq], lab[b, q0 : q0 + nq], multimask_output)
                if not sized:
                    masks.append(low)
                elif (output_h, output_w) == (input_h, input_w):
                    masks.append(full)
                else:  # ref: yformer/EfficientSAM efficient_sam/efficient_sam.py:127 (bicubic)
                    up = np.empty((nq, C, int(output_h), int(output_w)), np.float32)
                    _lib.check(
                        _lib.asam_esam_resize_logits(
                            _lib.float_ptr(np.ascontiguousarray(low)), nq * C, int(output_h), int(output_w), _lib.float_ptr(up)
                        )
                    )
                    masks.append(up)
                ious.append(iou)
        m = np.concatenate(masks).reshape((B, Q) + masks[0].shape[1:])
        i = np.concatenate(ious).reshape(B, Q, C)
        return _out(m, torch_out), _out(i, torch_out)

    # ---- helpers -------------------------------------------------------------------------
    @staticmethod
    def _images(batched_images):
        x = _np(batched_images, np.float32, "batched_images")
        if x.ndim != 4 or x.shape[1] != 3:
            raise ValueError("batched_images: expected (B, 3, H, W), got %s" % (x.shape,))
        return x

    @staticmethod
    def _prompts(points, labels, B):
        pts = _np(points, np.float32, "batched_points")
        lab = _np(labels, np.float32, "batched_point_labels")
        if pts.ndim != 4 or pts.shape[3] != 2:
            raise ValueError("batched_points: expected (B, Q, N, 2), got %s" % (pts.shape,))
        if lab.shape != pts.shape[:3]:
            raise ValueError("batched_point_labels: expected %s, got %s" % (pts.shape[:3], lab.shape))
        if B is not None and pts.shape[0] != B:
            raise ValueError("batched_points: %d prompt sets for %d images" % (pts.shape[0], B))
        return pts, lab

    def _set_image(self, chw):
        chw = np.ascontiguousarray(chw)
        _lib.check(
            _lib.asam_esam_predictor_set_image_f32(ctypes.byref(self._p), _lib.float_ptr(chw), chw.shape[1], chw.shape[2])
        )

    def _predict(self, Q, N, pts, lab, multimask):
        """(low_res (Q, C, 256, 256), iou (Q, C), logits (Q, C, h, w)): views of the library's
        buffers, freed with the last view."""
        pts, lab = np.ascontiguousarray(pts), np.ascontiguousarray(lab)
        res = _lib.EsamResult()
        _lib.check(
            _lib.asam_esam_predictor_predict(
                ctypes.byref(self._p), Q, N, _lib.float_ptr(pts), _lib.float_ptr(lab), int(bool(multimask)), ctypes.byref(res)
            )
        )
        _lib.free_now(res.masks)  # the model call returns logits; masks are logits >= 0
        res.masks = None
        owner = _lib.Owner(_lib.asam_esam_result_free, ctypes.byref(res))
        owner.res = res
        C, h, w = res.n_masks, res.h, res.w
        low = _lib.view(res.low_res, (Q, C, 256, 256), ctypes.c_float, np.float32, owner)
        iou = _lib.view(res.iou, (Q, C), ctypes.c_float, np.float32, owner)
        full = _lib.view(res.mask_logits, (Q, C, h, w), ctypes.c_float, np.float32, owner)
        return low, iou, full


def _load(checkpoint, encoder_patch_embed_dim, encoder_num_heads):
    if not os.path.exists(checkpoint):
        raise FileNotFoundError(2, "No such file or directory", str(checkpoint))
    # As the official strict load_state_dict, a checkpoint of another encoder width is refused.
    # The width is read from the shapes first (one head divides every width), so that the
    # message names the width rather than an impossible head count.
    cfg = _lib.EsamConfig()
    _lib.check(_lib.asam_esam_config_from_file(_lib.fspath(checkpoint), 1, ctypes.byref(cfg)))
    if cfg.embed_dim != encoder_patch_embed_dim:
        raise AsamError(
            "%s: encoder embed_dim is %d; this builder expects %d" % (checkpoint, cfg.embed_dim, encoder_patch_embed_dim)
        )
    handle = ctypes.c_void_p()
    _lib.check(_lib.asam_esam_load(_lib.fspath(checkpoint), int(encoder_num_heads), ctypes.byref(handle)))
    return EfficientSam(handle.value, checkpoint)


# ref: yformer/EfficientSAM efficient_sam/efficient_sam.py:232 (build_efficient_sam)
def build_efficient_sam(encoder_patch_embed_dim, encoder_num_heads, checkpoint=None):
    """EfficientSAM with an encoder of this width and head count, from an official checkpoint
    (.pt {"model": state_dict}, a bare state dict, or safetensors with the same names); the
    neck and decoder sizes are read from the checkpoint. Without a checkpoint the weights are
    random (asam's initialiser, not torch's) with the official decoder."""
    if checkpoint is not None:
        return _load(checkpoint, encoder_patch_embed_dim, encoder_num_heads)
    cfg = _lib.EsamConfig()
    _lib.check(_lib.asam_esam_config_preset(b"vit_t", ctypes.byref(cfg)))
    cfg.embed_dim, cfg.num_heads, cfg.mlp_dim = encoder_patch_embed_dim, encoder_num_heads, 4 * encoder_patch_embed_dim
    cfg.variant = b"custom"
    handle = ctypes.c_void_p()
    _lib.check(_lib.asam_esam_init_random(ctypes.byref(cfg), 0, ctypes.byref(handle)))
    return EfficientSam(handle.value)
