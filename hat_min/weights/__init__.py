"""The offline weights of the ``minilm`` preset, and the scripts that made them.

HAT fine-tunes an ImageNet-22k Swin-B and a pretrained BERT. Offline there are no vision weights to
download and MiniLM's tokens do not say where a group stands, so hat_min pretrains both encoders of
the ``minilm`` preset on labels the scene generator gives for free, on scenes apart from every split of
the default generated dataset, and ships the weights (fp16) with a JSON card each:

    scenes_swin.safetensors / .json     the Swin names the object under every 8x8 patch (``image.py``)
    scenes_minilm.safetensors / .json   MiniLM's layers 4-6 label every caption token (``text.py``)

    python -m hat_min.weights            # both, deterministic (byte-identical files on one machine)

``hat_min.encoders`` loads them (``HATConfig.image_weights`` / ``text_weights``); ``cards.py`` writes
the card beside each file (data, steps, sha256, held-out accuracy), which tests/test_weights.py checks.
"""
