"""segment-anything's Python API over asam's C SAM: sam_model_registry / build_sam_vit_* (the
official .pth checkpoints), SamPredictor (set_image, predict, get_image_embedding,
reset_image) returning numpy arrays of the official shapes, dtypes and values.

# ref: facebookresearch/segment-anything segment_anything/build_sam.py:47 (sam_model_registry)
# ref: facebookresearch/segment-anything segment_anything/predictor.py:17 (SamPredictor)"""

import ctypes
import os

import numpy as np

from . import _lib
from ._lib import AsamError

# Official encoder configurations (build_sam.py): embed dim, depth, heads, global blocks.
_VARIANTS = {
    "vit_h": (1280, 32, 16, (7, 15, 23, 31)),
    "vit_l": (1024, 24, 16, (5, 11, 17, 23)),
    "vit_b": (768, 12, 12, (2, 5, 8, 11)),
}


class Sam:
    """A loaded SAM model (the C asam_sam). CPU only: .to()/.eval() are accepted and return the
    model so that existing code (`sam.to(device=...)`) runs unchanged."""

    image_format = "RGB"
    mask_threshold = 0.0

    def __init__(self, handle, path=None):
        self._handle = handle
        self._owner = _lib.Owner(_lib.asam_sam_free, handle)
        self.checkpoint = path

    @property
    def config(self):
        return ctypes.cast(self._handle, ctypes.POINTER(_lib.SamConfig)).contents

    @property
    def variant(self):
        return self.config.variant.decode()

    @property
    def image_size(self):
        """The input side S (image_encoder.img_size): 1024 for the official models, the
        checkpoint's own for one trained at another size (read from pos_embed)."""
        return self.config.img_size or 1024

    @property
    def device(self):
        return "cpu"

    def to(self, *args, **kwargs):
        return self

    def eval(self):
        return self

    def save(self, path):
        """Write every tensor under its official name (.pth: torch.save zip, else safetensors)."""
        _lib.check(_lib.asam_sam_save(self._handle, _lib.fspath(path)))


def _load(checkpoint, expect):
    """Load `checkpoint` and check its encoder against `expect` (embed, depth, heads, globals),
    as the official load_state_dict(strict=True) rejects a checkpoint of another size."""
    if not os.path.exists(checkpoint):
        raise FileNotFoundError(2, "No such file or directory", str(checkpoint))
    handle = ctypes.c_void_p()
    _lib.check(_lib.asam_sam_load(_lib.fspath(checkpoint), ctypes.byref(handle)))
    sam = Sam(handle.value, checkpoint)
    c = sam.config
    got = (c.embed_dim, c.depth, c.num_heads, tuple(c.global_idx[: c.n_global]))
    if got != (expect[0], expect[1], expect[2], tuple(expect[3])):
        raise AsamError(
            "%s: encoder is embed_dim %d, depth %d, heads %d, global blocks %s; this builder "
            "expects embed_dim %d, depth %d, heads %d, global blocks %s"
            % ((checkpoint,) + got[:3] + (list(got[3]),) + tuple(expect[:3]) + (list(expect[3]),))
        )
    return sam


def _random(cfg):
    handle = ctypes.c_void_p()
    _lib.check(_lib.asam_sam_init_random(ctypes.byref(cfg), 0, ctypes.byref(handle)))
    return Sam(handle.value)


def _build_sam(
    encoder_embed_dim, encoder_depth, encoder_num_heads, encoder_global_attn_indexes, checkpoint=None
):
    """build_sam._build_sam: any encoder size (e.g. the tiny test model). Without a
    checkpoint the weights are random (asam's initialiser, not torch's)."""
    expect = (encoder_embed_dim, encoder_depth, encoder_num_heads, tuple(encoder_global_attn_indexes))
    if checkpoint is not None:
        return _load(checkpoint, expect)
    cfg = _lib.SamConfig()
    cfg.embed_dim, cfg.depth, cfg.num_heads = encoder_embed_dim, encoder_depth, encoder_num_heads
    cfg.head_dim, cfg.mlp_dim, cfg.window = encoder_embed_dim // encoder_num_heads, 4 * encoder_embed_dim, 14
    cfg.n_global = len(expect[3])
    for k, i in enumerate(expect[3]):
        cfg.global_idx[k] = i
        cfg.is_global[i] = 1
    cfg.variant = b"custom"
    return _random(cfg)


def _builder(variant):
    def build(checkpoint=None):
        return _build_sam(*_VARIANTS[variant], checkpoint=checkpoint)

    build.__name__ = "build_sam_" + variant
    build.__doc__ = "SAM %s from the official checkpoint (random weights when None)." % variant
    return build


build_sam_vit_h = _builder("vit_h")
build_sam_vit_l = _builder("vit_l")
build_sam_vit_b = _builder("vit_b")
build_sam = build_sam_vit_h
sam_model_registry = {
    "default": build_sam_vit_h,
    "vit_h": build_sam_vit_h,
    "vit_l": build_sam_vit_l,
    "vit_b": build_sam_vit_b,
}


class ResizeLongestSide:
    """utils/transforms.py's coordinate transforms (numpy; images are resized inside the C
    library, Pillow-exact)."""

    def __init__(self, target_length=1024):
        self.target_length = target_length

    @staticmethod
    def get_preprocess_shape(oldh, oldw, long_side_length):
        # ref: segment_anything/utils/transforms.py:95
        scale = long_side_length * 1.0 / max(oldh, oldw)
        return int(oldh * scale + 0.5), int(oldw * scale + 0.5)

    def apply_coords(self, coords, original_size):
        # ref: segment_anything/utils/transforms.py:35 (float64 multiply)
        old_h, old_w = original_size
        new_h, new_w = self.get_preprocess_shape(old_h, old_w, self.target_length)
        coords = np.array(coords, dtype=float, copy=True)
        coords[..., 0] = coords[..., 0] * (new_w / old_w)
        coords[..., 1] = coords[..., 1] * (new_h / old_h)
        return coords

    def apply_boxes(self, boxes, original_size):
        boxes = self.apply_coords(np.asarray(boxes).reshape(-1, 2, 2), original_size)
        return boxes.reshape(-1, 4)


def _f32(a, name, shape_tail=None):
    a = np.ascontiguousarray(a, dtype=np.float32)  # no copy when already float32 C-order
    if shape_tail is not None and a.shape[a.ndim - len(shape_tail) :] != shape_tail:
        raise ValueError("%s: expected shape (..., %s), got %s" % (name, ", ".join(map(str, shape_tail)), a.shape))
    return a


class SamPredictor:
    """segment_anything.SamPredictor over the C predictor: the image is encoded once by
    set_image(), then predict() decodes prompts against the cached embedding. Long calls run
    with the GIL released (ctypes), so other Python threads keep running."""

    def __init__(self, sam_model):
        self.model = sam_model
        # ref: segment_anything/predictor.py:29 ResizeLongestSide(sam_model.image_encoder.img_size)
        self.transform = ResizeLongestSide(sam_model.image_size)
        S = sam_model.image_size
        self._grid, self._low = S // 16, S // 4  # 64 and 256 for the official 1024 input
        self._p = _lib.SamPredictorS()
        _lib.check(_lib.asam_sam_predictor_init(ctypes.byref(self._p), sam_model._handle))
        self._owner = _lib.Owner(_lib.asam_sam_predictor_free, ctypes.byref(self._p))
        self.reset_image()

    # ref: segment_anything/predictor.py:33 (set_image)
    def set_image(self, image, image_format="RGB"):
        """image: uint8 (H, W, 3) array in `image_format` ("RGB" or "BGR")."""
        assert image_format in ["RGB", "BGR"], f"image_format must be in ['RGB', 'BGR'], is {image_format}."
        image = np.asarray(image)
        if image.dtype != np.uint8 or image.ndim != 3 or image.shape[2] != 3:
            raise ValueError("set_image: expected a uint8 (H, W, 3) array, got %s %s" % (image.dtype, image.shape))
        if image_format != self.model.image_format:
            image = image[..., ::-1]
        image = np.ascontiguousarray(image)  # a C-ordered RGB array is passed as it is
        img = _lib.Image(image.shape[1], image.shape[0], 3, image.ctypes.data_as(ctypes.POINTER(ctypes.c_uint8)))
        self.reset_image()
        _lib.check(_lib.asam_sam_predictor_set_image(ctypes.byref(self._p), ctypes.byref(img)))
        s = self._p.sizes
        self.original_size = (s.orig_h, s.orig_w)
        self.input_size = (s.input_h, s.input_w)
        self.orig_h, self.orig_w = self.original_size
        self.input_h, self.input_w = self.input_size
        self.is_image_set = True

    def set_image_embedding(self, embedding, original_size):
        """Reuse an embedding from get_image_embedding() for an image of original_size (H, W)."""
        G = self._grid
        emb = _f32(embedding, "embedding", (256, G, G))
        if emb.size != 256 * G * G:
            raise ValueError("embedding: expected (1, 256, %d, %d), got %s" % (G, G, emb.shape))
        h, w = original_size
        ih, iw = self.transform.get_preprocess_shape(h, w, self.transform.target_length)
        sizes = _lib.SamSizes(h, w, ih, iw)
        self.reset_image()
        _lib.check(_lib.asam_sam_predictor_set_embedding(ctypes.byref(self._p), _lib.float_ptr(emb), ctypes.byref(sizes)))
        self.original_size, self.input_size = (h, w), (ih, iw)
        self.orig_h, self.orig_w, self.input_h, self.input_w = h, w, ih, iw
        self.is_image_set = True

    # ref: segment_anything/predictor.py:96 (predict)
    def predict(
        self,
        point_coords=None,
        point_labels=None,
        box=None,
        mask_input=None,
        multimask_output=True,
        return_logits=False,
    ):
        """Masks for one prompt: (C, H, W) bool (float32 logits with return_logits), (C,)
        float32 IoU predictions, (C, 256, 256) float32 low-res logits; C = 3 with
        multimask_output, else 1. A (B, 4) box array with B > 1 decodes the B boxes as one
        batch and returns (B, C, H, W), (B, C), (B, C, 256, 256) (see predict_boxes). For a
        model of input side S, 256 reads S / 4 here and below (64: S / 16)."""
        if not self.is_image_set:
            raise RuntimeError("An image must be set with .set_image(...) before mask prediction.")
        if point_coords is not None:
            assert point_labels is not None, "point_labels must be supplied if point_coords is supplied."
        if box is not None and np.asarray(box).ndim == 2 and np.asarray(box).shape[0] > 1:
            if point_coords is not None or mask_input is not None:
                raise ValueError("predict: several boxes with points or mask_input: use predict_boxes with per-box prompts")
            return self.predict_boxes(box, multimask_output=multimask_output, return_logits=return_logits)
        pts = None if point_coords is None else _f32(point_coords, "point_coords", (2,)).reshape(1, -1, 2)
        lab = None if point_coords is None else _f32(point_labels, "point_labels").reshape(1, -1)
        bx = None if box is None else _f32(box, "box", (4,)).reshape(1, 4)
        L = self._low
        mi = None if mask_input is None else _f32(mask_input, "mask_input", (L, L)).reshape(1, 1, L, L)
        masks, iou, low = self._decode(1, pts, lab, bx, mi, multimask_output, return_logits)
        return masks[0], iou[0], low[0]

    def predict_boxes(
        self,
        boxes=None,
        point_coords=None,
        point_labels=None,
        mask_input=None,
        multimask_output=True,
        return_logits=False,
    ):
        """predict_torch without torch: B prompts decoded as one batch, in original-image
        pixels. boxes (B, 4), point_coords (B, N, 2), point_labels (B, N), mask_input
        (B, 1, 256, 256). Returns (B, C, H, W) masks, (B, C) IoU, (B, C, 256, 256) logits.
        Coordinates are transformed in float64 as predict() does (predict_torch's callers
        use apply_boxes_torch in float32; the difference is at most one float32 ulp)."""
        if not self.is_image_set:
            raise RuntimeError("An image must be set with .set_image(...) before mask prediction.")
        B = None
        bx = pts = lab = mi = None
        if boxes is not None:
            bx = _f32(boxes, "boxes", (4,)).reshape(-1, 4)
            B = bx.shape[0]
        if point_coords is not None:
            assert point_labels is not None, "point_labels must be supplied if point_coords is supplied."
            pts = _f32(point_coords, "point_coords", (2,))
            pts = pts[None] if pts.ndim == 2 else pts  # (N, 2): one prompt
            lab = _f32(point_labels, "point_labels").reshape(pts.shape[0], pts.shape[1])
            if B is not None and pts.shape[0] != B:
                raise ValueError("predict_boxes: %d boxes but %d point sets" % (B, pts.shape[0]))
            B = pts.shape[0]
        if mask_input is not None:
            L = self._low
            mi = _f32(mask_input, "mask_input", (L, L)).reshape(-1, 1, L, L)
            if B is not None and mi.shape[0] != B:
                raise ValueError("predict_boxes: %d prompts but %d mask inputs" % (B, mi.shape[0]))
            B = mi.shape[0]
        if B is None:
            raise ValueError("predict_boxes: no prompt given")
        return self._decode(B, pts, lab, bx, mi, multimask_output, return_logits)

    def _decode(self, B, pts, lab, bx, mi, multimask, return_logits):
        q = _lib.SamQuery(
            B,
            0 if pts is None else pts.shape[1],
            _lib.float_ptr(pts),
            _lib.float_ptr(lab),
            _lib.float_ptr(bx),
            _lib.float_ptr(mi),
        )
        res = _lib.SamResult()
        _lib.check(_lib.asam_sam_predictor_predict(ctypes.byref(self._p), ctypes.byref(q), int(bool(multimask)), ctypes.byref(res)))
        C, H, W = res.n_masks, res.h, res.w
        # The outputs are views of the library's buffers (no copy), freed with the last view.
        # The mask form not asked for is freed at once.
        if return_logits:
            _lib.free_now(res.masks)
            res.masks = None
        else:
            _lib.free_now(res.mask_logits)
            res.mask_logits = None
        owner = _lib.Owner(_lib.asam_sam_result_free, ctypes.byref(res))
        owner.res = res
        if return_logits:
            masks = _lib.view(res.mask_logits, (B, C, H, W), ctypes.c_float, np.float32, owner)
        else:
            masks = _lib.view(res.masks, (B, C, H, W), ctypes.c_uint8, np.bool_, owner)
        iou = _lib.view(res.iou, (B, C), ctypes.c_float, np.float32, owner)
        low = _lib.view(res.low_res, (B, C, self._low, self._low), ctypes.c_float, np.float32, owner)
        return masks, iou, low

    # ref: segment_anything/predictor.py:252 (get_image_embedding)
    def get_image_embedding(self):
        """The (1, 256, 64, 64) float32 image embedding (a copy: the predictor's buffer is
        reused by the next set_image)."""
        if not self.is_image_set:
            raise RuntimeError("An image must be set with .set_image(...) to generate an embedding.")
        ptr = self._p.embedding.contents.data
        return np.ctypeslib.as_array(ptr, shape=(1, 256, self._grid, self._grid)).copy()

    @property
    def device(self):
        return "cpu"

    # ref: segment_anything/predictor.py:262 (reset_image)
    def reset_image(self):
        self.is_image_set = False
        self.features = None
        self.orig_h = self.orig_w = self.input_h = self.input_w = None
        self.original_size = self.input_size = None


def imread(path):
    """Read a JPEG or PNG as a uint8 (H, W, 3) RGB array (asam's decoder; no copy)."""
    img = _lib.Image()
    _lib.check(_lib.asam_image_read(_lib.fspath(path), 3, ctypes.byref(img)))
    owner = _lib.Owner(_lib.asam_image_free, ctypes.byref(img))
    owner.img = img
    return _lib.view(img.data, (img.h, img.w, 3), ctypes.c_uint8, np.uint8, owner)
