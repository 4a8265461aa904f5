"""HAT end to end: shapes for every offline preset, scores, the objective, gradients, every scan implementation,
the paper preset offline, and the pooled embeddings."""
import math

import pytest
import torch

from hat_min import HAT, HATConfig, OfflineError, contrastive_loss, hinge_triplet_loss, scan_score
from hat_min.model import pooled_embedding


@pytest.mark.parametrize("name", ["tiny", "minilm"])
def test_shapes_for_offline_presets(name, text_batch):
    cfg = HATConfig.preset(name)
    model = HAT(cfg).eval()
    ids, mask = text_batch
    with torch.no_grad():
        img = model.encode_image(torch.randn(2, 3, cfg.image_size, cfg.image_size))
        txt = model.encode_text(ids, mask)
        sims = model.score(img, txt, mask)
    assert [tuple(f.shape) for f in img] == [(2, 64, cfg.embed_dim), (2, 16, cfg.embed_dim), (2, 4, cfg.embed_dim)]
    assert [tuple(f.shape) for f in txt] == [(3, 10, cfg.embed_dim)] * 3
    assert sims.shape == (2, 3) and torch.isfinite(sims).all()


def test_score_is_the_sum_of_levels(tiny_model, text_batch):
    ids, mask = text_batch
    with torch.no_grad():
        img = tiny_model.encode_image(torch.randn(3, 3, 64, 64))
        txt = tiny_model.encode_text(ids, mask)
        expected = sum(scan_score(i, t, mask, "i2t", 9.0) for i, t in zip(img, txt))
        torch.testing.assert_close(tiny_model.score(img, txt, mask), expected)


def test_the_objective_is_the_chosen_loss_on_the_scores(tiny_model, text_batch):
    ids, mask = text_batch
    images = torch.randn(3, 3, 64, 64)
    image_ids = torch.tensor([0, 1, 0])
    with torch.no_grad():
        img, txt = tiny_model.encode_image(images), tiny_model.encode_text(ids, mask)
        sims = tiny_model.score(img, txt, mask)
        scores, loss = tiny_model(images, ids, mask)  # HAT's objective: the hinge on the hardest negative
        _, loss_all = tiny_model(images, ids, mask, image_ids, negatives="all")
        _, nce = tiny_model(images, ids, mask, negatives="infonce", temperature=0.5)
        _, pooled = tiny_model(images, ids, mask, image_ids, pooled_weight=0.3, pooled_temperature=0.1)
    torch.testing.assert_close(scores, sims)
    assert loss.item() == pytest.approx(hinge_triplet_loss(sims, 0.2, True).item(), abs=1e-5)
    assert loss_all.item() == pytest.approx(hinge_triplet_loss(sims, 0.2, False, image_ids).item(), abs=1e-5)
    assert nce.item() == pytest.approx(contrastive_loss(sims, 0.5).item(), abs=1e-4)
    cosines = pooled_embedding(img) @ pooled_embedding(txt, mask).T
    expected = hinge_triplet_loss(sims, 0.2, True, image_ids) + 0.3 * contrastive_loss(cosines, 0.1, image_ids)
    assert pooled.item() == pytest.approx(expected.item(), abs=1e-4)
    margin = HAT(HATConfig.preset("tiny", margin=0.5)).eval()
    margin.load_state_dict(tiny_model.state_dict())
    with torch.no_grad():
        assert margin(images, ids, mask)[1].item() == pytest.approx(hinge_triplet_loss(sims, 0.5).item(), abs=1e-4)
    with pytest.raises(ValueError, match="negatives must be one of hardest, all, infonce"):
        tiny_model(images, ids, mask, negatives="max_violation")


def test_forward_hands_the_features_to_gather(tiny_model, text_batch):
    """Several processes: ``gather`` returns the global batch, and the objective scores all of it."""
    ids, mask = text_batch
    images = torch.randn(3, 3, 64, 64)

    def twice(image_feats, text_feats, attention_mask, image_ids):  # a "second process" with the same slice
        return ([torch.cat([f, f]) for f in image_feats], [torch.cat([f, f]) for f in text_feats],
                torch.cat([attention_mask, attention_mask]), torch.cat([image_ids, image_ids + 3]))

    with torch.no_grad():
        scores, _ = tiny_model(images, ids, mask, torch.arange(3), gather=twice)
    assert scores.shape == (6, 6)


def test_padding_tokens_do_not_change_scores(tiny_model, text_batch):
    ids, mask = text_batch
    longer_ids = torch.cat([ids, torch.zeros(3, 6, dtype=ids.dtype)], 1)
    longer_mask = torch.cat([mask, torch.zeros(3, 6, dtype=mask.dtype)], 1)
    images = torch.randn(2, 3, 64, 64)
    with torch.no_grad():
        img = tiny_model.encode_image(images)
        a = tiny_model.score(img, tiny_model.encode_text(ids, mask), mask)
        b = tiny_model.score(img, tiny_model.encode_text(longer_ids, longer_mask), longer_mask)
    torch.testing.assert_close(a, b, atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("direction", ["i2t", "t2i"])
def test_gradient_reaches_every_projection_and_both_backbones(direction, text_batch):
    torch.manual_seed(1)
    model = HAT(HATConfig.preset("tiny", direction=direction))
    ids, mask = text_batch
    model(torch.randn(3, 3, 64, 64), ids, mask, negatives="all")[1].backward()
    for name, module in [("image_proj", model.image_proj), ("text_proj", model.text_proj),
                         ("image_norms", model.image_norms)]:
        for level, layer in enumerate(module):
            assert layer.weight.grad is not None and layer.weight.grad.abs().sum() > 0, f"{name}[{level}]"
    assert model.image_encoder.body.patch_embed.proj.weight.grad.abs().sum() > 0
    assert model.text_encoder.bert.embeddings.word_embeddings.weight.grad.abs().sum() > 0


def test_level_subsets_build(text_batch):
    ids, mask = text_batch
    for levels in [((4, 4),), ((3, 3), (4, 4)), ((1, 1), (2, 2), (3, 3), (4, 4))]:
        model = HAT(HATConfig.preset("tiny", levels=levels))
        assert len(model.image_proj) == len(levels) == len(model.encode_text(ids, mask))


def test_paper_preset_fails_offline_before_building(monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(OfflineError, match="HATConfig.preset\\('tiny'\\)"):
        HAT(HATConfig.preset("paper"))


def test_a_few_steps_learn_on_a_fixed_batch():
    """The model, loss and gradients fit together: the loss of one batch falls when trained on it."""
    torch.manual_seed(0)
    model = HAT(HATConfig.preset("tiny"))
    images = torch.randn(6, 3, 64, 64)
    ids = torch.randint(1000, 5000, (6, 8))
    ids[:, 0], ids[:, -1] = 101, 102
    mask = torch.ones_like(ids)
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    losses = []
    for _ in range(15):
        _, loss = model(images, ids, mask, negatives="all")
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    assert losses[-1] < 0.5 * losses[0]


def test_text_bf16_cpu_gives_fp32_features_close_to_fp32(text_batch, monkeypatch):
    from hat_min import encoders

    monkeypatch.setattr(encoders, "cpu_has_native_bf16", lambda: True)  # bf16 runs (emulated if need be)
    torch.manual_seed(0)
    exact = HAT(HATConfig.preset("tiny")).eval()
    fast = HAT(HATConfig.preset("tiny", text_bf16_cpu=True)).eval()
    fast.load_state_dict(exact.state_dict())
    ids, mask = text_batch
    with torch.no_grad():
        for a, b in zip(exact.encode_text(ids, mask), fast.encode_text(ids, mask)):
            assert b.dtype == torch.float32
            assert not torch.equal(a, b)  # bf16 did run
            assert (a - b).abs().max() < 0.05 * a.abs().max()


def test_region_position_is_what_tells_swapped_places_apart(text_batch):
    # SCAN averages over regions, so moving image content to other regions cannot change a score;
    # a learned position per region (region_position) breaks that symmetry.
    ids, mask = text_batch
    torch.manual_seed(0)
    model = HAT(HATConfig.preset("tiny", region_position=True)).eval()
    plain = HAT(HATConfig.preset("tiny", region_position=False)).eval()
    plain.load_state_dict({k: v for k, v in model.state_dict().items() if not k.startswith("region_pos")})
    images = torch.randn(2, 3, 64, 64)
    with torch.no_grad():
        with_pos, without = model.encode_image(images), plain.encode_image(images)
        for level, (a, b) in enumerate(zip(with_pos, without)):
            torch.testing.assert_close(a, b + model.region_pos[level])  # (B, R, D) = content + (R, D)
        txt = model.encode_text(ids, mask)
        moved = [f.flip(1) for f in without]  # the same content in other places
        torch.testing.assert_close(plain.score(moved, txt, mask), plain.score(without, txt, mask))
        moved_pos = [f.flip(1) + pos for f, pos in zip(without, model.region_pos)]
        assert not torch.allclose(model.score(moved_pos, txt, mask), model.score(with_pos, txt, mask))
    assert "region_pos.0" not in plain.state_dict() and HATConfig.preset("paper").region_position is False


@pytest.mark.parametrize("direction", ["i2t", "t2i"])
def test_the_model_scores_and_trains_alike_on_every_implementation(direction, text_batch):
    """``scan_implementation`` changes how the score is computed, not what it is: scores, losses, gradients."""
    ids, mask = text_batch
    images = torch.randn(3, 3, 64, 64)
    torch.manual_seed(0)
    base = HAT(HATConfig.preset("tiny", direction=direction, text_dropout=0.0))
    results = {}
    for name in ("eager", "blocked", "auto"):
        model = HAT(base.config.replace(scan_implementation=name))
        model.load_state_dict(base.state_dict())
        scores, loss = model(images, ids, mask)
        loss.backward()
        results[name] = scores.detach(), loss.detach(), model.image_proj[-1].weight.grad
    for name in ("blocked", "auto"):
        for got, expected in zip(results[name], results["eager"]):
            torch.testing.assert_close(got, expected, atol=1e-4, rtol=1e-4)


# ----------------------------------------------------------------------------- pooled embeddings
def _literal(levels, mask):
    out = []
    for n in range(levels[0].shape[0]):
        total = torch.zeros(levels[0].shape[-1], dtype=torch.float64)
        for feats in levels:
            tokens = [feats[n, t].double() for t in range(feats.shape[1]) if mask is None or mask[n, t]]
            mean = sum(tokens) / len(tokens)
            total += mean / math.sqrt(float(mean @ mean))
        out.append(total / math.sqrt(float(total @ total)))
    return torch.stack(out).float()


def test_matches_a_literal_loop_and_ignores_padding():
    g = torch.Generator().manual_seed(0)
    levels = [torch.randn(5, 7, 8, generator=g), torch.randn(5, 7, 8, generator=g)]
    mask = torch.arange(7)[None] < torch.tensor([1, 3, 7, 2, 5])[:, None]
    for feats in levels:
        feats[~mask] = float("nan")  # padding may hold anything
    torch.testing.assert_close(pooled_embedding(levels, mask), _literal(levels, mask))


def test_without_a_mask_every_token_counts():
    g = torch.Generator().manual_seed(1)
    levels = [torch.randn(3, 4, 6, generator=g), torch.randn(3, 1, 6, generator=g)]
    out = pooled_embedding(levels)
    torch.testing.assert_close(out, _literal(levels, None))
    torch.testing.assert_close(out.norm(dim=-1), torch.ones(3))


def test_bad_input_is_named():
    with pytest.raises(ValueError, match="at least one level"):
        pooled_embedding([])
    with pytest.raises(ValueError, match="mask must be"):
        pooled_embedding([torch.zeros(2, 3, 4)], torch.ones(3, 3))


def _sincos_by_hand(n_regions: int, dim: int) -> torch.Tensor:
    """The 2-D sin-cos start of the region positions, one region and one frequency at a time."""
    side, quarter = math.isqrt(n_regions), dim // 4
    rows = []
    for r in range(n_regions):
        y, x = (r // side + 0.5) / side, (r % side + 0.5) / side  # row-major, as Swin's tokens
        angles_y = [2 * math.pi * k / quarter * y for k in range(1, quarter + 1)]
        angles_x = [2 * math.pi * k / quarter * x for k in range(1, quarter + 1)]
        row = [math.sin(a) for a in angles_y] + [math.cos(a) for a in angles_y]
        row += [math.sin(a) for a in angles_x] + [math.cos(a) for a in angles_x]
        norm = math.sqrt(sum(v * v for v in row))
        rows.append([5.0 * v / norm for v in row])
    return torch.tensor(rows)


def test_sincos_region_positions_are_the_2d_code_and_start_the_minilm_model():
    from hat_min.model import sincos_positions

    for n, dim in [(64, 256), (16, 8), (4, 12)]:
        torch.testing.assert_close(sincos_positions(n, dim), _sincos_by_hand(n, dim), atol=1e-5, rtol=1e-5)
    code = sincos_positions(64, 256)  # an 8 x 8 grid
    assert torch.allclose(code.norm(dim=1), torch.full((64,), 5.0))
    dist = torch.cdist(code, code)
    assert dist[0, 1] < dist[0, 7] < dist[0, 63] and dist[0, 8] < dist[0, 56]  # neighbours are closer than far cells
    for bad in [(10, 256), (64, 10)]:
        with pytest.raises(ValueError, match="square grid and a width divisible by 4"):
            sincos_positions(*bad)
    model = HAT(HATConfig.preset("minilm"))
    assert HATConfig.preset("minilm").region_position_init == "sincos"
    for pos, n in zip(model.region_pos, (64, 16, 4)):
        assert pos.requires_grad
        torch.testing.assert_close(pos.detach(), _sincos_by_hand(n, 256), atol=1e-5, rtol=1e-5)
    torch.manual_seed(0)
    normal = HAT(HATConfig.preset("minilm", region_position_init="normal")).region_pos[0].detach()
    assert 0.015 < normal.std() < 0.025  # the N(0, 0.02) start
    with pytest.raises(ValueError, match="region_position_init must be one of normal, sincos"):
        HATConfig.preset("minilm", region_position_init="learned")
