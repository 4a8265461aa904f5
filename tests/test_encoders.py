"""hat_min.encoders: token grids of the requested depths, where the weights come from, the hub's offline message,
and the text encoder's bf16 on a CPU."""
import subprocess
import sys

import pytest
import torch

from hat_min import encoders
from hat_min.config import HATConfig
from hat_min.encoders import (BertLayers, OfflineError, SwinStages, bert_model, check_available, hub_downloads,
                              load_tokenizer, minilm_path)


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


def test_bert_layers_attend_eagerly_on_a_cpu_with_sdpa_s_numbers(monkeypatch, text_batch):
    """On a CPU the attention runs as "eager" (faster to differentiate there); outputs and gradients are those of the
    "sdpa" it was loaded with."""
    ids, mask = text_batch
    bert = BertLayers(HATConfig.preset("minilm", text_bf16_cpu=False), layers=(2, 4)).eval()
    assert bert.loaded_attention == bert.attention == "sdpa"

    def run():  # layer 4's features and the gradient of a query weight
        bert.zero_grad(set_to_none=True)
        out = bert(ids, mask)[4]
        out.square().mean().backward()
        return out.detach(), bert.bert.encoder.layer[1].attention.self.query.weight.grad.clone()

    with monkeypatch.context() as m:
        m.setattr(encoders, "CPU_ATTENTION", "sdpa")  # the reference: attention as loaded
        sdpa = run()
    assert bert.bert.config._attn_implementation == "sdpa"
    eager = run()
    assert bert.attention == "eager" and bert.bert.config._attn_implementation == "eager"
    torch.testing.assert_close(eager[0], sdpa[0], atol=1e-5, rtol=1e-4)
    torch.testing.assert_close(eager[1], sdpa[1], atol=1e-6, rtol=1e-3)


def test_bert_layer_beyond_depth_is_clear():
    with pytest.raises(ValueError, match="layer 7 but 'minilm' has 6 layers"):
        BertLayers(HATConfig.preset("minilm"), layers=(7,))


def test_minilm_carries_real_pretrained_weights():
    from safetensors.torch import load_file

    bert = bert_model(HATConfig.preset("minilm"))
    shipped = load_file(str(minilm_path() / "model.safetensors"))
    key = next(k for k in shipped if k.endswith("word_embeddings.weight"))
    assert bert.config.num_hidden_layers == 6 and bert.config.hidden_size == 384
    torch.testing.assert_close(bert.embeddings.word_embeddings.weight, shipped[key])


def test_minilm_embeds_related_sentences_closer():
    """The pretrained encoder knows English: a paraphrase is closer than an unrelated sentence."""
    cfg = HATConfig.preset("minilm")
    tok, bert = load_tokenizer(cfg), bert_model(cfg).eval()
    batch = tok(["a red circle above a blue square", "a blue square below a red circle",
                 "the stock market fell sharply today"], padding=True, return_tensors="pt")
    with torch.no_grad():
        hidden = bert(**batch).last_hidden_state
    mask = batch["attention_mask"][..., None]
    pooled = torch.nn.functional.normalize((hidden * mask).sum(1) / mask.sum(1), dim=-1)
    assert pooled[0] @ pooled[1] > pooled[0] @ pooled[2] + 0.2


def test_scratch_tokenizer_is_uncased_wordpiece():
    tok = load_tokenizer(HATConfig.preset("tiny"))
    ids = tok("Two small RED triangles", max_length=32, truncation=True)["input_ids"]
    assert ids[0] == 101 and ids[-1] == 102 and len(tok) == 30522
    assert tok.convert_ids_to_tokens(ids[1:-1])[:3] == ["two", "small", "red"]


def test_offline_presets_need_nothing_from_the_hub():
    assert hub_downloads(HATConfig.preset("tiny")) == [] and hub_downloads(HATConfig.preset("minilm")) == []
    check_available(HATConfig.preset("minilm"))  # no error


def test_paper_fails_offline_in_one_sentence(monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(OfflineError) as info:
        check_available(HATConfig.preset("paper"))
    message = str(info.value)
    assert "needs the internet" in message and "'tiny'" in message and "'minilm'" in message
    assert message.count(". ") == 0 and "\n" not in message  # one sentence, one line


def test_paper_offline_message_from_a_fresh_process():
    """What a user sees: one line naming the offline presets, no traceback from transformers or timm."""
    code = ("from hat_min import HAT, HATConfig, OfflineError\n"
            "try:\n    HAT(HATConfig.preset('paper'))\n"
            "except OfflineError as e:\n    print('MSG', e)\n")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120,
                         env={"HF_HUB_OFFLINE": "1", "PATH": "/usr/bin:/bin"})
    assert out.returncode == 0, out.stderr
    line = next(l for l in out.stdout.splitlines() if l.startswith("MSG"))
    assert "HATConfig.preset('tiny')" in line and "cannot be reached" in line


def test_offline_weights_that_do_not_fit_are_one_clear_error(tmp_path):
    from safetensors.torch import save_file

    save_file({"backbone.patch_embed.proj.weight": torch.zeros(3, 3)}, str(tmp_path / "w.safetensors"))
    with pytest.raises(ValueError, match="do not fit this encoder"):
        SwinStages(HATConfig.preset("minilm", image_weights=str(tmp_path / "w.safetensors")), stages=(1,))
    with pytest.raises(FileNotFoundError, match="no weights at"):
        SwinStages(HATConfig.preset("minilm", image_weights=str(tmp_path / "none.safetensors")), stages=(1,))


def test_the_hub_is_probed_only_when_a_download_is_needed(monkeypatch):
    import data_prep.hub

    probes = []
    monkeypatch.setattr(data_prep.hub, "offline_reason", lambda **kw: probes.append(kw) or "no network here")
    check_available(HATConfig.preset("minilm"))  # offline presets: no probe at all
    assert probes == []
    with pytest.raises(OfflineError, match=r"\(no network here\)"):
        check_available(HATConfig.preset("paper"))
    assert probes == [{"flags": ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE")}]


def test_text_bf16_runs_only_where_the_cpu_has_it(monkeypatch, text_batch):
    assert isinstance(encoders.cpu_has_native_bf16(), bool)
    ids, mask = text_batch
    bert = BertLayers(HATConfig.preset("tiny", text_bf16_cpu=True), layers=(2,)).eval()
    seen = []
    bert.bert.encoder.layer[0].register_forward_hook(lambda m, i, o: seen.append(torch.get_autocast_dtype("cpu")
                                                                                 if torch.is_autocast_enabled("cpu")
                                                                                 else None))
    monkeypatch.setattr(encoders, "cpu_has_native_bf16", lambda: True)
    with torch.no_grad():
        out = bert(ids, mask)
        assert seen[-1] == torch.bfloat16 and out[2].dtype == torch.float32  # outputs back in fp32
        with torch.autocast("cpu", dtype=torch.float16):  # a caller's own autocast is left alone
            bert(ids, mask)
        assert seen[-1] == torch.float16
    monkeypatch.setattr(encoders, "cpu_has_native_bf16", lambda: False)  # emulated bf16 would be slower
    with torch.no_grad():
        bert(ids, mask)
    assert seen[-1] is None
