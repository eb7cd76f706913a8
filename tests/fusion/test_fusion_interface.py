"""The one fusion interface, checked for every layer of the registry (vlkit.fusion.FUSIONS).

Per layer: output shapes and widths, gradients to every parameter, invariance to what sits
under the masks on both sides (values and extra padding), finite outputs for fully masked
rows, and the registry's errors.
"""

from __future__ import annotations

import pytest
import torch

from vlkit.fusion import FUSIONS, FusionOutput, create_fusion, list_fusions

D_V, D_Q, HIDDEN = 8, 6, 12  # d_v != d_q on purpose
B, N, L = 3, 5, 4
# per-layer arguments that keep the layers small; the hierarchical layer needs d_v = d_q
SMALL = {
    "mcan": {"depth": 2, "num_heads": 2},
    "cross_modal_transformer": {"depth": 2, "num_heads": 2},
    "mfb": {"factor": 3, "attention_dim": 8},
    "mfh": {"factor": 3, "attention_dim": 8},
}
SAME_WIDTH = {"hierarchical_coattention"}


def dims(name):
    return (D_Q, D_Q) if name in SAME_WIDTH else (D_V, D_Q)


def make(name, seed=0, dropout=0.0, **extra):
    torch.manual_seed(seed)
    image_dim, text_dim = dims(name)
    return create_fusion(
        name, image_dim, text_dim, hidden_dim=HIDDEN, dropout=dropout, **SMALL.get(name, {}), **extra
    )


def inputs(name, seed=0, n=N, l=L):
    g = torch.Generator().manual_seed(seed)
    image_dim, text_dim = dims(name)
    image = torch.randn(B, n, image_dim, generator=g, dtype=torch.float64)
    text = torch.randn(B, l, text_dim, generator=g, dtype=torch.float64)
    return image, text


def right_mask(lengths, total):
    return torch.arange(total)[None, :] < torch.tensor(lengths)[:, None]


IMAGE_LENGTHS, TEXT_LENGTHS = [5, 3, 1], [4, 2, 3]


def tensors(out: FusionOutput):
    """Every tensor of an output, by field name (maps flattened)."""
    found = {k: v for k, v in out._asdict().items() if isinstance(v, torch.Tensor)}
    found.update({f"maps.{k}": v for k, v in (out.maps or {}).items() if v is not None})
    return found


@pytest.mark.parametrize("name", list_fusions())
def test_output_shapes(name):
    layer = make(name).double().eval()
    image, text = inputs(name)
    out = layer(image, right_mask(IMAGE_LENGTHS, N), text, right_mask(TEXT_LENGTHS, L))
    assert isinstance(out, FusionOutput)
    assert out.fused.shape == (B, layer.output_dim)
    if out.image_weights is not None:
        assert out.image_weights.shape == (B, N)
        torch.testing.assert_close(out.image_weights.sum(-1), torch.ones(B, dtype=torch.float64))
        assert (out.image_weights[~right_mask(IMAGE_LENGTHS, N)] == 0).all()
    if out.text_weights is not None:
        assert out.text_weights.shape == (B, L)
        torch.testing.assert_close(out.text_weights.sum(-1), torch.ones(B, dtype=torch.float64))
        assert (out.text_weights[~right_mask(TEXT_LENGTHS, L)] == 0).all()
    if out.image_tokens is not None:
        assert out.image_tokens.shape[:2] == (B, N)
    if out.text_tokens is not None:
        assert out.text_tokens.shape[:2] == (B, L)
    for field, t in tensors(out).items():
        assert t.shape[0] == B, field
        assert torch.isfinite(t).all(), field


@pytest.mark.parametrize("name", list_fusions())
def test_gradients_reach_every_parameter(name):
    layer = make(name, seed=1).double()
    image, text = inputs(name, seed=1)
    out = layer(image, right_mask(IMAGE_LENGTHS, N), text, right_mask(TEXT_LENGTHS, L))
    (out.fused * torch.randn_like(out.fused)).sum().backward()
    missing = [n for n, p in layer.named_parameters() if p.grad is None or not (p.grad != 0).any()]
    assert list(layer.parameters()) and missing == []


@pytest.mark.parametrize("name", list_fusions())
def test_padding_values_and_extra_padding_change_nothing(name):
    layer = make(name, seed=2).double().eval()
    image, text = inputs(name, seed=2)
    image_mask, text_mask = right_mask(IMAGE_LENGTHS, N), right_mask(TEXT_LENGTHS, L)
    out = layer(image, image_mask, text, text_mask)
    # garbage under both masks, and three more padded positions on each side
    g = torch.Generator().manual_seed(3)
    noisy_image = torch.where(
        image_mask[..., None], image, 1e3 * torch.randn(image.shape, generator=g, dtype=image.dtype)
    )
    noisy_text = torch.where(
        text_mask[..., None], text, 1e3 * torch.randn(text.shape, generator=g, dtype=text.dtype)
    )
    pad_image = torch.cat(
        [noisy_image, torch.randn(B, 3, image.shape[-1], generator=g, dtype=image.dtype)], 1
    )
    pad_text = torch.cat([noisy_text, torch.randn(B, 3, text.shape[-1], generator=g, dtype=text.dtype)], 1)
    out_padded = layer(pad_image, right_mask(IMAGE_LENGTHS, N + 3), pad_text, right_mask(TEXT_LENGTHS, L + 3))

    torch.testing.assert_close(out_padded.fused, out.fused)
    for field in ("image", "text"):
        if getattr(out, field) is not None:
            torch.testing.assert_close(getattr(out_padded, field), getattr(out, field))
    for field, length in (("image_weights", N), ("text_weights", L), ("image_tokens", N), ("text_tokens", L)):
        if getattr(out, field) is not None:
            kept = getattr(out_padded, field)[:, :length]
            mask = image_mask if field.startswith("image") else text_mask
            expected = getattr(out, field)
            if expected.dim() == 3:
                kept, expected, mask = kept[mask], expected[mask], None
            else:
                kept, expected = kept * mask, expected * mask
            torch.testing.assert_close(kept, expected, msg=field)
            extra = getattr(out_padded, field)[:, length:]
            assert (extra == 0).all(), f"{field}: padding must get zero weight / zero features"


@pytest.mark.parametrize("name", list_fusions())
def test_fully_masked_rows_stay_finite(name):
    layer = make(name, seed=4).eval()
    image, text = (t.float() for t in inputs(name, seed=4))
    image_mask = right_mask([5, 0, 2], N)
    text_mask = right_mask([0, 3, 4], L)
    out = layer(image, image_mask, text, text_mask)
    for field, t in tensors(out).items():
        assert torch.isfinite(t).all(), field


@pytest.mark.parametrize("name", list_fusions())
def test_masks_are_optional_and_equal_all_true_masks(name):
    layer = make(name, seed=5).double().eval()
    image, text = inputs(name, seed=5)
    ones_image, ones_text = torch.ones(B, N, dtype=torch.bool), torch.ones(B, L, dtype=torch.bool)
    out_none, out_ones = layer(image, None, text, None), layer(image, ones_image, text, ones_text)
    torch.testing.assert_close(out_none.fused, out_ones.fused)


@pytest.mark.parametrize("name", list_fusions())
def test_wrong_widths_and_masks_are_rejected(name):
    layer = make(name)
    image, text = (t.float() for t in inputs(name))
    with pytest.raises(ValueError, match="width"):
        layer(image[..., :-1], None, text, None)
    with pytest.raises(ValueError, match="image_mask"):
        layer(image, torch.ones(B, N + 1, dtype=torch.bool), text, None)
    with pytest.raises(TypeError):
        layer(image, None, text, torch.ones(B, L))


def test_registry_names_and_errors():
    assert list_fusions() == sorted(FUSIONS)
    assert {
        "parallel_coattention",
        "alternating_coattention",
        "hierarchical_coattention",
        "mcan",
        "mfb",
        "mfh",
        "cross_modal_attention",
        "cross_modal_transformer",
        "gated",
        "concat",
        "sum",
        "product",
    } == set(FUSIONS)
    with pytest.raises(ValueError, match="unknown fusion 'nope'") as info:
        create_fusion("nope", 4, 4)
    for name in FUSIONS:
        assert name in str(info.value)
    with pytest.raises(ValueError, match="depth") as info:
        create_fusion("gated", 4, 4, depth=2)
    assert "hidden_dim" in str(info.value)  # lists what the layer takes
    with pytest.raises(ValueError, match="order"):
        create_fusion("mfb", 4, 4, order=2)  # the name fixes it
    assert create_fusion("mfh", 4, 4, hidden_dim=8, factor=2).output_dim == 16  # order 2 → 2·o


@pytest.mark.parametrize("name", ["cross_modal_attention", "parallel_coattention"])
def test_an_all_true_region_mask_costs_no_masked_fill(name):
    """An image encoder's region mask is all True: the layer gives the same output as with no
    mask, without a masked_fill over it."""
    from torch.profiler import ProfilerActivity, profile

    torch.manual_seed(0)
    layer = create_fusion(name, image_dim=16, text_dim=12, hidden_dim=8).eval()
    image, text = torch.randn(2, 9, 16), torch.randn(2, 4, 12)
    regions = torch.ones(2, 9, dtype=torch.bool)
    with profile(activities=[ProfilerActivity.CPU]) as prof:
        masked = layer(image, regions, text, None)
    fills = [e for e in prof.key_averages() if e.key in ("aten::masked_fill", "aten::masked_fill_")]
    assert not fills, [(e.key, e.count) for e in fills]
    plain = layer(image, None, text, None)
    assert torch.equal(masked.fused, plain.fused)
