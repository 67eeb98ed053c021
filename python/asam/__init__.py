"""asam: Segment Anything (segment-anything-compatible API), Stable Diffusion 1.5 + ControlNet
and the ASAM adversarial-tuning pipeline, in C (libasam), from Python.

Existing segment-anything code changes one import:

    from asam import sam_model_registry, SamPredictor
    sam = sam_model_registry["vit_b"](checkpoint="sam_vit_b_01ec64.pth")
    predictor = SamPredictor(sam)
    predictor.set_image(image)                       # uint8 (H, W, 3) RGB
    masks, scores, logits = predictor.predict(box=np.array([10, 20, 300, 400]))
"""

from . import _lib
from ._lib import AsamError
from .sam import (
    ResizeLongestSide,
    Sam,
    SamPredictor,
    _build_sam,
    build_sam,
    build_sam_vit_b,
    build_sam_vit_h,
    build_sam_vit_l,
    imread,
    sam_model_registry,
)
from . import stages
from .stages import attack, attack_pgd, demo, eval, generate, invert, segment, train_controlnet, tune

__version__ = "0.1.0"


def set_threads(n):
    """CPU threads for libasam (OpenMP + OpenBLAS) and for the stages' program (--threads)."""
    n = int(n)
    if n < 1:
        raise ValueError("set_threads: expected a positive integer, got %d" % n)
    _lib.asam_set_threads(n)
    stages._threads = n


def get_threads():
    return _lib.asam_get_threads()


def data_dir():
    """The folder holding asam's data files (CLIP vocabulary, demo models)."""
    d = _lib.asam_data_dir()
    if not d:
        raise AsamError(_lib.last_error())
    return d.decode()


__all__ = [
    "AsamError",
    "ResizeLongestSide",
    "Sam",
    "SamPredictor",
    "attack",
    "attack_pgd",
    "build_sam",
    "build_sam_vit_b",
    "build_sam_vit_h",
    "build_sam_vit_l",
    "data_dir",
    "demo",
    "eval",
    "generate",
    "get_threads",
    "imread",
    "invert",
    "sam_model_registry",
    "segment",
    "set_threads",
    "stages",
    "train_controlnet",
    "tune",
]
