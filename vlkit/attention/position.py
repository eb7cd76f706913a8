"""Sinusoidal positional encodings, 1-D for token sequences and 2-D for image grids.

``P[i, 2j] = sin(i / 10000^{2j/d})``, ``P[i, 2j+1] = cos(i / 10000^{2j/d})``
(Vaswani et al., NeurIPS 2017, arXiv:1706.03762). The 2-D form spends half the channels
on the row index and half on the column index (as in DETR, Carion et al., ECCV 2020).
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

__all__ = [
    "SinusoidalPositionalEncoding",
    "sinusoidal_position_encoding",
    "sinusoidal_position_encoding_2d",
]


def sinusoidal_position_encoding(
    length: int, dim: int, base: float = 10000.0, dtype: torch.dtype = torch.float32
) -> Tensor:
    """1-D sinusoidal positional encoding.

    Args:
        length: number of positions (>= 0).
        dim: encoding width, a positive even number.
        base: the wavelength base (10000 in the paper).

    Returns:
        ``(length, dim)`` tensor with values in ``[-1, 1]``.

    Raises:
        ValueError: if ``dim`` is not a positive even number or ``length`` is negative.
    """
    if dim <= 0 or dim % 2:
        raise ValueError(f"dim must be a positive even number, got {dim}")
    if length < 0:
        raise ValueError(f"length must be >= 0, got {length}")
    position = torch.arange(length, dtype=torch.float64)[:, None]  # (length, 1)
    freq = base ** (-torch.arange(0, dim, 2, dtype=torch.float64) / dim)  # (dim/2,)
    angle = position * freq  # (length, dim/2)
    enc = torch.zeros(length, dim, dtype=torch.float64)
    enc[:, 0::2] = torch.sin(angle)
    enc[:, 1::2] = torch.cos(angle)
    return enc.to(dtype)


def sinusoidal_position_encoding_2d(
    height: int, width: int, dim: int, base: float = 10000.0, dtype: torch.dtype = torch.float32
) -> Tensor:
    """2-D sinusoidal positional encoding for an image grid, flattened row-major.

    Args:
        height, width: grid size (>= 0).
        dim: encoding width, divisible by 4 (``dim/2`` channels for rows, ``dim/2`` for columns).

    Returns:
        ``(height * width, dim)``: row ``r * width + c`` is ``[P_row(r); P_col(c)]``.

    Raises:
        ValueError: if ``dim`` is not a positive multiple of 4.
    """
    if dim <= 0 or dim % 4:
        raise ValueError(f"dim must be a positive multiple of 4 for a 2-D encoding, got {dim}")
    rows = sinusoidal_position_encoding(height, dim // 2, base, dtype)  # (H, d/2)
    cols = sinusoidal_position_encoding(width, dim // 2, base, dtype)  # (W, d/2)
    grid = torch.cat(
        [rows[:, None, :].expand(height, width, dim // 2), cols[None, :, :].expand(height, width, dim // 2)],
        dim=-1,
    )  # (H, W, d)
    return grid.reshape(height * width, dim)


class SinusoidalPositionalEncoding(nn.Module):
    """Adds the 1-D sinusoidal encoding to a sequence (Vaswani et al., NeurIPS 2017).

    Args:
        dim: feature width (even).
        max_len: longest sequence supported (> 0).
        dropout: dropout after the addition, in ``[0, 1)``.

    Shapes: ``forward(x: (b, l, dim)) -> (b, l, dim)``.

    Raises:
        ValueError: if ``l > max_len`` or the width differs from ``dim``.
    """

    def __init__(self, dim: int, max_len: int = 512, dropout: float = 0.0) -> None:
        super().__init__()
        self.register_buffer("encoding", sinusoidal_position_encoding(max_len, dim), persistent=False)
        self.dropout = nn.Dropout(dropout)

    def forward(self, x: Tensor) -> Tensor:
        length, dim = x.shape[-2], x.shape[-1]
        if length > self.encoding.shape[0] or dim != self.encoding.shape[1]:
            raise ValueError(
                f"input (b, l, d) = {tuple(x.shape)} does not fit the encoding table "
                f"(max_len={self.encoding.shape[0]}, dim={self.encoding.shape[1]}); raise max_len"
            )
        return self.dropout(x + self.encoding[:length].to(x.dtype))
