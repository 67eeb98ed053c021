"""segment_anything.SamAutomaticMaskGenerator over asam's C generator (include/asam/sam_amg.h):
the same constructor options and the same list of records from generate(), with the official
types (bool (H, W) masks or RLE dicts, Python ints and floats). The whole generation (encoder
per crop, point batches, filters, NMS, small-region removal) is one C call that runs with the
GIL released; `asam segment --everything` runs the same code.

Differences: none in results. pycocotools and OpenCV are not needed for output_mode="coco_rle"
and min_mask_region_area > 0 (the library has its own pycocotools-compatible RLE string and
OpenCV-order connected components). Option values outside what the library accepts
(points_per_side > 1024, crop_n_layers > 4, points_per_batch > 4096) raise AsamError.

# ref: facebookresearch/segment-anything segment_anything/automatic_mask_generator.py:35"""

import ctypes

import numpy as np

from . import _lib
from .sam import Sam, SamPredictor


_MODES = ("binary_mask", "uncompressed_rle", "coco_rle")


class SamAutomaticMaskGenerator:
    # ref: segment_anything/automatic_mask_generator.py:36 (__init__, the official defaults)
    def __init__(
        self,
        model,
        points_per_side=32,
        points_per_batch=64,
        pred_iou_thresh=0.88,
        stability_score_thresh=0.95,
        stability_score_offset=1.0,
        box_nms_thresh=0.7,
        crop_n_layers=0,
        crop_nms_thresh=0.7,
        crop_overlap_ratio=512 / 1500,
        crop_n_points_downscale_factor=1,
        point_grids=None,
        min_mask_region_area=0,
        output_mode="binary_mask",
    ):
        """Generates masks for a whole image from a grid of point prompts, filters them by
        predicted IoU and stability, removes duplicates with box NMS (within and across
        crops) and optionally small holes and islands. The options are the official ones:
        exactly one of points_per_side and point_grids (a list of (N, 2) arrays in [0, 1],
        one per crop layer) is given; output_mode is "binary_mask", "uncompressed_rle" or
        "coco_rle"."""
        if not isinstance(model, Sam):
            raise TypeError("SamAutomaticMaskGenerator: model must be an asam Sam (sam_model_registry[...]), got %s" % type(model).__name__)
        # ref: segment_anything/automatic_mask_generator.py:98
        if (points_per_side is None) == (point_grids is None):
            raise ValueError("Exactly one of points_per_side or point_grid must be provided.")
        if output_mode not in _MODES:
            raise ValueError(f"Unknown output_mode {output_mode}.")
        self.point_grids = point_grids
        self.predictor = SamPredictor(model)
        self.points_per_side = points_per_side
        self.points_per_batch = points_per_batch
        self.pred_iou_thresh = pred_iou_thresh
        self.stability_score_thresh = stability_score_thresh
        self.stability_score_offset = stability_score_offset
        self.box_nms_thresh = box_nms_thresh
        self.crop_n_layers = crop_n_layers
        self.crop_nms_thresh = crop_nms_thresh
        self.crop_overlap_ratio = crop_overlap_ratio
        self.crop_n_points_downscale_factor = crop_n_points_downscale_factor
        self.min_mask_region_area = min_mask_region_area
        self.output_mode = output_mode

    def _options(self, keep):
        """The C options; `keep` collects the arrays the struct points into."""
        o = _lib.AmgOptions()
        _lib.asam_amg_options_default(ctypes.byref(o))
        o.points_per_batch = int(self.points_per_batch)
        o.pred_iou_thresh = float(self.pred_iou_thresh)
        o.stability_score_thresh = float(self.stability_score_thresh)
        o.stability_score_offset = float(self.stability_score_offset)
        o.box_nms_thresh = float(self.box_nms_thresh)
        o.crop_n_layers = int(self.crop_n_layers)
        o.crop_nms_thresh = float(self.crop_nms_thresh)
        o.crop_overlap_ratio = float(self.crop_overlap_ratio)
        o.crop_n_points_downscale_factor = int(self.crop_n_points_downscale_factor)
        o.min_mask_region_area = int(self.min_mask_region_area)
        if self.points_per_side is not None:
            # The library builds the official grids of every layer (amg_grid.c).
            o.points_per_side = int(self.points_per_side)
            return o
        # Explicit grids: layer i uses point_grids[i] (the official code indexes the list by
        # crop layer, so extra grids are never used and are not passed).
        o.points_per_side = 0
        grids = [np.ascontiguousarray(g, dtype=np.float64) for g in self.point_grids[: o.crop_n_layers + 1]]
        for i, g in enumerate(grids):
            if g.ndim != 2 or g.shape[1] != 2:
                raise ValueError("point_grids[%d]: expected an (N, 2) array, got shape %s" % (i, g.shape))
        n = len(grids)
        o.n_grids = n
        grid_n = (ctypes.c_int * max(n, 1))(*[g.shape[0] for g in grids])
        ptrs = (ctypes.POINTER(ctypes.c_double) * max(n, 1))(*[g.ctypes.data_as(ctypes.POINTER(ctypes.c_double)) for g in grids])
        o.grid_n = grid_n
        o.grids = ptrs
        keep += [grids, grid_n, ptrs]
        return o

    # ref: segment_anything/automatic_mask_generator.py:137 (generate)
    def generate(self, image):
        """image: uint8 (H, W, 3) RGB. Returns one dict per mask, in the official order:
        segmentation ((H, W) bool array, or {"size": [H, W], "counts": [int, ...] | str}),
        area (int), bbox (XYWH ints), predicted_iou (float), point_coords ([[x, y]] floats),
        stability_score (float), crop_box (XYWH ints)."""
        image = np.asarray(image)
        if image.dtype != np.uint8 or image.ndim != 3 or image.shape[2] != 3:
            raise ValueError("generate: expected a uint8 (H, W, 3) array, got %s %s" % (image.dtype, image.shape))
        image = np.ascontiguousarray(image)
        img = _lib.Image(image.shape[1], image.shape[0], 3, image.ctypes.data_as(ctypes.POINTER(ctypes.c_uint8)))
        keep = []
        opts = self._options(keep)
        res = _lib.AmgResult()
        _lib.check(
            _lib.asam_amg_generate(
                self.predictor.model._handle, ctypes.byref(img), ctypes.byref(opts), None, None, ctypes.byref(res)
            )
        )
        try:
            return [self._record(res.masks[i], res.height, res.width) for i in range(res.n)]
        finally:
            _lib.asam_amg_result_free(ctypes.byref(res))

    def _record(self, m, h, w):
        # ref: segment_anything/automatic_mask_generator.py:173 (encode masks)
        if self.output_mode == "binary_mask":
            mask = np.empty((h, w), np.uint8)
            _lib.check(_lib.asam_rle_decode(ctypes.byref(m.rle), mask.ctypes.data_as(ctypes.POINTER(ctypes.c_uint8))))
            seg = mask.view(np.bool_)
        elif self.output_mode == "uncompressed_rle":
            counts = np.ctypeslib.as_array(m.rle.counts, shape=(m.rle.n,)).tolist() if m.rle.n else []
            seg = {"size": [h, w], "counts": counts}
        else:
            s = _lib.asam_rle_to_string(ctypes.byref(m.rle))
            if not s:
                raise MemoryError("coco_rle: out of memory")
            seg = {"size": [h, w], "counts": ctypes.string_at(s).decode("ascii")}
            _lib.free_now(s)
        # ref: segment_anything/automatic_mask_generator.py:184 (the record)
        return {
            "segmentation": seg,
            "area": int(m.area),
            "bbox": [int(v) for v in m.bbox],
            "predicted_iou": float(m.predicted_iou),
            "point_coords": [[float(m.point[0]), float(m.point[1])]],
            "stability_score": float(m.stability_score),
            "crop_box": [int(v) for v in m.crop_box],
        }
