"""vlkit: attention and fusion layers, models and training recipes for vision-language learning.

Subpackages: ``attention``, ``vision``, ``text``, ``fusion``, ``models`` (plain PyTorch),
``tasks``, ``data`` (PyTorch Lightning), ``metrics``; the ``vlkit`` command is ``vlkit.cli``.
"""

__version__ = "0.1.0"
