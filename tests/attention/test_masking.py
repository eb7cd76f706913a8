"""Tests for vlkit.attention.masking: masked_softmax, lengths_to_mask, check_mask.

Contract (docs/mechanisms.md#masked-softmax): masks are bool with True = keep; masked positions get weight
exactly 0; every row sums to 1 over its kept positions; an all-False row is all zeros and
never NaN, also in fp16/bf16 and under autocast.
"""

from __future__ import annotations

import math

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from vlkit.attention import check_mask, lengths_to_mask, masked_softmax

LOW_PRECISION = [torch.float32, torch.float16, torch.bfloat16]


# --------------------------------------------------------------------------- hand cases
def test_masked_softmax_hand_computed_1x3():
    scores = torch.tensor([[1.0, 2.0, 3.0]])
    mask = torch.tensor([[True, True, False]])
    weights = masked_softmax(scores, mask)
    # softmax over the kept scores [1, 2]: e^1 / (e^1 + e^2) = 1 / (1 + e), e / (1 + e)
    e = math.e
    expected = torch.tensor([[1.0 / (1.0 + e), e / (1.0 + e), 0.0]])
    torch.testing.assert_close(weights, expected, rtol=1e-6, atol=1e-7)
    assert weights[0, 2].item() == 0.0


def test_masked_softmax_without_mask_is_plain_softmax():
    scores = torch.tensor([[0.0, math.log(3.0)]])
    # e^0 / (e^0 + 3) = 1/4, 3/4
    torch.testing.assert_close(masked_softmax(scores), torch.tensor([[0.25, 0.75]]))


def test_masked_softmax_all_true_mask_equals_no_mask():
    scores = torch.tensor([[0.5, -1.0, 2.0], [3.0, 3.0, 0.0]])
    mask = torch.ones(2, 3, dtype=torch.bool)
    e = torch.exp(scores)
    expected = e / e.sum(-1, keepdim=True)
    torch.testing.assert_close(masked_softmax(scores, mask), expected)
    torch.testing.assert_close(masked_softmax(scores, None), expected)


def test_masked_softmax_rows_sum_to_one_and_masked_exactly_zero():
    g = torch.Generator().manual_seed(0)
    scores = torch.randn(2, 4, 5, generator=g) * 10
    mask = torch.tensor([[True, False, True, True, False], [False, False, False, False, True]])[
        :, None, :
    ]  # (b, 1, n)
    weights = masked_softmax(scores, mask)
    full_mask = mask.expand_as(scores)
    assert (weights[~full_mask] == 0).all()
    assert (weights >= 0).all()
    torch.testing.assert_close(weights.sum(-1), torch.ones(2, 4))
    # the single kept key of batch 1 gets all the weight
    torch.testing.assert_close(weights[1, :, 4], torch.ones(4))


def test_masked_softmax_over_other_dim():
    scores = torch.tensor([[1.0, 5.0], [2.0, 7.0], [3.0, 9.0]])  # normalise over dim 0
    mask = torch.tensor([[True, False], [True, True], [False, True]])
    weights = masked_softmax(scores, mask, dim=0)
    e = math.e
    # column 0: kept [1, 2] -> 1/(1+e), e/(1+e); column 1: kept [7, 9] -> 1/(1+e^2), e^2/(1+e^2)
    expected = torch.tensor([[1 / (1 + e), 0.0], [e / (1 + e), 1 / (1 + e**2)], [0.0, e**2 / (1 + e**2)]])
    torch.testing.assert_close(weights, expected)


@pytest.mark.parametrize("dtype", LOW_PRECISION)
def test_all_false_row_is_zero_not_nan(dtype):
    scores = torch.tensor([[1.0, 2.0, 3.0], [0.5, -0.5, 4.0]], dtype=dtype)
    mask = torch.tensor([[False, False, False], [True, False, True]])
    weights = masked_softmax(scores, mask)
    assert weights.dtype == dtype
    assert not torch.isnan(weights).any()
    assert (weights[0] == 0).all()
    assert weights[1, 1].item() == 0.0
    # kept row: softmax over [0.5, 4.0] = 1/(1+e^3.5), e^3.5/(1+e^3.5)
    expected = torch.tensor([1 / (1 + math.exp(3.5)), math.exp(3.5) / (1 + math.exp(3.5))])
    tol = 1e-6 if dtype == torch.float32 else 1e-2
    torch.testing.assert_close(weights[1, [0, 2]].float(), expected, rtol=tol, atol=tol)


@pytest.mark.parametrize("dtype", LOW_PRECISION)
def test_large_scores_do_not_overflow(dtype):
    big = torch.finfo(dtype).max / 2
    scores = torch.tensor([[big, big, -big]], dtype=dtype)
    mask = torch.tensor([[True, True, False]])
    weights = masked_softmax(scores, mask)
    assert not torch.isnan(weights).any()
    torch.testing.assert_close(weights.float(), torch.tensor([[0.5, 0.5, 0.0]]))


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_very_negative_kept_scores_still_beat_masked_ones(dtype):
    # masked positions must lose against any finite kept score, however negative
    scores = torch.tensor([[-1e6, -1e6 + 1, 0.0]], dtype=dtype)
    mask = torch.tensor([[True, True, False]])
    weights = masked_softmax(scores, mask)
    e = math.e
    expected = torch.tensor([[1 / (1 + e), e / (1 + e), 0.0]], dtype=dtype)
    torch.testing.assert_close(weights, expected, rtol=1e-6, atol=1e-7)


def test_all_false_row_under_bf16_autocast():
    g = torch.Generator().manual_seed(1)
    q = torch.randn(2, 3, 8, generator=g)
    k = torch.randn(2, 4, 8, generator=g)
    mask = torch.ones(2, 3, 4, dtype=torch.bool)
    mask[0, 1] = False  # one fully masked query row
    mask[1, :, 2:] = False
    with torch.autocast("cpu", dtype=torch.bfloat16):
        scores = q @ k.transpose(-1, -2)  # autocast runs matmul in bf16
        assert scores.dtype == torch.bfloat16
        weights = masked_softmax(scores, mask)
    assert weights.dtype == torch.bfloat16
    assert not torch.isnan(weights).any()
    assert (weights[0, 1] == 0).all()
    assert (weights[~mask] == 0).all()
    kept_rows = mask.any(-1)
    torch.testing.assert_close(
        weights.float().sum(-1)[kept_rows], torch.ones(int(kept_rows.sum())), atol=1e-2, rtol=0
    )


@pytest.mark.parametrize("dtype", LOW_PRECISION + [torch.float64])
def test_output_dtype_equals_input_dtype(dtype):
    scores = torch.randn(2, 3, 4).to(dtype)
    mask = torch.rand(2, 3, 4) > 0.3
    assert masked_softmax(scores, mask).dtype == dtype
    assert masked_softmax(scores).dtype == dtype


# --------------------------------------------------------------------------- errors
@pytest.mark.parametrize("bad", [torch.ones(1, 3), torch.ones(1, 3, dtype=torch.long)])
def test_non_bool_mask_raises_type_error(bad):
    with pytest.raises(TypeError, match="bool"):
        masked_softmax(torch.zeros(1, 3), bad)
    with pytest.raises(TypeError):
        check_mask(bad)


def test_check_mask_accepts_none_and_bool():
    # accepted masks pass through silently (return None, raise nothing)
    assert check_mask(None) is None
    assert check_mask(torch.ones(2, dtype=torch.bool)) is None
    assert check_mask(torch.zeros(2, 3, dtype=torch.bool), "text_mask") is None


@pytest.mark.parametrize("mask_shape", [(2, 3, 5), (4,), (3, 4, 3), (2, 4, 1, 3)])
def test_unbroadcastable_mask_raises_value_error(mask_shape):
    scores = torch.zeros(2, 4, 3)
    with pytest.raises(ValueError, match="broadcast"):
        masked_softmax(scores, torch.ones(mask_shape, dtype=torch.bool))


# --------------------------------------------------------------------------- lengths_to_mask
def test_lengths_to_mask_hand_case():
    mask = lengths_to_mask(torch.tensor([2, 0, 3]))
    expected = torch.tensor([[True, True, False], [False, False, False], [True, True, True]])
    assert mask.dtype == torch.bool
    assert torch.equal(mask, expected)


def test_lengths_to_mask_with_max_len():
    mask = lengths_to_mask(torch.tensor([1, 4]), max_len=5)
    expected = torch.tensor([[True, False, False, False, False], [True, True, True, True, False]])
    assert torch.equal(mask, expected)


@pytest.mark.parametrize(
    "lengths, max_len",
    [
        (torch.tensor([1.0, 2.0]), None),  # float
        (torch.tensor([[1, 2]]), None),  # 2-D
        (torch.tensor([-1, 2]), None),  # negative
        (torch.tensor([1, 6]), 5),  # exceeds max_len
    ],
)
def test_lengths_to_mask_value_errors(lengths, max_len):
    with pytest.raises(ValueError):
        lengths_to_mask(lengths, max_len)


# --------------------------------------------------------------------------- property test
@st.composite
def scores_and_masks(draw):
    b = draw(st.integers(1, 3))
    m = draw(st.integers(1, 4))
    n = draw(st.integers(1, 6))
    key_mask_only = draw(st.booleans())
    mask_shape = (b, 1, n) if key_mask_only else (b, m, n)
    numel = math.prod(mask_shape)
    flags = draw(st.lists(st.booleans(), min_size=numel, max_size=numel))
    values = draw(
        st.lists(st.floats(-60.0, 60.0, allow_nan=False, width=32), min_size=b * m * n, max_size=b * m * n)
    )
    scores = torch.tensor(values, dtype=torch.float32).reshape(b, m, n)
    mask = torch.tensor(flags, dtype=torch.bool).reshape(mask_shape)
    return scores, mask


@settings(max_examples=50, deadline=None)
@given(scores_and_masks())
def test_masked_softmax_properties(case):
    scores, mask = case
    weights = masked_softmax(scores, mask)
    full = mask.expand_as(scores)
    assert weights.shape == scores.shape
    assert not torch.isnan(weights).any()
    assert (weights >= 0).all()
    assert (weights[~full] == 0).all()
    kept = full.any(-1)  # (b, m)
    sums = weights.sum(-1)
    torch.testing.assert_close(sums[kept], torch.ones(int(kept.sum())), atol=1e-5, rtol=0)
    assert (weights[~kept] == 0).all()  # all-masked rows are all zeros


def test_drop_full_mask_drops_only_a_mask_that_keeps_everything():
    from vlkit.attention.masking import drop_full_mask

    full = torch.ones(2, 5, dtype=torch.bool)
    partial = full.clone()
    partial[1, 3:] = False
    assert drop_full_mask(full) is None and drop_full_mask(None) is None
    assert drop_full_mask(partial) is partial
    compiled = torch.compile(lambda m: drop_full_mask(m) is None, fullgraph=True, backend="eager")
    assert compiled(full) is False  # while tracing, the mask is kept (no host read)
