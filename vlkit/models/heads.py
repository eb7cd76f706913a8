"""Task heads: features → logits."""

from __future__ import annotations

from torch import Tensor, nn

__all__ = ["VQAHead"]


class VQAHead(nn.Module):
    """Answer classifier over a fixed answer vocabulary (Antol et al., ICCV 2015, arXiv:1505.00468).

    ``logits = W_h · tanh(W · x)`` with dropout, as the answer MLP of Lu et al. (NeurIPS 2016):
    ``h = tanh(W(q̂ + v̂))``, ``p = softmax(W_h h)``.

    Args:
        input_dim: width of the joint vector.
        num_answers: size ``K`` of the answer vocabulary (> 0).
        hidden_dim: width of the hidden layer.
        dropout: dropout before each linear layer, in ``[0, 1)``.

    Shapes: ``forward(x: (b, input_dim)) -> (b, K)`` unnormalised logits.
    """

    def __init__(self, input_dim: int, num_answers: int, hidden_dim: int = 512, dropout: float = 0.0) -> None:
        super().__init__()
        if num_answers < 1:
            raise ValueError(f"num_answers must be >= 1, got {num_answers}")
        self.net = nn.Sequential(
            nn.Dropout(dropout),
            nn.Linear(input_dim, hidden_dim),
            nn.Tanh(),
            nn.Dropout(dropout),
            nn.Linear(hidden_dim, num_answers),
        )

    def forward(self, x: Tensor) -> Tensor:
        return self.net(x)
