"""The literal SCAN formula, one pair at a time in float64: the reference of the alignment and kernel tests."""
import torch
import torch.nn.functional as F


def literal_scan(images, captions, mask, direction, lam):
    """The formula of HAT_METHOD.md, one (image, caption) pair at a time, padding sliced away."""
    out = torch.zeros(images.shape[0], captions.shape[0], dtype=torch.float64)
    for i in range(images.shape[0]):
        for j in range(captions.shape[0]):
            v = images[i].double()  # (R, D)
            w = captions[j][mask[j]].double()  # (W_j, D) real words only
            query, context = (v, w) if direction == "i2t" else (w, v)
            a = F.leaky_relu(query @ context.T, 0.1)  # (Q, K)
            a = a / (a.norm(dim=0, keepdim=True) + 1e-8)  # for each context token: L2 over queries
            alpha = torch.softmax(lam * a, dim=1)  # over the context tokens
            attended = alpha @ context  # (Q, D)
            out[i, j] = F.cosine_similarity(query, attended, dim=1, eps=1e-8).mean()
    return out
