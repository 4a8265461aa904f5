"""hat_min: a compact, readable re-implementation of Hierarchical Alignment Transformers (HAT).

Bin et al., "Unifying Two-Stream Encoders with Transformers for Cross-Modal Retrieval",
ACM Multimedia 2023. The paper is the six modules at this level, in reading order:

    config.py     HATConfig and its presets (paper, and the offline tiny / minilm)
    encoders.py   Swin stages and BERT layers as token sequences, and where their weights come from
    scan.py       the score of one level (stacked cross-attention) and the sum over levels
    model.py      HAT: encode_image, encode_text, score, objective (loss), save / load
    loss.py       the hinge on the hardest negative (VSE++), and InfoNCE
    metrics.py    Recall@K, rSum, the MSCOCO 1K folds

Everything around it is one level down, by what it is for: ``fast/`` (blocked and C scoring, device and
precision), ``weights/`` (the offline weights and the scripts that made them), ``evaluation/``,
``training/`` and ``tutorial/`` (the notebooks' profiles, figures, explorer and ablations).

    from hat_min import HAT, HATConfig, recall_at_k
    model = HAT(HATConfig.preset("tiny"))          # offline; "minilm" offline too; "paper" needs the hub
"""
from . import fast  # registers the "blocked", "fused" and "auto" implementations of scan_score
from .config import PRESETS, HATConfig
from .encoders import OfflineError, load_tokenizer
from .loss import contrastive_loss, hinge_triplet_loss
from .metrics import coco_1k, recall_at_k, retrieval_ranks
from .model import HAT, pooled_embedding
from .scan import hierarchical_score, scan_eager, scan_score

__version__ = "0.1.0"
__all__ = [
    "HAT", "HATConfig", "PRESETS", "OfflineError", "load_tokenizer", "scan_score", "scan_eager", "hierarchical_score",
    "hinge_triplet_loss", "contrastive_loss", "recall_at_k", "retrieval_ranks", "coco_1k", "pooled_embedding", "fast",
]
