"""hinge_triplet_loss against a literal double loop over the score matrix."""
import pytest
import torch

from hat_min.loss import hinge_triplet_loss


def literal_hinge(scores, margin, max_violation, ids=None):
    n = scores.shape[0]
    ids = list(range(n)) if ids is None else ids.tolist()
    total = 0.0
    for i in range(n):  # image i against its caption negatives
        costs = [max(0.0, margin + scores[i, j].item() - scores[i, i].item()) for j in range(n) if ids[j] != ids[i]]
        total += (max(costs) if max_violation else sum(costs)) if costs else 0.0
    for j in range(n):  # caption j against its image negatives
        costs = [max(0.0, margin + scores[i, j].item() - scores[j, j].item()) for i in range(n) if ids[i] != ids[j]]
        total += (max(costs) if max_violation else sum(costs)) if costs else 0.0
    return total


@pytest.mark.parametrize("max_violation", [True, False])
@pytest.mark.parametrize("margin", [0.0, 0.2, 0.7])
@pytest.mark.parametrize("n, seed", [(1, 0), (2, 1), (8, 2), (17, 3)])
def test_matches_literal(max_violation, margin, n, seed):
    scores = torch.randn(n, n, generator=torch.Generator().manual_seed(seed))
    got = hinge_triplet_loss(scores, margin, max_violation)
    assert got.shape == ()
    assert got.item() == pytest.approx(literal_hinge(scores, margin, max_violation), abs=1e-4)


def test_ties_and_perfect_separation():
    assert hinge_triplet_loss(torch.zeros(4, 4), 0.2).item() == pytest.approx(8 * 0.2)
    assert hinge_triplet_loss(torch.eye(4), 0.2).item() == 0.0


@pytest.mark.parametrize("max_violation", [True, False])
def test_same_image_captions_are_not_negatives(max_violation):
    scores = torch.randn(6, 6, generator=torch.Generator().manual_seed(4))
    ids = torch.tensor([0, 0, 1, 2, 2, 2])
    got = hinge_triplet_loss(scores, 0.2, max_violation, image_ids=ids)
    assert got.item() == pytest.approx(literal_hinge(scores, 0.2, max_violation, ids), abs=1e-4)


def test_gradient_reaches_hardest_negatives_only():
    scores = torch.tensor([[1.0, 0.9, 0.1], [0.0, 1.0, 0.2], [0.95, 0.3, 1.0]], requires_grad=True)
    hinge_triplet_loss(scores, 0.2).backward()
    # image 0's hardest caption is 1; caption 0's hardest image is 2; caption 2's hardest image is 1...
    assert scores.grad[0, 1] > 0 and scores.grad[2, 0] > 0
    assert scores.grad[0, 2] == 0


def test_rejects_non_square():
    with pytest.raises(ValueError, match="square"):
        hinge_triplet_loss(torch.randn(3, 4))


def literal_infonce(scores, temperature, ids=None):
    import math

    n = scores.shape[0]
    ids = list(range(n)) if ids is None else ids.tolist()
    total = 0.0
    for axis in (0, 1):
        for i in range(n):
            row = [(scores[i, j] if axis == 0 else scores[j, i]).item() / temperature for j in range(n)]
            allowed = [row[j] for j in range(n) if j == i or ids[j] != ids[i]]
            total += -row[i] + math.log(sum(math.exp(v) for v in allowed))
    return total


@pytest.mark.parametrize("temperature", [0.05, 0.1, 1.0])
@pytest.mark.parametrize("n, seed", [(1, 0), (5, 1), (12, 2)])
def test_contrastive_matches_literal(temperature, n, seed):
    from hat_min.loss import contrastive_loss

    scores = torch.randn(n, n, generator=torch.Generator().manual_seed(seed))
    assert contrastive_loss(scores, temperature).item() == pytest.approx(literal_infonce(scores, temperature), rel=1e-5)
    ids = torch.randint(0, max(1, n // 2), (n,), generator=torch.Generator().manual_seed(seed))
    got = contrastive_loss(scores, temperature, ids).item()
    assert got == pytest.approx(literal_infonce(scores, temperature, ids), rel=1e-5)
