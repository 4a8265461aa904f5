"""The offline weights of the ``minilm`` presets, and the scripts that made them.

HAT fine-tunes an ImageNet-22k Swin-B and a pretrained BERT. Offline there are no vision weights to
download, so hat_min pretrains the Swin of the ``minilm`` preset on labels the scene generator gives for
free (what is under each patch, as ImageNet or detection labels would), on scenes apart from every split
of the default generated dataset; its text encoder is MiniLM as its package ships it. A second file
holds MiniLM layers taught to label each caption word's group and place: the answer to the family swaps,
used only by the named variant ``minilm_labelled``. Both ship in fp16 with a JSON card each:

    scenes_swin.safetensors / .json     the Swin names the object under every 8x8 patch (``image.py``)
    scenes_minilm.safetensors / .json   MiniLM's layers 4-6 label every caption token (``text.py``; variant)

    python -m hat_min.weights            # both, deterministic (byte-identical files on one machine)

``hat_min.encoders`` loads them (``HATConfig.image_weights`` / ``text_weights``); ``cards.py`` writes
the card beside each file (data, steps, sha256, held-out accuracy), which tests/test_weights.py checks.
"""
