"""Tests for vlkit.attention.transformer.TransformerBlock (pre-norm)."""

from __future__ import annotations

import pytest
import torch

from vlkit.attention import MultiHeadAttentionOutput, TransformerBlock


def test_block_is_pre_norm_residual():
    torch.manual_seed(0)
    block = TransformerBlock(8, num_heads=2).eval()
    x = torch.randn(2, 5, 8)
    mask = torch.tensor([[True] * 5, [True, True, True, False, False]])
    out = block(x, mask)
    assert isinstance(out, MultiHeadAttentionOutput) and out.weights is None
    h = x + block.attn(block.norm1(x), mask=mask).output
    torch.testing.assert_close(out.output, h + block.mlp(block.norm2(h)))


def test_block_returns_weights_on_request_and_masks_padding():
    block = TransformerBlock(8, num_heads=2)
    x = torch.randn(2, 5, 8)
    mask = torch.tensor([[True] * 5, [True, True, True, False, False]])
    out = block(x, mask, need_weights=True)
    assert out.weights.shape == (2, 2, 5, 5)
    assert torch.all(out.weights[1, :, :, 3:] == 0)
    noisy = x.clone()
    noisy[1, 3:] = 30.0
    torch.testing.assert_close(block(noisy, mask).output[1, :3], block(x, mask).output[1, :3])


def test_block_causal_ignores_the_future():
    block = TransformerBlock(8, num_heads=2).eval()
    x = torch.randn(1, 6, 8)
    changed = x.clone()
    changed[0, 4:] = torch.randn(2, 8)
    torch.testing.assert_close(block(x, causal=True).output[0, :4], block(changed, causal=True).output[0, :4])


def test_block_gradients_reach_every_parameter():
    block = TransformerBlock(8, num_heads=2)
    block(torch.randn(2, 5, 8)).output.pow(2).sum().backward()
    for name, p in block.named_parameters():
        assert p.grad is not None and p.grad.abs().sum() > 0, name


@pytest.mark.parametrize("kwargs", [{"dim": 10, "num_heads": 4}, {"dim": 8, "mlp_ratio": 0.0}])
def test_block_errors(kwargs):
    with pytest.raises(ValueError):
        TransformerBlock(**kwargs)
