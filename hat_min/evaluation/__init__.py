"""Evaluating HAT: encode a split once, score every pair in blocks, Recall@K under the paper's protocols.

- ``data.py``: a prepared split in evaluation's order (images once, caption j of image j // 5), and the
  image transforms and tokenisation that training shares;
- ``protocols.py``: ``encode`` (every image and caption once), ``similarity`` (every pair, in blocks),
  ``evaluate`` (Flickr30K "1k", MSCOCO "coco1k" / "coco5k", ensembles), and the references beside HAT
  (pooled embeddings, a bag of words, chance);
- ``retrieval.py``: two-stage search (pooled embeddings find candidates, HAT reranks them);
- ``compositional.py``: within-family accuracy on the generated scenes (binding, roles);
- ``knockout.py``: one model's levels scored alone inside families, so every subset of levels costs no training;
- ``cache.py``: scores kept on disk, keyed by the model's weights and the split (notebooks 03-05 share them);
- ``tables.py``: results as Markdown tables.

    from hat_min.evaluation import evaluate, load_splits, format_table
    print(format_table({"HAT": evaluate(model, load_splits("data/synthetic")["test"])}))
"""
from .compositional import KINDS, bag_of_words_similarity, family_accuracy, family_chance, family_labels
from .data import eval_captions, image_transform, load_splits, tokenize
from .protocols import (Encoded, chance_recall, encode, evaluate, feature_memory_bytes, global_embeddings,
                        level_similarity, similarity)
from .retrieval import rerank, rerank_curve, rerank_evaluate
from .tables import format_family_table, format_table

__all__ = [
    "KINDS", "bag_of_words_similarity", "family_accuracy", "family_chance", "family_labels", "eval_captions",
    "image_transform", "load_splits", "tokenize", "Encoded", "chance_recall", "encode", "evaluate",
    "feature_memory_bytes", "global_embeddings", "level_similarity", "similarity", "rerank", "rerank_curve", "rerank_evaluate",
    "format_family_table", "format_table",
]
