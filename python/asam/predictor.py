"""segment_anything.predictor's name, for code that imports it from there."""
from .sam import SamPredictor  # noqa: F401
