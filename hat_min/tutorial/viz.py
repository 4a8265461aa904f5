"""Pictures of a trained model: training curves, retrievals, attention maps, embeddings, an explorer.

    fig = training_curves("runs/demo/metrics.jsonl")          # loss, in-batch accuracy, validation rSum
    live = LivePlot("runs/cache", every=20)                   # the same curves, redrawn while training
    fig = retrieval_figure(test_split, sims)                  # text-to-image top-k, hits framed green
    fig = image_to_text_figure(test_split, sims)              # image-to-text top-k captions, hits ticked
    fig = similarity_figure(sims, n_images=40)                # the score matrix, true pairs outlined
    fig = attention_figure(test_split, encoded, cfg, image=0, caption=0, tokenizer=tok)  # word -> patch maps
    fig = embedding_projection(g_img, g_cap, labels)          # PCA of pooled embeddings
    acc, chance = neighbour_label_accuracy(pca_2d(g_img), labels)   # do the points cluster by label?
    fig = failures_figure(test_split, sims, "t2i")            # the queries whose truth ranks worst
    ui = explorer(model, test_split, encoded, sims)           # ipywidgets: type a query; pick an image (id, family)

``encoded`` is ``hat_min.evaluation.encode(model, split)`` and ``sims`` the (N_img, N_cap) matrix of
``hat_min.evaluation.similarity`` (caption j belongs to image j // captions_per_image). The generated scenes'
geometry (diagonal scenes, what a retrieved caption gets wrong) is in ``scenes.py``.
"""
from __future__ import annotations

import textwrap
from collections.abc import Sequence
from pathlib import Path

import torch

from ..evaluation.protocols import level_similarity  # noqa: F401  (viz.level_similarity in notebook 05)
from .curves import LivePlot, training_curves  # noqa: F401  (viz.training_curves, viz.LivePlot in the notebooks)

HIT, MISS = "#2ca02c", "#d62728"


def retrieval_figure(split, sims: torch.Tensor, queries: list[int] | None = None, k: int = 5,
                     captions_per_image: int = 5):
    """Text-to-image retrieval: each row a caption and its top-k images, the true image framed green."""
    import matplotlib.pyplot as plt

    from ..evaluation.data import eval_captions

    captions = eval_captions(split, captions_per_image)
    queries = queries if queries is not None else _spread(len(captions), 4)
    fig, axes = plt.subplots(len(queries), k + 1, figsize=(1.6 * (k + 1) + 1.6, 1.7 * len(queries)),
                             gridspec_kw={"width_ratios": [2.2] + [1] * k}, squeeze=False)
    for row, j in enumerate(queries):
        top = sims[:, j].topk(k).indices.tolist()  # images ranked for caption j
        axes[row, 0].text(0, 0.5, textwrap.fill(captions[j], 28), va="center", fontsize=8)
        axes[row, 0].axis("off")
        for col, i in enumerate(top, start=1):
            ax = axes[row, col]
            ax.imshow(split[i]["image"].convert("RGB"), interpolation="nearest")
            ax.set_xticks([]), ax.set_yticks([])
            hit = i == j // captions_per_image
            for spine in ax.spines.values():
                spine.set_edgecolor(HIT if hit else MISS)
                spine.set_linewidth(3 if hit else 1)
            ax.set_title(f"#{col}", fontsize=7)
    fig.suptitle("text-to-image retrieval: top images per caption (true image framed green)", fontsize=10)
    fig.tight_layout()
    return fig


def save_retrieval_examples(split, sims: torch.Tensor, path: str | Path, **kwargs) -> Path:
    """Draw ``retrieval_figure`` and save it as a PNG (modest resolution)."""
    import matplotlib.pyplot as plt

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig = retrieval_figure(split, sims, **kwargs)
    fig.savefig(path, dpi=90)
    plt.close(fig)
    return path


def _spread(n: int, count: int) -> list[int]:
    """``count`` indices spread evenly over range(n)."""
    return [round(i * (n - 1) / max(1, count - 1)) for i in range(min(count, n))]


# ----------------------------------------------------------------------------- retrieval
def image_to_text_figure(split, sims: torch.Tensor, queries: Sequence[int] | None = None, k: int = 5,
                         captions_per_image: int = 5, wrap: int = 115):
    """Image-to-text retrieval: each row an image and its top-k captions, hits green with a tick, misses red."""
    import matplotlib.pyplot as plt

    from ..evaluation.data import eval_captions

    _check_sims(sims, len(split), captions_per_image)
    captions = eval_captions(split, captions_per_image)
    queries = list(queries) if queries is not None else _spread(len(split), 4)
    fig, axes = plt.subplots(len(queries), 2, figsize=(11, 1.75 * len(queries)), squeeze=False,
                             gridspec_kw={"width_ratios": [1, 6.5]})
    for (ax_img, ax_txt), i in zip(axes, queries):
        _show_image(ax_img, split[int(i)]["image"], title=f"image {i}")
        top = sims[int(i)].topk(k).indices.tolist()  # captions ranked for image i
        for rank, j in enumerate(top):
            hit = j // captions_per_image == int(i)
            text = f"#{rank + 1} {'✓' if hit else '✗'} {textwrap.shorten(captions[j], wrap)}"
            if not hit:
                text += f"  (image {j // captions_per_image})"
            ax_txt.text(0, 1 - (rank + 0.5) / k, text, va="center", fontsize=9, color=HIT if hit else MISS)
        ax_txt.set_axis_off()
    fig.suptitle("image-to-text retrieval: top captions per image (green ✓: one of its own captions)", fontsize=10)
    fig.tight_layout()
    return fig


def similarity_figure(sims: torch.Tensor, n_images: int = 40, captions_per_image: int = 5, group: int | None = 4):
    """The score matrix of the first ``n_images`` images and their captions, true pairs outlined.

    ``group``: images per family of hard negatives (the generated scenes come in fours); their
    blocks are marked with dashed lines. None: no family lines.
    """
    import matplotlib.pyplot as plt

    n = min(n_images, sims.shape[0])
    block = sims[:n, : n * captions_per_image].float().cpu().numpy()  # (n, n * cpi)
    fig, ax = plt.subplots(figsize=(12, 3.9))
    im = ax.imshow(block, aspect="auto", cmap="viridis", interpolation="nearest")
    for i in range(n):  # each image's own captions
        ax.add_patch(plt.Rectangle((i * captions_per_image - 0.5, i - 0.5), captions_per_image, 1, fill=False,
                                   edgecolor="white", linewidth=1.2))
    if group:
        for b in range(group, n, group):
            ax.axhline(b - 0.5, color="white", linestyle="--", linewidth=0.6, alpha=0.7)
            ax.axvline(b * captions_per_image - 0.5, color="white", linestyle="--", linewidth=0.6, alpha=0.7)
    ticks = list(range(0, n, max(1, n // 10)))
    ax.set_yticks(ticks)
    ax.set_xticks([t * captions_per_image + (captions_per_image - 1) / 2 for t in ticks], [str(t) for t in ticks])
    ax.set(xlabel=f"caption (grouped by image: {captions_per_image} per image)", ylabel="image",
           title=f"similarity of the first {n} images with their captions (white boxes: true pairs"
                 + (f"; dashed: families of {group})" if group else ")"))
    fig.colorbar(im, ax=ax, shrink=0.85, label="HAT score (sum over levels)")
    fig.tight_layout()
    return fig


def worst_queries(sims: torch.Tensor, direction: str = "t2i", n: int = 4, captions_per_image: int = 5,
                  distinct: bool = True) -> list[dict]:
    """The ``n`` queries whose truth ranks worst: [{query, rank (1-based), first (top retrieved), truth}].

    t2i: queries are captions, the truth their image; i2t: queries are images, the truth their
    best-ranked own caption. Ties in rank go to the lower query index. ``distinct`` (t2i): at most
    one caption per image, so that the five captions of one hard image do not fill the list.
    """
    from ..metrics import retrieval_ranks

    if direction not in ("i2t", "t2i"):
        raise ValueError(f"direction must be 'i2t' or 't2i', not {direction!r}")
    i2t, t2i = retrieval_ranks(sims, captions_per_image)  # 0-based ranks (N_img,), (N_cap,)
    ranks = t2i if direction == "t2i" else i2t
    order = sorted(range(len(ranks)), key=lambda q: (-int(ranks[q]), q))
    if direction == "t2i" and distinct:
        kept, images = [], set()
        for q in order:  # the worst caption of each image
            if q // captions_per_image not in images:
                images.add(q // captions_per_image)
                kept.append(q)
        order = kept
    out = []
    for q in order[:n]:
        if direction == "t2i":
            first, truth = int(sims[:, q].argmax()), q // captions_per_image
        else:
            own = sims[q, q * captions_per_image : (q + 1) * captions_per_image]
            first, truth = int(sims[q].argmax()), q * captions_per_image + int(own.argmax())
        out.append({"query": q, "rank": int(ranks[q]) + 1, "first": first, "truth": truth})
    return out


def failures_figure(split, sims: torch.Tensor, direction: str = "t2i", n: int = 4, k: int = 3,
                    captions_per_image: int = 5, wrap: int = 30):
    """The worst failures (``worst_queries``): each query, its truth with its rank, and what came first."""
    import matplotlib.pyplot as plt

    from ..evaluation.data import eval_captions

    _check_sims(sims, len(split), captions_per_image)
    captions = eval_captions(split, captions_per_image)
    rows = worst_queries(sims, direction, n, captions_per_image)
    fig, axes = plt.subplots(len(rows), k + 2, figsize=(2.0 * (k + 2) + 2.4, 2.0 * len(rows)), squeeze=False,
                             gridspec_kw={"width_ratios": [1.7, 1] + [1] * k} if direction == "t2i" else None)
    for row, f in zip(axes, rows):
        q = f["query"]
        if direction == "t2i":  # caption -> images
            _text_cell(row[0], f"caption {q}:\n" + textwrap.fill(captions[q], wrap))
            _show_image(row[1], split[f["truth"]]["image"], title=f"truth: rank {f['rank']}", hit=True)
            for col, i in enumerate(sims[:, q].topk(k).indices.tolist(), start=2):
                _show_image(row[col], split[i]["image"], title=f"#{col - 1}: image {i}",
                            hit=i == f["truth"])
        else:  # image -> captions
            _show_image(row[0], split[q]["image"], title=f"image {q}")
            _text_cell(row[1], f"truth (rank {f['rank']}):\n" + textwrap.fill(captions[f["truth"]], wrap), HIT)
            for col, j in enumerate(sims[q].topk(k).indices.tolist(), start=2):
                hit = j // captions_per_image == q
                _text_cell(row[col], f"#{col - 1} (image {j // captions_per_image}):\n" + textwrap.fill(captions[j], wrap),
                           HIT if hit else MISS)
    what = "captions whose image" if direction == "t2i" else "images whose best own caption"
    name = "text->image" if direction == "t2i" else "image->text"
    fig.suptitle(f"worst {name} retrieval failures: the {what} ranks lowest, and what came first", fontsize=10)
    fig.tight_layout()
    return fig


# ----------------------------------------------------------------------------- attention and embeddings
def attention_figure(split, encoded, config, image: int, caption: int, tokenizer, words: Sequence[str] | None = None,
                     max_words: int = 9, shared_scale: bool = True):
    """Word-to-patch attention of one (image, caption) pair at every level, over the image the model sees.

    Rows are levels, columns words (``words``, else the first ``max_words`` words that are not
    function words such as "a", "of"); a panel shows alpha of the config's direction
    (``hat_min.tutorial.attention.attention_maps``) on the Swin token grid of that level, opaque where the
    weight is high. ``shared_scale``: one colour scale for every level (equal colours, equal weights), else
    one per level. ``encoded`` holds the split's features.
    """
    import matplotlib.pyplot as plt

    from .attention import attention_maps, level_scores, token_grid
    from ..evaluation.data import eval_captions, tokenize

    text = eval_captions(split, encoded.captions_per_image)[caption]
    ids, _ = tokenize(tokenizer, [text], config.max_text_len)
    mask = encoded.mask[caption]  # (W,)
    tokens = tokenizer.convert_ids_to_tokens(ids[0][: int(mask.sum())])
    columns = _pick_words(tokens, words, max_words)
    pair = ([f[image].float().cpu() for f in encoded.image_levels], [f[caption].float().cpu() for f in encoded.text_levels])
    maps = attention_maps(*pair, mask.cpu(), config.direction, config.lambda_softmax)  # L x (W_real, R_l)
    scores = level_scores(*pair, mask.cpu(), config.direction, config.lambda_softmax)  # (L,)
    picture = _model_view(split[image]["image"], config)
    side = picture.size[0]
    fig, axes = plt.subplots(len(maps), len(columns) + 1, figsize=(1.45 * (len(columns) + 1) + 1.2, 1.75 * len(maps) + 1.0),
                             squeeze=False, layout="constrained")  # constrained: room for titles and colour bars
    top_all = max(float(m[columns].max()) for m in maps)
    for level, (row, m) in enumerate(zip(axes, maps)):
        grids = token_grid(m[columns])  # (words, g, g)
        stage, layer = config.levels[level]
        _show_image(row[0], picture, title=f"stage {stage} x layer {layer}\nscore {scores[level]:.2f}")
        top = top_all if shared_scale else float(m[columns].max())
        for ax, w, grid in zip(row[1:], columns, grids):
            ax.imshow(picture, extent=(0, side, side, 0), interpolation="nearest")
            shown = ax.imshow(grid.numpy(), extent=(0, side, side, 0), cmap="inferno", interpolation="nearest", vmin=0,
                              vmax=top, alpha=(0.1 + 0.8 * grid / top).clamp(0, 1).numpy())  # see-through where low
            ax.set_xticks([]), ax.set_yticks([])
            ax.set_title(tokens[w], fontsize=9)
        if not shared_scale or level == len(maps) - 1:  # one bar per level, or one for all beside every row
            bar = fig.colorbar(shown, ax=list(row) if not shared_scale else axes[:, 1:].ravel().tolist(),
                               shrink=0.85 if not shared_scale else 0.6, pad=0.01, aspect=12 * (1 if not shared_scale else 2))
            bar.solids.set_alpha(1)
            bar.ax.tick_params(labelsize=7)
            bar.set_label("weight" + (", every level" if shared_scale else ""), fontsize=8)
    how = ("regions attend to words (direction='i2t'): each region's weights sum to 1 over the words"
           if config.direction == "i2t" else "words attend to regions (direction='t2i'): each word's weights sum "
           "to 1 over the regions")
    fig.suptitle(textwrap.fill(f"image {image}, caption {caption}: \"{text}\"", 110) + f"\n{how}; bright = high",
                 fontsize=9)
    return fig


def pca_2d(x: torch.Tensor) -> torch.Tensor:
    """Coordinates of the rows of ``x`` (N, D) on their first two principal components: (N, 2), deterministic."""
    if x.dim() != 2 or x.shape[0] < 3 or x.shape[1] < 2:
        raise ValueError(f"pca_2d needs (N, D) with N >= 3 and D >= 2, got {tuple(x.shape)}")
    x = x.float() - x.float().mean(0)
    with torch.random.fork_rng():  # pca_lowrank draws a random projection
        torch.manual_seed(0)
        _, _, v = torch.pca_lowrank(x, q=min(6, *x.shape), center=False, niter=6)  # v (D, q)
    v = v[:, :2]
    v = v * torch.sign(v.gather(0, v.abs().argmax(0, keepdim=True)))  # largest loading positive: a fixed sign
    return x @ v  # (N, 2)


def neighbour_label_accuracy(points: torch.Tensor, labels: Sequence, groups: Sequence | None = None, k: int = 9,
                             seed: int = 0) -> tuple[float, float]:
    """How much points cluster by label: (accuracy, chance), percent.

    Accuracy: the share of points whose label is the majority label of their ``k`` nearest other
    points (a tie, possible with an even ``k`` or more than two labels, counts as wrong), neighbours
    of the same ``group`` left out (e.g. the other captions of the same image, which would make
    captions look clustered by anything their image has). Chance: the same with the labels shuffled
    (seeded), i.e. labels unrelated to place. ``points`` (N, D) may have any D.
    """
    if len(labels) != len(points) or (groups is not None and len(groups) != len(points)):
        raise ValueError(f"{len(points)} points and {len(labels)} labels"
                         + ("" if groups is None else f", {len(groups)} groups") + ": need one of each per point")
    names = sorted(set(labels))
    codes = torch.tensor([names.index(l) for l in labels])  # (N,)
    group = torch.tensor(list(groups)) if groups is not None else torch.arange(len(points))  # (N,)
    x = points.float()
    near = []
    for i in range(0, len(x), 1024):  # (b, N) distances, a block of rows at a time
        d = torch.cdist(x[i : i + 1024], x)
        d[group[i : i + 1024, None] == group[None, :]] = float("inf")  # itself and its group
        near.append(d.topk(k, largest=False).indices)
    near = torch.cat(near)  # (N, k)

    def accuracy(c: torch.Tensor) -> float:
        votes = torch.nn.functional.one_hot(c[near], len(names)).sum(1)  # (N, labels)
        own = votes.gather(1, c[:, None])[:, 0]
        others = votes.scatter(1, c[:, None], -1).amax(1)
        return 100.0 * (own > others).float().mean().item()

    shuffled = codes[torch.randperm(len(codes), generator=torch.Generator().manual_seed(seed))]
    return accuracy(codes), accuracy(shuffled)


def embedding_projection(image_vecs: torch.Tensor, caption_vecs: torch.Tensor, labels: Sequence[str] | None = None,
                         captions_per_image: int = 5, label_name: str = ""):
    """Pooled embeddings on their first two principal components: images and captions in one PCA
    (coloured by modality), and with ``labels`` (one per image; captions take their image's) the
    images alone and the captions alone, each in its own PCA, coloured by label."""
    import matplotlib.pyplot as plt

    if caption_vecs.shape[0] != image_vecs.shape[0] * captions_per_image:
        raise ValueError(f"{caption_vecs.shape[0]} captions for {image_vecs.shape[0]} images x {captions_per_image}")
    if labels is not None and len(labels) != image_vecs.shape[0]:
        raise ValueError(f"{len(labels)} labels for {image_vecs.shape[0]} images")
    fig, axes = plt.subplots(1, 1 if labels is None else 3, figsize=(4.6 if labels is None else 13.5, 4.4), squeeze=False)
    both = pca_2d(torch.cat([image_vecs, caption_vecs]).cpu())  # (N_img + N_cap, 2)
    axes[0, 0].scatter(*both[len(image_vecs) :].T, s=6, marker="x", alpha=0.4, color="C7", label="captions")
    axes[0, 0].scatter(*both[: len(image_vecs)].T, s=10, alpha=0.6, color="C2", label="images")
    axes[0, 0].set(title="images and captions, one PCA")
    axes[0, 0].legend(fontsize=8, markerscale=2)
    if labels is not None:
        cap_labels = [l for l in labels for _ in range(captions_per_image)]
        for ax, vecs, labs, what in ((axes[0, 1], image_vecs, list(labels), "images"),
                                     (axes[0, 2], caption_vecs, cap_labels, "captions")):
            xy = pca_2d(vecs.cpu())
            for c, name in enumerate(sorted(set(labels))):
                chosen = torch.tensor([l == name for l in labs])
                ax.scatter(*xy[chosen].T, s=8 if what == "images" else 5, alpha=0.6, color=f"C{c % 10}", label=name)
            ax.set(title=f"{what} alone, coloured by {label_name or 'label'}")
            ax.legend(fontsize=8, markerscale=2)
    for ax in axes[0]:
        ax.set(xlabel="principal component 1", ylabel="principal component 2")
    fig.suptitle("pooled embeddings (hat_min.pooled_embedding) projected on two principal components", fontsize=10)
    fig.tight_layout()
    return fig


# ----------------------------------------------------------------------------- free-text search and the explorer
def query_scores(model, encoded, query: str, tokenizer=None) -> torch.Tensor:
    """HAT's score of a free-text query with every image of ``encoded``: (N_img,)."""
    from ..evaluation.data import tokenize

    if not isinstance(query, str) or not query.strip():
        raise ValueError("the query must be a non-empty string")
    if tokenizer is None:
        from ..encoders import load_tokenizer
        tokenizer = load_tokenizer(model.config)
    images = encoded.image_levels
    device = images[0].device
    ids, mask = tokenize(tokenizer, [query], model.config.max_text_len)  # (1, W)
    if set(ids[0].tolist()) <= {*tokenizer.all_special_ids, tokenizer.unk_token_id}:  # [CLS] [UNK]... [SEP]: no word
        raise ValueError(f"the query {query!r} has no known words (the tokenizer reads it as "
                         f"{' '.join(tokenizer.convert_ids_to_tokens(ids[0].tolist()))}): no ranking to give")
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad():
            words = model.encode_text(ids.to(device), mask.to(device))  # L x (1, W, D)
            words = [w.to(f.dtype) for w, f in zip(words, images)]
            return model.score(images, words, mask.to(device)).float().cpu()[:, 0]  # (N_img,)
    finally:
        model.train(was_training)


def text_query_figure(split, scores: torch.Tensor, query: str, k: int = 5, truth: int | None = None):
    """The top-k images of a text query with their scores (``truth``: an image to frame green if found)."""
    import matplotlib.pyplot as plt

    top = scores.topk(min(k, len(scores)))
    fig, axes = plt.subplots(1, len(top.indices), figsize=(2.0 * len(top.indices), 2.6), squeeze=False)
    for ax, i, s in zip(axes[0], top.indices.tolist(), top.values.tolist()):
        _show_image(ax, split[i]["image"], title=f"image {i}\nscore {s:.2f}", hit=None if truth is None else i == truth)
    fig.suptitle(textwrap.fill(f"query: \"{query}\"", 100), fontsize=10)
    fig.tight_layout()
    return fig


def explorer(model, split, encoded, sims: torch.Tensor, tokenizer=None, k: int = 5):
    """An ipywidgets UI: type a query (Enter) to see its top-k images, or pick an image to see its top-k captions.

    An image is picked with the slider, by typing its id, or (splits with a ``family`` column) by
    family and then member. Nothing is re-encoded: queries are scored against ``encoded``, images
    read their row of ``sims``.
    """
    import ipywidgets as widgets
    import matplotlib.pyplot as plt
    from IPython.display import display

    if tokenizer is None:
        from ..encoders import load_tokenizer
        tokenizer = load_tokenizer(model.config)
    query = widgets.Text(placeholder="e.g. two small red triangles above a large blue circle", continuous_update=False,
                         description="query", layout=widgets.Layout(width="70%"))
    last = len(split) - 1
    picker = widgets.IntSlider(0, 0, last, description="image", continuous_update=False)
    image_id = widgets.IntText(0, description="image id", layout=widgets.Layout(width="180px"))
    note = widgets.Label()
    out = widgets.Output()

    def show(draw) -> None:
        with out:
            out.clear_output(wait=True)
            fig = draw()
            display(fig)
            plt.close(fig)

    def on_query(change) -> None:
        if not change["new"].strip():
            return
        try:
            scores = query_scores(model, encoded, change["new"], tokenizer)
        except ValueError as err:  # no known words: said beside the image picker, not as a traceback
            note.value = str(err)
            return
        note.value = ""
        show(lambda: text_query_figure(split, scores, change["new"], k))

    def on_image(change) -> None:
        image_id.value = change["new"]
        show(lambda: image_to_text_figure(split, sims, [change["new"]], k, encoded.captions_per_image))

    def on_id(change) -> None:  # out of range: the nearest image, and a note saying so
        wanted = change["new"]
        picker.value = image_id.value = min(max(wanted, 0), last)
        shown = picker.value
        note.value = "" if shown == wanted else f"no image {wanted} (ids run from 0 to {last}): showing image {shown}"

    query.observe(on_query, names="value")
    picker.observe(on_image, names="value")
    image_id.observe(on_id, names="value")
    family = _family_picker(split, picker)
    rows = [widgets.HBox([query]), widgets.HBox([picker, image_id, note])] + ([family] if family else [])
    return widgets.VBox(rows + [out])


def _family_picker(split, picker):
    """A family dropdown and buttons for its members, kept in step with ``picker`` (the image slider);
    None when the split has no ``family`` column."""
    import ipywidgets as widgets

    if "family" not in split.column_names:
        return None
    rows_of: dict[int, list[int]] = {}
    for row, f in enumerate(split["family"]):
        rows_of.setdefault(f, []).append(row)
    family_of = {row: f for f, rows in rows_of.items() for row in rows}
    choose = widgets.Dropdown(options=[(f"family {n} (images {', '.join(map(str, rows_of[f]))})", f)
                                       for n, f in enumerate(sorted(rows_of))],
                              value=family_of[picker.value], description="family")
    members = widgets.ToggleButtons(options=[(f"image {r}", r) for r in rows_of[choose.value]], value=picker.value,
                                    description="member", style={"button_width": "80px"})
    refilling = False

    def on_family(change) -> None:  # its members; the image shown stays picked if it is one of them
        nonlocal refilling
        rows = rows_of[change["new"]]
        refilling = True  # new options select their first one on their own: not a pick
        members.options = [(f"image {r}", r) for r in rows]
        refilling = False
        pick = picker.value if picker.value in rows else rows[0]
        members.value = pick
        picker.value = pick  # when the new options already selected it, members.value did not change

    def on_member(change) -> None:
        if not refilling and change["new"] is not None:
            picker.value = change["new"]

    def on_image(change) -> None:
        choose.value = family_of[change["new"]]
        members.value = change["new"]

    choose.observe(on_family, names="value")
    members.observe(on_member, names="value")
    picker.observe(on_image, names="value")
    return widgets.HBox([choose, members])


# ----------------------------------------------------------------------------- small helpers
def _show_image(ax, image, title: str = "", hit: bool | None = None) -> None:
    """An image without ticks; a green (hit) or red (miss) frame when ``hit`` is not None."""
    from data_prep import to_rgb

    ax.imshow(to_rgb(image), interpolation="nearest")  # the pixels as they are (and smaller PNGs than smoothing)
    ax.set_xticks([]), ax.set_yticks([])
    ax.set_title(title, fontsize=8)
    if hit is not None:
        for spine in ax.spines.values():
            spine.set_edgecolor(HIT if hit else MISS)
            spine.set_linewidth(3 if hit else 1.5)


def _text_cell(ax, text: str, colour: str = "black") -> None:
    ax.text(0, 0.5, text, va="center", fontsize=9, color=colour)
    ax.set_axis_off()


def _model_view(image, config):
    """The image as the model sees it at evaluation: resized and centre-cropped to ``config.image_size``."""
    from torchvision import transforms as T

    from data_prep import to_rgb

    size = config.image_size
    return T.Compose([T.Resize(round(size * config.eval_resize_ratio)), T.CenterCrop(size)])(to_rgb(image))


_FUNCTION_WORDS = {"a", "an", "the", "of", "and", "with", "is", "are", "to", "on", "in", "at", "there", "it", "its",
                   "one", "pair", "picture", "image", "drawing", "photo", ".", ","}


def _pick_words(tokens: list[str], words: Sequence[str] | None, max_words: int) -> list[int]:
    """Positions of the requested words (first occurrence each), else of the first tokens that are
    neither special ([CLS], [SEP]) nor function words."""
    if words is None:
        keep = [i for i, t in enumerate(tokens) if not (t.startswith("[") and t.endswith("]")) and t not in _FUNCTION_WORDS]
        return keep[:max_words] or [i for i, t in enumerate(tokens) if t not in ("[CLS]", "[SEP]")][:max_words]
    missing = [w for w in words if w not in tokens]
    if missing:
        raise ValueError(f"words {missing} are not tokens of the caption; its tokens are {tokens}")
    return [tokens.index(w) for w in words]


def _check_sims(sims: torch.Tensor, n_images: int, captions_per_image: int) -> None:
    if sims.dim() != 2 or sims.shape != (n_images, n_images * captions_per_image):
        raise ValueError(f"sims must be (N_img, N_cap) = ({n_images}, {n_images * captions_per_image}) for this split, "
                         f"got {tuple(sims.shape)}")
