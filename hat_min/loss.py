"""VSE++ hinge triplet loss (Faghri et al. 2018), the training objective of HAT.

For a square score matrix S (image i, caption j; the positive pairs on the diagonal):

    caption negatives of image i:  [margin + S[i, j] - S[i, i]]_+   for j != i
    image negatives of caption j:  [margin + S[i, j] - S[j, j]]_+   for i != j

With ``max_violation=True`` (HAT's setting) only the hardest negative of each row and each
column counts; otherwise all negatives are summed. The loss is summed over the batch.

    loss = hinge_triplet_loss(scores, margin=0.2)            # scores: (B, B)
    loss = contrastive_loss(scores, temperature=0.1)         # InfoNCE, a gentler start from scratch
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor


def hinge_triplet_loss(
    scores: Tensor, margin: float = 0.2, max_violation: bool = True, image_ids: Tensor | None = None
) -> Tensor:
    """VSE++ loss on a (B, B) score matrix with positives on the diagonal, both directions, summed."""
    if scores.dim() != 2 or scores.shape[0] != scores.shape[1]:
        raise ValueError(f"scores must be a square (B, B) matrix, got {tuple(scores.shape)}")
    positives = scores.diagonal()  # (B,)
    cost_caption = (margin + scores - positives[:, None]).clamp(min=0)  # (B, B) row i: image i
    cost_image = (margin + scores - positives[None, :]).clamp(min=0)  # (B, B) column j: caption j
    not_negative = torch.eye(scores.shape[0], dtype=torch.bool, device=scores.device)
    if image_ids is not None:  # two captions of the same image in a batch are not negatives
        not_negative = not_negative | (image_ids[:, None] == image_ids[None, :])
    cost_caption = cost_caption.masked_fill(not_negative, 0)
    cost_image = cost_image.masked_fill(not_negative, 0)
    if max_violation:
        return cost_caption.amax(dim=1).sum() + cost_image.amax(dim=0).sum()
    return cost_caption.sum() + cost_image.sum()


def contrastive_loss(scores: Tensor, temperature: float = 0.1, image_ids: Tensor | None = None) -> Tensor:
    """InfoNCE on a (B, B) score matrix: cross-entropy of each row and column towards the diagonal, summed.

    Every negative pulls in proportion to how close it is (a soft version of the hardest
    negative), which gives a randomly initialised model a useful gradient from the first step.
    """
    if scores.dim() != 2 or scores.shape[0] != scores.shape[1]:
        raise ValueError(f"scores must be a square (B, B) matrix, got {tuple(scores.shape)}")
    logits = scores / temperature  # (B, B)
    if image_ids is not None:  # another caption of the same image is not a negative
        same = (image_ids[:, None] == image_ids[None, :]) & ~torch.eye(len(scores), dtype=torch.bool, device=scores.device)
        logits = logits.masked_fill(same, float("-inf"))
    target = torch.arange(scores.shape[0], device=scores.device)
    return F.cross_entropy(logits, target, reduction="sum") + F.cross_entropy(logits.T, target, reduction="sum")
