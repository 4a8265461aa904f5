"""HAT end to end: shapes for every offline preset, scores, loss, gradients, the paper preset offline."""
import pytest
import torch

from hat_min import HAT, HATConfig, OfflineError, hinge_triplet_loss, xattn_similarity


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
        expected = sum(xattn_similarity(i, t, mask, "i2t", 9.0) for i, t in zip(img, txt))
        torch.testing.assert_close(tiny_model.score(img, txt, mask), expected)


def test_loss_matches_hinge_on_scores(tiny_model, text_batch):
    ids, mask = text_batch
    images = torch.randn(3, 3, 64, 64)
    with torch.no_grad():
        sims = tiny_model.score(tiny_model.encode_image(images), tiny_model.encode_text(ids, mask), mask)
        loss = tiny_model(images, ids, mask)
        loss_all = tiny_model(images, ids, mask, max_violation=False)
    assert loss.item() == pytest.approx(hinge_triplet_loss(sims, 0.2, True).item(), abs=1e-5)
    assert loss_all.item() == pytest.approx(hinge_triplet_loss(sims, 0.2, False).item(), abs=1e-5)


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
    model(torch.randn(3, 3, 64, 64), ids, mask, max_violation=False).backward()
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
        loss = model(images, ids, mask, max_violation=False)
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    assert losses[-1] < 0.5 * losses[0]


def test_text_bf16_cpu_gives_fp32_features_close_to_fp32(text_batch, monkeypatch):
    import hat_min.runtime as runtime

    monkeypatch.setattr(runtime, "cpu_has_native_bf16", lambda: True)  # bf16 runs (emulated if need be)
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
