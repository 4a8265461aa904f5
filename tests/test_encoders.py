"""SwinStages and BertLayers: token grids of the requested depths."""
import pytest
import torch

from hat_min.config import HATConfig
from hat_min.encoders import BertLayers, SwinStages


def test_swin_stages_are_token_sequences():
    swin = SwinStages(HATConfig.preset("tiny"), stages=(4, 1, 2))
    feats = swin(torch.randn(2, 3, 64, 64))
    # 64 px, patch 4: a 16x16 grid, halved by each patch merging; widths 48, 96, 192, 384
    assert {s: tuple(f.shape) for s, f in feats.items()} == {1: (2, 256, 48), 2: (2, 64, 96), 4: (2, 4, 384)}
    assert swin.channels == {1: 48, 2: 96, 4: 384}


def test_swin_tokens_follow_the_image_grid():
    """Channels-last maps flatten row by row: changing one corner patch moves only nearby tokens."""
    swin = SwinStages(HATConfig.preset("tiny", swin_depths=(1, 1, 1, 1)), stages=(1,)).eval()
    x = torch.randn(1, 3, 64, 64)
    y = x.clone()
    y[..., :4, :4] += 5.0  # the first 4x4 patch only
    with torch.no_grad():
        changed = (swin(x)[1] - swin(y)[1]).abs().amax(-1)[0]  # (256,)
    assert changed[0] > 1e-3
    assert torch.all(changed.view(16, 16)[8:, :] < 1e-6)  # far rows (other windows) untouched


def test_bert_layers_and_truncation(text_batch):
    ids, mask = text_batch
    bert = BertLayers(HATConfig.preset("minilm"), layers=(2, 4))
    hidden = bert(ids, mask)
    assert set(hidden) == {2, 4} and hidden[4].shape == (3, 10, 384)
    assert len(bert.bert.encoder.layer) == 4  # layers 5 and 6 are never used


def test_bert_layer_beyond_depth_is_clear():
    with pytest.raises(ValueError, match="layer 7 but 'minilm' has 6 layers"):
        BertLayers(HATConfig.preset("minilm"), layers=(7,))
