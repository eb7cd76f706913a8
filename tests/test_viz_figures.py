"""Tests for the matplotlib figures of vlkit.viz, the attention recorder, and ``vlkit predict
--save_attention`` for every task (VQA, sentiment, captioning) on briefly trained checkpoints."""

from __future__ import annotations

import importlib.util
import json
import math
import os
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F
import yaml
from matplotlib.figure import Figure
from matplotlib.text import Text
from PIL import Image

from tests.conftest import make_dataset_dict, make_sentiment_dataset_dict, shape_png
from tests.test_cli import TINY, TINY_CAPTIONS, TINY_SENTIMENT, short_fit
from vlkit.cli import predict_main
from vlkit.fusion import FusionOutput
from vlkit.text import WordTokenizer
from vlkit.viz import (
    AttentionMaps,
    AttentionRecorder,
    attention_map_figure,
    coattention_figure,
    record_attention,
    save_figure,
    sentiment_attention_figure,
    stn_grid_figure,
    token_attention_figure,
    token_labels,
    vqa_attention_figure,
)

TOKENS = ["what", "color", "is", "the", "shape", "?"]


def softmax(logits) -> torch.Tensor:
    return torch.softmax(torch.as_tensor(logits, dtype=torch.float64), 0)


def random_image(height: int = 30, width: int = 40, seed: int = 0) -> Image.Image:
    rng = np.random.default_rng(seed)
    return Image.fromarray(rng.integers(0, 256, (height, width, 3), dtype=np.uint8))


def rotation_theta(angle: float = 0.4, scale: float = 0.6, tx: float = 0.2, ty: float = -0.1) -> torch.Tensor:
    c, s = math.cos(angle) * scale, math.sin(angle) * scale
    return torch.tensor([[c, -s, tx], [s, c, ty]], dtype=torch.float64)


def texts(figure: Figure) -> list[str]:
    """Every text drawn in ``figure`` (titles, the figure title, labels)."""
    return [t.get_text() for t in figure.findobj(Text)]


def tick_labels(labels) -> list[str]:
    return [label.get_text() for label in labels]


# attention_map_figure


def test_attention_map_lights_the_image_by_the_upsampled_weights():
    image = random_image(30, 40)
    logits = torch.zeros(6)
    logits[4] = 4.0  # region 4 = row 1, column 1 of the 2 × 3 grid
    weights = softmax(logits)
    figure = attention_map_figure(image, weights, (2, 3), title="where")
    assert isinstance(figure, Figure) and len(figure.axes) == 2  # the picture and its colour bar
    ax, colorbar = figure.axes
    assert ax.get_title() == "where" and colorbar.get_ylabel() == "attention weight (brightness)"
    (picture,) = ax.images
    lit = np.asarray(picture.get_array())
    original = np.asarray(image) / 255.0
    light = lit.sum(-1) / np.maximum(original.sum(-1), 1e-9)  # (H, W): the brightness kept per pixel
    np.testing.assert_allclose(lit, original * light[..., None], atol=1e-9)  # no colour added
    row, col = np.unravel_index(light.argmax(), light.shape)
    assert (row // 15, col * 3 // 40) == (1, 1)  # the brightest pixel is in the attended region
    assert light.max() == pytest.approx(1.0)  # the most attended pixels keep their exact colours
    lowest = 1 - 0.6 * (1 - float(weights.min() / weights.max()))
    assert light.min() >= lowest - 1e-9 and light.min() == pytest.approx(lowest, abs=2e-3)  # no overshoot
    # the colour bar runs from 0 to the largest (upsampled) weight
    mappable = colorbar._colorbar.mappable
    assert mappable.norm.vmin == 0.0 and mappable.norm.vmax == pytest.approx(float(weights.max()), rel=0.1)


def test_attention_map_takes_tensors_arrays_and_grid_weights_alike():
    image = random_image(16, 16)
    as_tensor = torch.from_numpy(np.array(image)).permute(2, 0, 1).float() / 255.0  # (3, H, W)
    weights = softmax(torch.arange(4.0))
    reference = attention_map_figure(image, weights, (2, 2)).axes[0].images[0].get_array()
    for picture in (as_tensor, np.asarray(image), np.asarray(image) / 255.0):
        drawn = attention_map_figure(picture, weights.reshape(2, 2), None).axes[0].images
        np.testing.assert_allclose(drawn[0].get_array(), reference, atol=1e-6)
    grey = attention_map_figure(np.full((8, 10), 0.5), softmax(torch.zeros(4)), (2, 2)).axes[0]
    assert grey.images[0].get_array().shape == (8, 10, 3)


@pytest.mark.parametrize(
    ("weights", "grid", "match"),
    [
        (torch.tensor([0.5, 0.5, 0.5, 0.5]), (2, 2), "sum to 1"),
        (torch.tensor([1.5, -0.5, 0.0, 0.0]), (2, 2), "non-negative"),
        (softmax(torch.zeros(6)), (2, 2), r"2 \* 2 = 4 regions"),
        (softmax(torch.zeros(6)), None, "grid_size"),
        (softmax(torch.zeros(8)).reshape(2, 2, 2), None, r"\(n,\) or \(h, w\)"),
        (torch.tensor([float("nan"), 1.0, 0.0, 0.0]), (2, 2), "NaN"),
    ],
)
def test_attention_map_rejects_bad_weights(weights, grid, match):
    with pytest.raises(ValueError, match=match):
        attention_map_figure(random_image(), weights, grid)


def test_attention_map_rejects_bad_images_and_alpha():
    weights = softmax(torch.zeros(4))
    with pytest.raises(ValueError, match="undo the normalisation"):
        attention_map_figure(torch.randn(3, 8, 8), weights, (2, 2))  # an ImageNet-normalised tensor
    with pytest.raises(ValueError, match=r"\(3, H, W\)"):
        attention_map_figure(torch.rand(8, 8, 3), weights, (2, 2))
    with pytest.raises(ValueError, match="image must be"):
        attention_map_figure(np.zeros((8, 8, 4)), weights, (2, 2))
    with pytest.raises(ValueError, match="alpha"):
        attention_map_figure(random_image(), weights, (2, 2), alpha=1.5)


# token_attention_figure


def test_token_bars_are_the_weights_in_reading_order():
    weights = softmax([0.1, 2.0, -1.0, 0.3, 1.0, 0.0])
    figure = token_attention_figure(TOKENS, weights)
    (ax,) = figure.axes
    widths = [bar.get_width() for bar in ax.patches]
    np.testing.assert_allclose(widths, weights.numpy())
    centres = [bar.get_y() + bar.get_height() / 2 for bar in ax.patches]
    assert tick_labels(ax.get_yticklabels()) == TOKENS and list(ax.get_yticks()) == centres
    assert ax.yaxis_inverted()  # the first token on top
    assert ax.get_title() == "word attention"
    assert [t.get_text() for t in ax.texts] == [f"{w:.2f}" for w in weights.tolist()]


def test_token_bars_shorten_long_labels():
    ax = token_attention_figure(["a" * 40, "b"], [0.25, 0.75]).axes[0]
    assert tick_labels(ax.get_yticklabels()) == ["a" * 16 + "..", "b"]


@pytest.mark.parametrize(
    ("tokens", "weights", "error", "match"),
    [
        (TOKENS[:3], [0.2, 0.2, 0.2], ValueError, "sum to 1"),
        (TOKENS[:3], [0.5, 0.5], ValueError, "3 tokens but 2 weights"),
        (TOKENS[:2], [[0.5, 0.5]], ValueError, r"\(m,\) vector"),
        (TOKENS[:2], [], ValueError, r"\(m,\) vector"),
        ("what color", [0.5, 0.5], TypeError, "list of strings"),
    ],
)
def test_token_bars_reject_bad_input(tokens, weights, error, match):
    with pytest.raises(error, match=match):
        token_attention_figure(tokens, torch.tensor(weights))


# coattention_figure


def test_coattention_draws_the_affinity_matrix_with_token_labels_and_region_rows():
    torch.manual_seed(0)
    affinity = torch.tanh(torch.randn(len(TOKENS), 12))
    figure = coattention_figure(affinity, TOKENS, grid_size=(3, 4))
    ax, colorbar = figure.axes
    np.testing.assert_array_equal(ax.images[0].get_array(), affinity.numpy())
    assert tick_labels(ax.get_yticklabels()) == TOKENS
    assert [line.get_xdata()[0] for line in ax.lines] == [3.5, 7.5]  # between the rows of regions
    limit = float(affinity.abs().max())
    assert ax.images[0].get_clim() == pytest.approx((-limit, limit))  # signed: white at 0
    assert ax.images[0].get_cmap().name == "RdBu_r" and colorbar.get_ylabel() == "C"
    assert "affinity" in ax.get_title()
    assert not coattention_figure(affinity, TOKENS).axes[0].lines  # no grid, no row lines


@pytest.mark.parametrize(
    ("affinity", "tokens", "grid", "match"),
    [
        (torch.zeros(12), TOKENS, None, r"\(l, n\) matrix"),
        (torch.zeros(5, 12), TOKENS, None, "l = 5 rows but there are 6 tokens"),
        (torch.zeros(6, 12), TOKENS, (4, 4), r"4 \* 4 = 16 regions"),
        (torch.full((6, 12), float("inf")), TOKENS, None, "NaN or inf"),
    ],
)
def test_coattention_rejects_bad_input(affinity, tokens, grid, match):
    with pytest.raises(ValueError, match=match):
        coattention_figure(affinity, tokens, grid)


# stn_grid_figure


def frame_of(where) -> np.ndarray:
    """The STN frame's points, from a figure (its first axes) or axes."""
    ax = where.axes[0] if isinstance(where, Figure) else where
    (frame,) = [line for line in ax.lines if line.get_gid() == "stn-frame"]
    return np.asarray(frame.get_xydata())


def test_stn_grid_corners_are_theta_applied_to_the_output_corners():
    theta = rotation_theta()
    figure = stn_grid_figure(random_image(24, 32), theta, grid_lines=5)
    corners = np.array([[-1, -1, 1], [1, -1, 1], [1, 1, 1], [-1, 1, 1], [-1, -1, 1]], dtype=np.float64)
    np.testing.assert_allclose(frame_of(figure), corners @ theta.numpy().T)
    # the first corner by hand: θ (-1, -1, 1)ᵀ
    c, s = math.cos(0.4) * 0.6, math.sin(0.4) * 0.6
    np.testing.assert_allclose(frame_of(figure)[0], [-c + s + 0.2, -s - c - 0.1])
    grid_ax = figure.axes[0]
    assert len(grid_ax.lines) == 1 + 2 * 3  # the frame and 3 inner lines per direction
    assert grid_ax.images[0].get_extent() == [-1.0, 1.0, 1.0, -1.0]  # normalised coordinates


def test_stn_output_is_grid_sample_of_the_image():
    image = random_image(24, 32)
    theta = rotation_theta()
    output = np.asarray(stn_grid_figure(image, theta).axes[1].images[0].get_array())
    pixels = torch.from_numpy(np.asarray(image) / 255.0).permute(2, 0, 1)[None]
    grid = F.affine_grid(theta[None], [1, 3, 24, 32], align_corners=False)
    expected = F.grid_sample(pixels, grid, align_corners=False)[0].permute(1, 2, 0).numpy()
    np.testing.assert_allclose(output, expected, atol=1e-12)


def test_stn_identity_keeps_the_image_and_a_mirror_flips_it():
    image = random_image(12, 20)
    pixels = np.asarray(image) / 255.0
    identity = stn_grid_figure(image, torch.tensor([[1.0, 0, 0], [0, 1, 0]]))
    np.testing.assert_allclose(identity.axes[1].images[0].get_array(), pixels, atol=1e-6)
    np.testing.assert_allclose(frame_of(identity), [[-1, -1], [1, -1], [1, 1], [-1, 1], [-1, -1]])
    mirror = stn_grid_figure(image, torch.tensor([[[-1.0, 0, 0], [0, 1, 0]]]))  # (1, 2, 3) accepted
    np.testing.assert_allclose(mirror.axes[1].images[0].get_array(), pixels[:, ::-1], atol=1e-6)


@pytest.mark.parametrize(
    ("theta", "lines", "match"),
    [
        (torch.eye(3), 8, r"one \(2, 3\) affine matrix"),
        (torch.zeros(2, 2, 3), 8, r"one \(2, 3\) affine matrix"),
        (torch.tensor([[1.0, 0, float("nan")], [0, 1, 0]]), 8, "NaN"),
        (torch.eye(2, 3), 1, "grid_lines"),
        (torch.eye(2, 3), 2.5, "grid_lines"),
    ],
)
def test_stn_grid_rejects_bad_input(theta, lines, match):
    with pytest.raises(ValueError, match=match):
        stn_grid_figure(random_image(), theta, grid_lines=lines)


# save_figure


def test_save_figure_writes_a_png_of_the_figure_size(tmp_path):
    figure = token_attention_figure(TOKENS[:2], [0.3, 0.7])
    path = save_figure(figure, tmp_path / "deep" / "bars.png")
    width, height = figure.get_size_inches() * figure.dpi
    with Image.open(path) as drawn:
        assert drawn.format == "PNG" and drawn.size == (round(width), round(height))
    with pytest.raises(TypeError, match="matplotlib"):
        save_figure(Image.new("RGB", (4, 4)), tmp_path / "x.png")


# record_attention and the per-task figures


# a tiny VQA model: ResNet-10t read at stage 1 (8 × 8 regions of 32 × 32 images), width 16
TINY_IMAGE = {"backbone": "resnet10t", "feature_index": 1, "dim": 16}
TINY_PARTS = {"text_encoder": {"name": "lstm", "dim": 16, "embed_dim": 8}, "head": {"hidden_dim": 16}}


def tiny_vqa(fusion: str, **image_encoder) -> torch.nn.Module:
    from vlkit.models import create_model

    return create_model(
        "vqa_small",
        num_answers=3,
        vocab_size=12,
        image_encoder={**TINY_IMAGE, **image_encoder},
        fusion={"name": fusion, "hidden_dim": 16},
        **TINY_PARTS,
    ).eval()


@pytest.fixture(scope="module")
def tiny_vqa_model():
    torch.manual_seed(0)
    return tiny_vqa("parallel_coattention", stn="input")


def test_record_attention_keeps_the_fusion_and_encoder_outputs_without_changing_them(tiny_vqa_model):
    model = tiny_vqa_model
    image, ids = torch.rand(2, 3, 32, 32), torch.tensor([[2, 3, 4, 0], [5, 6, 0, 0]])
    with torch.no_grad():
        plain = model(image, ids, ids != 0)
        with record_attention(model) as recorded:
            hooked = model(image, ids, ids != 0)
        encoded = model.image_encoder(image)
        text = model.text_encoder(ids, ids != 0)
        fused = model.fusion(encoded.features, encoded.mask, text[0], text[1])
    assert torch.equal(plain.logits, hooked.logits)
    assert not model.fusion._forward_hooks and not model.image_encoder._forward_hooks  # removed
    attention = recorded.maps(1)
    assert attention.has_attention and attention.matrix_name == "affinity_scores"
    assert torch.equal(attention.image_weights, hooked.image_weights[1])
    assert torch.equal(attention.text_weights, hooked.text_weights[1])
    # the affinity before its tanh, S (l, n), zero at padding: C = tanh(S) saturates once trained
    assert torch.equal(attention.matrix, fused.maps["affinity_scores"][1])
    assert torch.equal(torch.tanh(attention.matrix), fused.maps["affinity"][1])
    assert attention.matrix[2:].abs().sum() == 0
    assert attention.grid_size == tuple(encoded.grid_size) == (8, 8)
    assert torch.equal(attention.theta, torch.eye(2, 3))  # an untrained STN is the identity


def test_attention_recorder_transposes_region_to_word_maps_and_averages_heads():
    recorder = AttentionRecorder()
    per_head = torch.rand(1, 2, 6, 4)  # (b, heads, n, l)
    recorder.fusion_output = FusionOutput(torch.zeros(1, 3), maps={"image_to_text": per_head})
    attention = recorder.maps()
    assert attention.matrix_name == "image_to_text" and attention.image_weights is None
    assert torch.allclose(attention.matrix, per_head[0].mean(0).T)  # (l, n)
    with pytest.raises(RuntimeError, match="record_attention"):
        AttentionRecorder().maps()
    with (
        pytest.raises(ValueError, match="no `fusion` or `image_encoder` module"),
        record_attention(torch.nn.Linear(2, 2)),
    ):
        pass


def test_concat_fusion_has_no_attention_and_nothing_to_draw():
    model = tiny_vqa("concat")
    with torch.no_grad(), record_attention(model) as recorded:
        model(torch.rand(1, 3, 32, 32), torch.tensor([[2, 3]]))
    attention = recorded.maps()
    assert not attention.has_attention and attention.theta is None
    with pytest.raises(ValueError, match="nothing to draw"):
        vqa_attention_figure(random_image(), ["a", "b"], attention)


def test_the_affinity_before_its_tanh_is_drawn_with_the_share_of_saturated_cells():
    torch.manual_seed(2)
    scores = 4 * torch.randn(6, 12)
    attention = AttentionMaps(matrix=scores, matrix_name="affinity_scores", grid_size=(3, 4))
    figure = vqa_attention_figure(random_image(30, 40), TOKENS, attention)
    share = float((torch.tanh(scores).abs() > 0.99).float().mean())
    (matrix_ax,) = [ax for ax in figure.axes if "affinity" in ax.get_title()]
    assert matrix_ax.get_title() == (
        "co-attention affinity before its tanh, S = Qᵀ W_b V (C = tanh S)\n"
        f"{share:.0%} of the cells have |C| > 0.99"
    )
    np.testing.assert_array_equal(matrix_ax.images[0].get_array(), scores.numpy())
    low, high = matrix_ax.images[0].get_clim()
    assert high == -low == pytest.approx(float(scores.abs().max()))  # symmetric, white at 0


def test_vqa_figure_has_every_panel_the_attention_has():
    torch.manual_seed(1)
    attention = AttentionMaps(
        image_weights=softmax(torch.randn(12)),
        text_weights=softmax(torch.randn(6)),
        grid_size=(3, 4),
        matrix=torch.tanh(torch.randn(6, 12)),
        matrix_name="affinity",
        theta=rotation_theta(),
    )
    image = random_image(30, 40)
    figure = vqa_attention_figure(
        image, TOKENS, attention, "what color is the shape?", [("red", 0.9), ("blue", 0.1)]
    )
    titles = [ax.get_title() for ax in figure.axes]
    assert titles[0] == "image attention (3 × 4 regions)" and "word attention" in titles
    assert any("affinity" in t for t in titles) and "spatial transformer: sampling grid" in titles
    assert "Q: what color is the shape?\nA: red 0.90 · blue 0.10" in texts(figure)
    by_title = {ax.get_title(): ax for ax in figure.axes}
    np.testing.assert_array_equal(by_title[titles[2]].images[0].get_array(), attention.matrix.numpy())
    np.testing.assert_allclose(
        [b.get_width() for b in by_title["word attention"].patches], attention.text_weights
    )
    corner = frame_of(by_title["spatial transformer: sampling grid"])[1]  # θ (1, -1, 1)ᵀ
    c, s = 0.6 * math.cos(0.4), 0.6 * math.sin(0.4)
    np.testing.assert_allclose(corner, [c + s + 0.2, s - c - 0.1])

    # only what is there: no matrix, no θ, no region weights → the plain image and the words
    words_only = sentiment_attention_figure(
        image,
        TOKENS,
        attention._replace(image_weights=None, matrix=None, theta=None),
        "a text",
        [("positive", 0.7)],
    )
    assert [ax.get_title() for ax in words_only.axes] == [
        "image (this fusion has no region attention)",
        "word attention",
    ]
    assert "text: a text\npositive 0.70" in texts(words_only)
    with pytest.raises(ValueError, match="5 tokens but 6 text_weights"):
        vqa_attention_figure(image, TOKENS[:5], attention)
    with pytest.raises(ValueError, match="sum to 1"):
        vqa_attention_figure(image, TOKENS, attention._replace(image_weights=torch.ones(12)))


def test_token_labels_show_words_subwords_and_unknown_words():
    tokenizer = WordTokenizer(["<pad>", "<unk>", "what", "color", "?"])
    ids = tokenizer.encode("What colour?")
    assert token_labels(tokenizer, "What colour?", ids) == ["what", "colour (unk)", "?"]

    class Decoder:
        def decode(self, ids):
            return {7: "seven"}.get(ids[0], "")

    assert token_labels(Decoder(), "", [7, 8]) == ["seven", "8"]


# vlkit predict --save_attention, end to end on briefly trained checkpoints


def read_png(path: Path) -> tuple[int, int]:
    with Image.open(path) as drawn:
        assert drawn.format == "PNG"
        drawn.load()  # the whole file decodes
        return drawn.size


@pytest.fixture(scope="module")
def gallery():
    """scripts/attention_gallery.py as a module."""
    path = Path(__file__).parents[1] / "scripts" / "attention_gallery.py"
    spec = importlib.util.spec_from_file_location("attention_gallery", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def input_stn(recipe: str) -> tuple[str, str]:
    """The override that adds an input spatial transformer to a recipe's image encoder: a part is
    given whole on the command line, so the recipe's mapping plus ``stn: input``."""
    config = yaml.safe_load((Path(__file__).parents[1] / "recipes" / f"{recipe}.yaml").read_text())
    encoder = {**config["model"]["init_args"]["image_encoder"], "stn": "input"}
    return "--model.init_args.image_encoder", json.dumps(encoder)


BRIEF = (
    "--trainer.max_epochs",
    "1",
    "--trainer.limit_train_batches",
    "2",
    "--trainer.limit_val_batches",
    "1",
)


@pytest.fixture(scope="module")
def vqa_stn_ckpt(gallery, tmp_path_factory) -> Path:
    """The parallel co-attention recipe with an input STN, trained for 2 steps on the tiny VQA data
    by the gallery script's ``train`` (``vlkit fit`` in a work folder)."""
    work = tmp_path_factory.mktemp("vqa_stn")
    make_dataset_dict().save_to_disk(str(work / "data"))
    stn = input_stn("vqa/easy_vqa_parallel")
    data = ("--data.init_args.dataset", str(work / "data"))
    return gallery.train("vqa/easy_vqa_parallel", work, [*BRIEF, *data, *TINY, *stn])


@pytest.fixture(scope="module")
def sentiment_ckpt(tmp_path_factory) -> str:
    """The cross-modal sentiment recipe, trained for 2 steps on the tiny sentiment data."""
    work = tmp_path_factory.mktemp("sentiment")
    make_sentiment_dataset_dict("classlabel").save_to_disk(str(work / "data"))
    before = Path.cwd()
    os.chdir(work)
    try:
        limits = ("--test_after_fit", "false", "--trainer.limit_val_batches", "1")
        cli = short_fit("sentiment/emoji_crossmodal", work / "data", TINY_SENTIMENT, *limits)
    finally:
        os.chdir(before)
    return cli.trainer.checkpoint_callback.best_model_path


def test_predict_vqa_save_attention_draws_coattention_and_stn(vqa_stn_ckpt, tmp_path, capsys):
    image = tmp_path / "red_circle.png"
    image.write_bytes(shape_png("red", "circle"))
    question = [
        "--ckpt_path",
        str(vqa_stn_ckpt),
        "--image",
        str(image),
        "--question",
        "what color is the shape?",
    ]
    plain = predict_main(question)
    picture = tmp_path / "out" / "vqa.png"
    answers = predict_main([*question, "--save_attention", str(picture)])
    assert answers.answers == plain.answers  # recording changes nothing
    assert f"attention written to {picture}" in capsys.readouterr().out.replace("\n", "")
    # 8 inches wide at 100 dpi; rows: image + words, the 6 words × 4 regions affinity, the STN, a title
    assert read_png(picture) == (800, round(100 * (3.4 + 0.28 * 6 + 1.2 + 3.2 + 0.5)))


def test_predict_sentiment_save_attention_and_a_fusion_without_attention(
    sentiment_ckpt, tiny_sentiment_on_disk, tmp_path, monkeypatch, capsys
):
    image = tmp_path / "green_circle.png"
    image.write_bytes(shape_png("green", "circle"))
    picture = tmp_path / "sentiment.png"
    text = ["--text", "a lovely circle"]
    predict_main(
        ["--ckpt_path", sentiment_ckpt, "--image", str(image), *text, "--save_attention", str(picture)]
    )
    # cross-modal attention (image_to_text) has word weights and a words × regions map, no region
    # weights: rows image + words, the 3 words × 4 regions map, a title
    assert read_png(picture) == (800, round(100 * (3.4 + 0.28 * 3 + 1.2 + 0.5)))

    monkeypatch.chdir(tmp_path)
    limits = ("--test_after_fit", "false", "--trainer.limit_val_batches", "1")
    capsys.readouterr()
    image_only = short_fit(
        "sentiment/emoji_crossmodal",
        tiny_sentiment_on_disk,
        TINY_SENTIMENT,
        *limits,
        "--model.init_args.modality",
        "image",
    )
    nothing = tmp_path / "nothing.png"
    ckpt = image_only.trainer.checkpoint_callback.best_model_path
    ranked = predict_main(["--ckpt_path", ckpt, "--image", str(image), "--save_attention", str(nothing)])
    assert len(ranked.probabilities) == 3 and not nothing.exists()
    out = capsys.readouterr().out.replace("\n", " ")
    assert "UnimodalPooling fusion has no attention to draw; no picture written" in out


def test_predict_caption_save_attention_both_spellings(tiny_captions_on_disk, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    cli = short_fit(
        "captioning/emoji_sat",
        tiny_captions_on_disk,
        TINY_CAPTIONS,
        "--test_after_fit",
        "false",
        "--trainer.limit_val_batches",
        "1",
        *input_stn("captioning/emoji_sat"),
    )
    ckpt = cli.trainer.checkpoint_callback.best_model_path
    image = tmp_path / "blue_rectangle.png"
    image.write_bytes(shape_png("blue", "rectangle"))
    dashed, underscored = tmp_path / "dashed.png", tmp_path / "underscored.png"
    caption = predict_main(["--ckpt_path", ckpt, "--image", str(image), "--save_attention", str(dashed)])
    again = predict_main(["--ckpt_path", ckpt, "--image", str(image), "--save_attention", str(underscored)])
    assert again.caption == caption.caption
    assert dashed.read_bytes() == underscored.read_bytes()
    width, height = read_png(dashed)
    assert width >= 2 * 136 and height >= 136  # at least the image panel and one word, 128 px + padding
    assert read_png(tmp_path / "dashed_stn.png") == (700, 360)


def test_attention_gallery_draws_the_three_pictures(gallery, vqa_stn_ckpt, sentiment_ckpt, tmp_path):
    vqa_image, emoji = tmp_path / "blue_rectangle.png", tmp_path / "red_circle.png"
    vqa_image.write_bytes(shape_png("blue", "rectangle", size=64))
    emoji.write_bytes(shape_png("red", "circle"))
    written = gallery.main(
        [
            "--out",
            str(tmp_path / "images"),
            "--vqa-ckpt",
            str(vqa_stn_ckpt),
            "--stn-ckpt",
            str(vqa_stn_ckpt),
            "--sentiment-ckpt",
            sentiment_ckpt,
            "--vqa-image",
            str(vqa_image),
            "--question",
            "what shape is it?",
            "--sentiment-image",
            str(emoji),
            "--text",
            "an awful circle",
        ]
    )
    assert [p.name for p in written] == ["vqa_attention.png", "sentiment_attention.png", "stn_grid.png"]
    for path in written:
        width, height = read_png(path)
        assert width >= 700 and height >= 360 and path.stat().st_size <= gallery.MAX_BYTES
    with pytest.raises(ValueError, match="no spatial transformer"):
        gallery.stn_picture(sentiment_ckpt, str(emoji), tmp_path / "stn.png")
