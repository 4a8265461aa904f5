"""Evaluation: encode once, blocked scoring equals brute force, ensembles, COCO folds, memory, table, quiet mode."""
import pytest
import torch

from data_prep.synthetic import generate
from hat_min import HAT, HATConfig, coco_1k, recall_at_k
from hat_min.evaluation.data import EvalImages, eval_captions, tokenize
from hat_min.evaluation.protocols import encode, evaluate, feature_memory_bytes, similarity
from hat_min.evaluation.tables import format_table
from hat_min.encoders import load_tokenizer

CFG = HATConfig.preset("tiny")
FAST = {"workers": 0, "progress": False, "batch_size": 25, "image_block": 8}  # several text batches and blocks


@pytest.fixture(scope="module")
def split():
    return generate(n_train=4, n_val=4, n_test=12, seed=7, progress=False)["test"]


@pytest.fixture(scope="module")
def models():
    """An i2t and a t2i model with different weights (the paper's ensemble pairs such two)."""
    torch.manual_seed(0)
    i2t = HAT(CFG).eval()
    return i2t, HAT(CFG.replace(direction="t2i", level_weights=(0.5, 1.0, 2.0))).eval()


def brute_force(model, split, captions_per_image=5):
    """The slow way: every image and every caption in one batch, then ``model.score`` in one go."""
    images = torch.stack([EvalImages(split, model.config)[i] for i in range(len(split))])
    ids, mask = tokenize(load_tokenizer(model.config), eval_captions(split, captions_per_image), CFG.max_text_len)
    with torch.no_grad():
        return model.score(model.encode_image(images), model.encode_text(ids, mask), mask)


@pytest.mark.parametrize("which", [0, 1])
def test_evaluate_equals_brute_force(models, split, which):
    model = models[which]
    result = evaluate(model, split, return_sims=True, **FAST)
    reference = brute_force(model, split)
    torch.testing.assert_close(result["sims"], reference, atol=1e-4, rtol=0)
    assert result["sims"].dtype == torch.float32 and result["sims"].device.type == "cpu"
    expected = recall_at_k(reference)
    assert {k: result[k] for k in expected} == pytest.approx(expected)
    assert result["info"]["n_images"] == 12 and result["info"]["n_captions"] == 60


def test_family_metrics_and_baselines_on_generated_scenes(models, split):
    from hat_min.evaluation.compositional import bag_of_words_similarity, family_accuracy, family_labels
    from hat_min.evaluation.protocols import encode, global_embeddings

    model = models[0]
    result = evaluate(model, split, return_sims=True, baselines=True, **FAST)
    labels = family_labels(split)
    expected = family_accuracy(result["sims"], labels)
    assert {k: result[k] for k in expected} == pytest.approx(expected)
    img, cap = global_embeddings(encode(model, split, progress=False, workers=0))
    pooled = result["baselines"]["pooled"]
    assert pooled["family_t2i"] == pytest.approx(family_accuracy(img @ cap.T, labels)["family_t2i"])
    assert pooled["i2t_r1"] == pytest.approx(recall_at_k(img @ cap.T)["i2t_r1"])
    words = result["baselines"]["bag of words"]
    assert words["family_i2t"] == pytest.approx(family_accuracy(bag_of_words_similarity(split), labels)["family_i2t"])
    assert result["baselines"]["chance"]["t2i_r1"] == pytest.approx(100 / 12)
    assert "baselines" not in evaluate(model, split, **FAST)  # only when asked


def test_each_image_and_caption_is_encoded_once(models, split, monkeypatch):
    model = models[0]
    seen = {"images": 0, "captions": 0, "text_masks": []}
    encode_image, encode_text = model.encode_image, model.encode_text

    def count_images(images):
        seen["images"] += len(images)
        return encode_image(images)

    def count_captions(ids, mask):
        seen["captions"] += len(ids)
        seen["text_masks"].append(mask)
        return encode_text(ids, mask)

    monkeypatch.setattr(model, "encode_image", count_images)
    monkeypatch.setattr(model, "encode_text", count_captions)
    evaluate(model, split, **{**FAST, "batch_size": 10})
    assert seen["images"] == len(split) and seen["captions"] == 5 * len(split)
    assert len(seen["text_masks"]) == 6  # batches of 10 captions
    assert all(mask[:, -1].any() for mask in seen["text_masks"])  # each batch padded to its longest caption only
    assert len({mask.shape[1] for mask in seen["text_masks"]}) > 1


def test_ensemble_is_the_sum_of_similarities(models, split):
    result = evaluate(list(models), split, return_sims=True, **FAST)
    reference = brute_force(models[0], split) + brute_force(models[1], split)
    torch.testing.assert_close(result["sims"], reference, atol=2e-4, rtol=0)
    torch.testing.assert_close(result["sims"], result["model_sims"][0] + result["model_sims"][1])
    expected = recall_at_k(reference)
    assert {k: result[k] for k in expected} == pytest.approx(expected)
    assert result["info"]["models"] == 2


def test_coco_protocols(models, split):
    ten = split.select(range(10))
    folds = evaluate(models[0], ten, "coco1k", fold_images=5, return_sims=True, **FAST)
    assert {k: folds[k] for k in recall_at_k(folds["sims"])} == pytest.approx(coco_1k(brute_force(models[0], ten),
                                                                                        fold_images=5))
    whole = evaluate(models[0], ten, "coco5k", **FAST)
    assert whole["rsum"] == pytest.approx(recall_at_k(folds["sims"])["rsum"])
    with pytest.raises(ValueError, match="fold_images=4"):
        evaluate(models[0], ten, "coco1k", fold_images=4, **FAST)


def test_feature_memory_at_the_paper_dimensions():
    paper = feature_memory_bytes(1000, 5000, (784, 196, 49), 32, 768, torch.float16)  # Flickr30K test
    release = feature_memory_bytes(5 * 1000, 5000, (784, 196, 49), 32, 768, torch.float64)  # each image 5x, fp64
    print(f"Flickr30K test features: {paper / 1e9:.2f} GB in fp16; the release's way: {release / 1e9:.1f} GB")
    assert paper < 2.5e9
    assert 10 < release / paper < 20


def test_memory_estimate_matches_what_encode_holds(models, split):
    encoded = encode(models[0], split, workers=0, progress=False)
    regions = [t.shape[1] for t in encoded.image_levels]
    assert regions == [64, 16, 4]
    width = encoded.mask.shape[1]
    assert encoded.nbytes == feature_memory_bytes(12, 60, regions, width, CFG.embed_dim, torch.float32)
    assert all(t.dtype == torch.float32 for t in encoded.image_levels + encoded.text_levels)  # CPU: float32
    assert not bool(encoded.mask.all()) and bool(encoded.mask[:, -1].any())  # padded to the longest caption


def test_format_table_shows_the_numbers(models, split):
    result = evaluate(models[0], split, **FAST)
    table = format_table({"HAT i2t": result, "ensemble": {**result, "rsum": 123.45}})
    for key in ("i2t_r1", "i2t_r5", "i2t_r10", "t2i_r1", "t2i_r5", "t2i_r10", "rsum"):
        assert f"{result[key]:.1f}" in table
    assert "HAT i2t" in table and "123.5" in table and "rSum" in table and "t2i R@10" in table
    assert len(format_table(result).splitlines()) == 3  # a single result is one row


def test_progress_false_is_silent_and_true_shows_bars(models, split, capsys):
    evaluate(models[0], split, **FAST)
    assert capsys.readouterr() == ("", "")
    evaluate(models[0], split, **{**FAST, "progress": True})
    out, err = capsys.readouterr()
    assert "MB" in out and "encoding images" in err and "encoding captions" in err and "scoring" in err


def test_clear_errors(models, split):
    with pytest.raises(ValueError, match="at least one model"):
        evaluate([], split, **FAST)
    with pytest.raises(ValueError, match="fewer than 6 captions"):
        evaluate(models[0], split, captions_per_image=6, **FAST)
    with pytest.raises(ValueError, match="unknown protocol"):
        evaluate(models[0], split, "5k", **FAST)
    with pytest.raises(ValueError, match="lacks the column"):
        evaluate(models[0], split.remove_columns("captions"), **FAST)
    encoded = encode(models[0], split.select(range(2)), workers=0, progress=False)
    with pytest.raises(ValueError, match="not encoded by a model of this config"):
        similarity(CFG.replace(levels=((4, 4),)), encoded, progress=False)


def test_a_tokenizer_of_another_vocabulary_is_refused(models, split):
    def big_vocabulary(captions, **kwargs):
        return {"input_ids": torch.full((len(captions), 4), 40_000), "attention_mask": torch.ones(len(captions), 4)}

    with pytest.raises(ValueError, match="has 30522 tokens"):
        evaluate(models[0], split, tokenizer=big_vocabulary, **FAST)


def test_training_mode_is_restored(split):
    torch.manual_seed(0)
    model = HAT(CFG).train()
    encode(model, split.select(range(2)), workers=0, progress=False)
    assert model.training


def test_coco_5k_features_fit_in_about_12_gb():
    ours = feature_memory_bytes(5000, 25000, (784, 196, 49), 32, 768, torch.float16)  # MSCOCO 5K test
    release = feature_memory_bytes(5 * 5000, 25000, (784, 196, 49), 32, 768, torch.float64)
    print(f"MSCOCO 5K features: {ours / 1e9:.1f} GB in fp16; the release's way: {release / 1e9:.0f} GB")
    assert 11e9 < ours < 12e9
    assert release > 10 * ours


@pytest.mark.parametrize("free_gb, expected", [(80, "cuda"), (24, "cuda"), (20, "cpu"), (8, "cpu")])
def test_features_stay_on_the_gpu_only_when_they_fit_in_half_its_free_memory(monkeypatch, free_gb, expected):
    from hat_min.evaluation import protocols as ev

    monkeypatch.setattr(torch.cuda, "mem_get_info", lambda device=None: (free_gb * 10**9, 80 * 10**9))
    coco = feature_memory_bytes(5000, 25000, (784, 196, 49), 32, 768, torch.float16)  # 11.6 GB
    assert ev._storage_device(torch.device("cuda"), coco).type == expected
    assert ev._storage_device(torch.device("cpu"), coco).type == "cpu"


def test_host_features_are_scored_on_the_requested_device_a_block_at_a_time(models, split):
    """Features in host memory give the same matrix whatever the image block (what a GPU gets at a time)."""
    encoded = encode(models[0], split, workers=0, progress=False)
    whole = similarity(models[0], encoded, image_block=1000, progress=False, device="cpu")
    torch.testing.assert_close(similarity(models[0], encoded, image_block=5, progress=False, device="cpu"), whole)


def test_evaluate_counts_the_pairs_scored_with_cross_attention(models, split):
    result = evaluate(models[0], split, **FAST)
    assert result["xattn_pairs"] == result["info"]["xattn_pairs"] == 12 * 60


def test_default_chunk_size_is_larger_on_a_gpu():
    from hat_min.evaluation.protocols import default_chunk_size

    assert default_chunk_size(torch.device("cuda")) > default_chunk_size(torch.device("cpu")) >= 256


@pytest.mark.parametrize("which", [0, 1])
def test_evaluation_runs_on_the_eager_equations(models, split, which):
    """The model scored by its equations (``scan_implementation="eager"``) ranks as by the fast default."""
    model = models[which]
    eager = HAT(model.config.replace(scan_implementation="eager")).eval()
    eager.load_state_dict(model.state_dict())
    fast = evaluate(model, split, return_sims=True, **FAST)
    slow = evaluate(eager, split, return_sims=True, **FAST)
    torch.testing.assert_close(slow["sims"], fast["sims"], atol=1e-5, rtol=1e-5)
    assert {k: round(v, 6) for k, v in slow.items() if isinstance(v, float)} == \
           {k: round(v, 6) for k, v in fast.items() if isinstance(v, float)}


def test_a_cache_dir_keeps_each_models_scores_and_reads_them_back(models, split, tmp_path, monkeypatch):
    import hat_min.evaluation.protocols as protocols

    first = evaluate(list(models), split, return_sims=True, baselines=True, cache_dir=tmp_path, **FAST)
    plain = evaluate(list(models), split, return_sims=True, baselines=True, **FAST)
    torch.testing.assert_close(first["sims"], plain["sims"])
    assert first["baselines"]["pooled"] == plain["baselines"]["pooled"]
    assert first["info"]["cached"] == 0 and len(list(tmp_path.glob("*-gallery.pt"))) == 2  # one file per model

    def no_encoding(*args, **kwargs):
        raise AssertionError("encoded again: the cache was not read")

    monkeypatch.setattr(protocols, "encode", no_encoding)
    again = evaluate(list(models), split, return_sims=True, baselines=True, cache_dir=tmp_path, **FAST)
    assert again["info"]["cached"] == 2 and again["info"]["encode_s"] == 0
    torch.testing.assert_close(again["sims"], first["sims"])
    assert {k: again[k] for k in plain if k != "info" and k != "sims" and k != "model_sims"} == \
        {k: first[k] for k in plain if k != "info" and k != "sims" and k != "model_sims"}
    assert again["info"]["feature_bytes"] == first["info"]["feature_bytes"] > 0
    changed = HAT(models[0].config).eval()
    changed.load_state_dict(models[0].state_dict())
    with torch.no_grad():
        changed.text_proj[0].weight.add_(0.01)  # other weights: another key, so it must encode (and fail here)
    with pytest.raises(AssertionError, match="encoded again"):
        evaluate(changed, split, cache_dir=tmp_path, **FAST)
    with pytest.raises(AssertionError, match="encoded again"):  # another split: another key
        evaluate(models[0], split.select(range(4)), cache_dir=tmp_path, **FAST)


def test_a_cache_dir_with_a_tokenizer_given_apart_is_refused(models, split, tmp_path):
    with pytest.raises(ValueError, match="cache_dir keys the scores"):
        evaluate(models[0], split, cache_dir=tmp_path, tokenizer=load_tokenizer(CFG), **FAST)
    assert not list(tmp_path.iterdir())
