"""Recommender models behind one interface (see :mod:`models.base`); no dependency on ``batch``."""

from .base import MODEL_TYPES, NotFittedError, Recommender, create_model, load_model
from .factor import iteration_callback
from .topk import topk_scores

# importing the model modules registers them in MODEL_TYPES
from . import als, bpr, itemknn, popularity  # noqa: E402, F401  isort: skip
from .als import ALSRecommender  # noqa: E402
from .bpr import BPRRecommender  # noqa: E402
from .itemknn import ItemKNNRecommender  # noqa: E402
from .popularity import PopularityRecommender  # noqa: E402

__all__ = [
    "MODEL_TYPES",
    "ALSRecommender",
    "BPRRecommender",
    "ItemKNNRecommender",
    "NotFittedError",
    "PopularityRecommender",
    "Recommender",
    "create_model",
    "iteration_callback",
    "load_model",
    "topk_scores",
]
