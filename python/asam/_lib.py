"""ctypes binding of libasam.so: the structs and functions of the public C headers that the
Python API uses (include/asam/error.h, engine.h, image.h, sam.h, data_dir.h, sam_amg.h, rle.h,
efficientsam.h).

Why ctypes and not a C extension: every call already goes through the library's plain C API
(ints, pointers, flat structs), ctypes releases the GIL around each foreign call, and no
CPython ABI is involved, so one wheel serves every Python 3 and nothing is compiled against
Python headers. The struct mirrors below must follow the headers; the tests compare every
output with the CLI's and the official reference values, so a layout drift cannot pass.

The library is found at <package>/lib/libasam.so.0 (where the wheel puts it), or at the path in
$ASAM_LIBRARY (e.g. a build tree's libasam.so)."""

import ctypes
import os

import numpy as np


class AsamError(RuntimeError):
    """A libasam call failed; the message is the library's one line (asam_last_error())."""


_here = os.path.dirname(os.path.abspath(__file__))


def _library_path():
    env = os.environ.get("ASAM_LIBRARY")
    if env:
        return env
    return os.path.join(_here, "lib", "libasam.so.0")


lib = ctypes.CDLL(_library_path())
_libc = ctypes.CDLL(None)
_libc.free.argtypes = [ctypes.c_void_p]
_libc.free.restype = None

c_int, c_float, c_char_p, c_void_p = ctypes.c_int, ctypes.c_float, ctypes.c_char_p, ctypes.c_void_p
P = ctypes.POINTER


# ---- structs (include/asam/*.h) ----------------------------------------------------------
class Image(ctypes.Structure):  # asam_image
    _fields_ = [("w", c_int), ("h", c_int), ("c", c_int), ("data", P(ctypes.c_uint8))]


class SamSizes(ctypes.Structure):  # asam_sam_sizes
    _fields_ = [("orig_h", c_int), ("orig_w", c_int), ("input_h", c_int), ("input_w", c_int)]


class SamConfig(ctypes.Structure):  # asam_sam_config (the first member of asam_sam)
    _fields_ = [
        ("embed_dim", c_int),
        ("depth", c_int),
        ("num_heads", c_int),
        ("head_dim", c_int),
        ("mlp_dim", c_int),
        ("window", c_int),
        ("n_global", c_int),
        ("global_idx", c_int * 64),
        ("is_global", c_int * 64),
        ("variant", ctypes.c_char * 16),
        ("img_size", c_int),
    ]


class Tensor(ctypes.Structure):  # asam_tensor: only the leading data pointer is read
    _fields_ = [("data", P(c_float))]


class SamPredictorS(ctypes.Structure):  # asam_sam_predictor
    _fields_ = [("model", c_void_p), ("ctx", c_void_p), ("embedding", P(Tensor)), ("sizes", SamSizes)]


class SamQuery(ctypes.Structure):  # asam_sam_query
    _fields_ = [
        ("batch", c_int),
        ("n_points", c_int),
        ("points", P(c_float)),
        ("labels", P(c_float)),
        ("boxes", P(c_float)),
        ("mask_input", P(c_float)),
    ]


class SamResult(ctypes.Structure):  # asam_sam_result
    _fields_ = [
        ("batch", c_int),
        ("n_masks", c_int),
        ("h", c_int),
        ("w", c_int),
        ("low_res", P(c_float)),
        ("iou", P(c_float)),
        ("mask_logits", P(c_float)),
        ("masks", P(ctypes.c_uint8)),
    ]


def _fn(name, restype, *argtypes):
    f = getattr(lib, name)
    f.restype = restype
    f.argtypes = list(argtypes)
    return f


asam_last_error = _fn("asam_last_error", c_char_p)
asam_clear_error = _fn("asam_clear_error", None)
asam_set_threads = _fn("asam_set_threads", None, c_int)
asam_get_threads = _fn("asam_get_threads", c_int)
asam_data_dir = _fn("asam_data_dir", c_char_p)
asam_sam_load = _fn("asam_sam_load", c_int, c_char_p, P(c_void_p))
asam_sam_free = _fn("asam_sam_free", None, c_void_p)
asam_sam_save = _fn("asam_sam_save", c_int, c_void_p, c_char_p)
asam_sam_config_preset = _fn("asam_sam_config_preset", c_int, c_char_p, P(SamConfig))
asam_sam_init_random = _fn("asam_sam_init_random", c_int, P(SamConfig), ctypes.c_uint64, P(c_void_p))
asam_sam_predictor_init = _fn("asam_sam_predictor_init", c_int, P(SamPredictorS), c_void_p)
asam_sam_predictor_free = _fn("asam_sam_predictor_free", None, P(SamPredictorS))
asam_sam_predictor_set_image = _fn("asam_sam_predictor_set_image", c_int, P(SamPredictorS), P(Image))
asam_sam_predictor_set_embedding = _fn(
    "asam_sam_predictor_set_embedding", c_int, P(SamPredictorS), P(c_float), P(SamSizes)
)
asam_sam_predictor_predict = _fn(
    "asam_sam_predictor_predict", c_int, P(SamPredictorS), P(SamQuery), c_int, P(SamResult)
)
asam_sam_result_free = _fn("asam_sam_result_free", None, P(SamResult))
asam_image_read = _fn("asam_image_read", c_int, c_char_p, c_int, P(Image))
asam_image_free = _fn("asam_image_free", None, P(Image))


def last_error():
    msg = asam_last_error()
    return msg.decode("utf-8", "replace") if msg else "unknown error"


def check(rc):
    """Raise AsamError with the library's message when a call returned non-zero."""
    if rc != 0:
        raise AsamError(last_error())


def fspath(path):
    return os.fsencode(os.fspath(path))


def float_ptr(a):
    """Pointer to a C-contiguous float32 array (None -> NULL)."""
    return None if a is None else a.ctypes.data_as(P(c_float))


class Owner:
    """Frees library-allocated memory once every numpy view of it is gone."""

    def __init__(self, free, *args):
        self._free, self._args = free, args

    def __del__(self):
        if self._free is not None:
            self._free(*self._args)
            self._free = None


def view(ptr, shape, ctype, dtype, owner):
    """numpy array over library memory (no copy) that keeps `owner` alive."""
    n = int(np.prod(shape))
    buf = (ctype * n).from_address(ctypes.cast(ptr, c_void_p).value)
    buf._asam_owner = owner
    return np.frombuffer(buf, dtype=dtype).reshape(shape)


def free_now(ptr):
    _libc.free(ctypes.cast(ptr, c_void_p))


# ---- automatic mask generator (include/asam/sam_amg.h, rle.h) ------------------------------
class Rle(ctypes.Structure):  # asam_rle
    _fields_ = [("h", c_int), ("w", c_int), ("n", ctypes.c_size_t), ("counts", P(ctypes.c_uint32))]


class AmgOptions(ctypes.Structure):  # asam_amg_options
    _fields_ = [
        ("points_per_side", c_int),
        ("points_per_batch", c_int),
        ("pred_iou_thresh", ctypes.c_double),
        ("stability_score_thresh", ctypes.c_double),
        ("stability_score_offset", ctypes.c_double),
        ("box_nms_thresh", ctypes.c_double),
        ("crop_n_layers", c_int),
        ("crop_nms_thresh", ctypes.c_double),
        ("crop_overlap_ratio", ctypes.c_double),
        ("crop_n_points_downscale_factor", c_int),
        ("min_mask_region_area", c_int),
        ("n_grids", c_int),
        ("grid_n", P(c_int)),
        ("grids", P(P(ctypes.c_double))),
    ]


class AmgMask(ctypes.Structure):  # asam_amg_mask
    _fields_ = [
        ("rle", Rle),
        ("bbox", ctypes.c_int64 * 4),
        ("area", ctypes.c_int64),
        ("predicted_iou", c_float),
        ("stability_score", c_float),
        ("point", ctypes.c_double * 2),
        ("crop_box", c_int * 4),
    ]


class AmgResult(ctypes.Structure):  # asam_amg_result
    _fields_ = [("width", c_int), ("height", c_int), ("n", ctypes.c_size_t), ("masks", P(AmgMask))]


asam_amg_options_default = _fn("asam_amg_options_default", None, P(AmgOptions))
asam_amg_generate = _fn("asam_amg_generate", c_int, c_void_p, P(Image), P(AmgOptions), c_void_p, c_void_p, P(AmgResult))
asam_amg_result_free = _fn("asam_amg_result_free", None, P(AmgResult))
asam_rle_decode = _fn("asam_rle_decode", c_int, P(Rle), P(ctypes.c_uint8))
asam_rle_to_string = _fn("asam_rle_to_string", c_void_p, P(Rle))


# ---- EfficientSAM (include/asam/efficientsam.h) --------------------------------------------
class EsamConfig(ctypes.Structure):  # asam_esam_config
    _fields_ = [
        ("embed_dim", c_int),
        ("depth", c_int),
        ("num_heads", c_int),
        ("mlp_dim", c_int),
        ("pos_grid", c_int),
        ("dim", c_int),
        ("dec_depth", c_int),
        ("dec_heads", c_int),
        ("dec_mlp_dim", c_int),
        ("up_dims", c_int * 2),
        ("iou_hidden", c_int),
        ("variant", ctypes.c_char * 16),
    ]


class EsamPredictorS(ctypes.Structure):  # asam_esam_predictor
    _fields_ = [("model", c_void_p), ("ctx", c_void_p), ("embedding", P(Tensor)), ("orig_h", c_int), ("orig_w", c_int)]


class EsamResult(ctypes.Structure):  # asam_esam_result
    _fields_ = [
        ("n_queries", c_int),
        ("n_masks", c_int),
        ("h", c_int),
        ("w", c_int),
        ("low_res", P(c_float)),
        ("iou", P(c_float)),
        ("mask_logits", P(c_float)),
        ("masks", P(ctypes.c_uint8)),
    ]


asam_esam_config_from_file = _fn("asam_esam_config_from_file", c_int, c_char_p, c_int, P(EsamConfig))
asam_esam_load = _fn("asam_esam_load", c_int, c_char_p, c_int, P(c_void_p))
asam_esam_free = _fn("asam_esam_free", None, c_void_p)
asam_esam_save = _fn("asam_esam_save", c_int, c_void_p, c_char_p)
asam_esam_cfg = _fn("asam_esam_cfg", P(EsamConfig), c_void_p)
asam_esam_config_preset = _fn("asam_esam_config_preset", c_int, c_char_p, P(EsamConfig))
asam_esam_init_random = _fn("asam_esam_init_random", c_int, P(EsamConfig), ctypes.c_uint64, P(c_void_p))
asam_esam_predictor_init = _fn("asam_esam_predictor_init", c_int, P(EsamPredictorS), c_void_p)
asam_esam_predictor_free = _fn("asam_esam_predictor_free", None, P(EsamPredictorS))
asam_esam_predictor_set_image_f32 = _fn(
    "asam_esam_predictor_set_image_f32", c_int, P(EsamPredictorS), P(c_float), c_int, c_int
)
asam_esam_predictor_set_embedding = _fn(
    "asam_esam_predictor_set_embedding", c_int, P(EsamPredictorS), P(c_float), c_int, c_int
)
asam_esam_predictor_predict = _fn(
    "asam_esam_predictor_predict", c_int, P(EsamPredictorS), c_int, c_int, P(c_float), P(c_float), c_int, P(EsamResult)
)
asam_esam_result_free = _fn("asam_esam_result_free", None, P(EsamResult))
asam_esam_resize_logits = _fn("asam_esam_resize_logits", c_int, P(c_float), c_int, c_int, c_int, P(c_float))
