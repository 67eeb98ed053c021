"""efficient_sam.build_efficient_sam's names: build_efficient_sam_vitt / build_efficient_sam_vits
(EfficientSAM-Ti / -S from their official checkpoints) and build_efficient_sam.

# ref: yformer/EfficientSAM efficient_sam/build_efficient_sam.py:9"""

from .efficient_sam import EfficientSam, build_efficient_sam  # noqa: F401


# ref: yformer/EfficientSAM efficient_sam/build_efficient_sam.py:9 (the official default path)
def build_efficient_sam_vitt(checkpoint="weights/efficient_sam_vitt.pt"):
    """EfficientSAM-Ti (ViT-Ti encoder: width 192, 3 heads) from efficient_sam_vitt.pt."""
    return build_efficient_sam(encoder_patch_embed_dim=192, encoder_num_heads=3, checkpoint=checkpoint).eval()


# ref: yformer/EfficientSAM efficient_sam/build_efficient_sam.py:17
def build_efficient_sam_vits(checkpoint="weights/efficient_sam_vits.pt"):
    """EfficientSAM-S (ViT-S encoder: width 384, 6 heads) from efficient_sam_vits.pt."""
    return build_efficient_sam(encoder_patch_embed_dim=384, encoder_num_heads=6, checkpoint=checkpoint).eval()
