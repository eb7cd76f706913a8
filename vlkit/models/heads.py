"""Task heads: features → logits."""

from __future__ import annotations

from torch import Tensor, nn

__all__ = ["ClassificationHead", "VQAHead"]


class ClassificationHead(nn.Module):
    """An MLP classifier over a joint vector: ``logits = W_h · tanh(W · x)`` with dropout.

    The answer MLP of Lu et al. (NeurIPS 2016, arXiv:1606.00061): ``h = tanh(W(q̂ + v̂))``,
    ``p = softmax(W_h h)``; used for VQA answers (:class:`VQAHead`) and sentiment classes.

    Args:
        input_dim: width of the joint vector.
        num_classes: number of classes ``K`` (> 0).
        hidden_dim: width of the hidden layer.
        dropout: dropout before each linear layer, in ``[0, 1)``.

    Shapes: ``forward(x: (b, input_dim)) -> (b, K)`` unnormalised logits.

    Raises:
        ValueError: ``num_classes < 1``.
    """

    def __init__(self, input_dim: int, num_classes: int, hidden_dim: int = 512, dropout: float = 0.0) -> None:
        super().__init__()
        if num_classes < 1:
            raise ValueError(f"num_classes must be >= 1, got {num_classes}")
        self.net = nn.Sequential(
            nn.Dropout(dropout),
            nn.Linear(input_dim, hidden_dim),
            nn.Tanh(),
            nn.Dropout(dropout),
            nn.Linear(hidden_dim, num_classes),
        )

    def forward(self, x: Tensor) -> Tensor:
        return self.net(x)


class VQAHead(ClassificationHead):
    """Answer classifier over a fixed answer vocabulary (Antol et al., ICCV 2015, arXiv:1505.00468):
    a :class:`ClassificationHead` whose classes are the ``K`` answers.

    Args:
        input_dim: width of the joint vector.
        num_answers: size ``K`` of the answer vocabulary (> 0).
        hidden_dim: width of the hidden layer.
        dropout: dropout before each linear layer, in ``[0, 1)``.

    Shapes: ``forward(x: (b, input_dim)) -> (b, K)`` unnormalised logits.

    Raises:
        ValueError: ``num_answers < 1``.
    """

    def __init__(self, input_dim: int, num_answers: int, hidden_dim: int = 512, dropout: float = 0.0) -> None:
        if num_answers < 1:
            raise ValueError(f"num_answers must be >= 1, got {num_answers}")
        super().__init__(input_dim, num_answers, hidden_dim, dropout)
