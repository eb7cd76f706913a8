"""Plain, equation-by-equation implementations of vlkit's layers, written as a competent engineer
would, with the same weights, used as test oracles and benchmark baselines.

Each takes a vlkit layer and copies its weights (see :mod:`vlkit.testing.references`):
:class:`PlainParallelCoAttention`, :class:`PlainCrossModalAttention`, :class:`PlainMFB` (and
:func:`plain_mfb`), :class:`PlainMFBCoAttention`; :func:`torch_mha_like` and
:func:`timm_cbam_like` build torch's ``MultiheadAttention`` and timm's ``CbamModule`` with a
vlkit layer's weights. Not imported by ``vlkit/__init__.py``; it imports only torch, timm and
the layers it mirrors.
"""

from vlkit.testing import references
from vlkit.testing.references import *

__all__ = list(references.__all__)
