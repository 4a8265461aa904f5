"""hat_min: a compact, readable re-implementation of Hierarchical Alignment Transformers (HAT).

Bin et al., "Unifying Two-Stream Encoders with Transformers for Cross-Modal Retrieval",
ACM Multimedia 2023. The public API:

    from hat_min import HAT, HATConfig, xattn_similarity, hinge_triplet_loss, recall_at_k
    model = HAT(HATConfig.preset("tiny"))          # offline; "minilm" offline too; "paper" needs the hub
"""
from .alignment import hierarchical_similarity, xattn_similarity
from .compositional import family_accuracy, family_labels
from .config import PRESETS, HATConfig
from .loss import hinge_triplet_loss
from .metrics import coco_1k, recall_at_k, retrieval_ranks
from .model import HAT
from .pretrained import OfflineError
from .runtime import autocast, pick_device

__version__ = "0.1.0"
__all__ = [
    "HAT", "HATConfig", "PRESETS", "OfflineError", "xattn_similarity", "hierarchical_similarity",
    "hinge_triplet_loss", "recall_at_k", "retrieval_ranks", "coco_1k", "pick_device", "autocast",
    "family_accuracy", "family_labels",
]
