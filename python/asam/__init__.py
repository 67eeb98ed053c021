"""asam: Segment Anything (segment-anything-compatible API), Stable Diffusion 1.5 + ControlNet
and the ASAM adversarial-tuning pipeline, in C (libasam), from Python.

Existing segment-anything code changes one import:

    from asam import sam_model_registry, SamPredictor
    sam = sam_model_registry["vit_b"](checkpoint="sam_vit_b_01ec64.pth")
    predictor = SamPredictor(sam)
    predictor.set_image(image)                       # uint8 (H, W, 3) RGB
    masks, scores, logits = predictor.predict(box=np.array([10, 20, 300, 400]))

Also SamAutomaticMaskGenerator (segment everything) and EfficientSAM's
build_efficient_sam_vitt / build_efficient_sam_vits with the official model call.
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
from .automatic_mask_generator import SamAutomaticMaskGenerator
# The submodule first: importing it binds asam.build_efficient_sam to the module, which the
# function then replaces (`from asam.build_efficient_sam import ...` still finds the module).
from .build_efficient_sam import build_efficient_sam_vits, build_efficient_sam_vitt
from .efficient_sam import EfficientSam, build_efficient_sam
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
    "EfficientSam",
    "ResizeLongestSide",
    "Sam",
    "SamAutomaticMaskGenerator",
    "SamPredictor",
    "attack",
    "attack_pgd",
    "build_efficient_sam",
    "build_efficient_sam_vits",
    "build_efficient_sam_vitt",
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
