"""segment_anything.build_sam's names, for code that imports them from there."""
from .sam import _build_sam, build_sam, build_sam_vit_b, build_sam_vit_h, build_sam_vit_l, sam_model_registry  # noqa: F401
