"""Checks of :class:`~vlkit.vision.ImageEncoder`'s options: where CBAM blocks and spatial
transformers go, and how an input spatial transformer sees and locates. Each bad setting
raises a ``ValueError`` that names the setting, what it got and what it needs."""

from __future__ import annotations

__all__ = ["CBAM_PLACEMENTS", "FEATURE_MODES", "check_feature_mode", "check_placements", "check_stn_options"]

#: How an encoder reads a backbone: a CNN's feature pyramid up to one stage, or the model's final
#: unpooled features (CNNs and ViTs).
FEATURE_MODES = ("features_only", "forward_features")

#: Where ``ImageEncoder(cbam=...)`` puts CBAM blocks.
CBAM_PLACEMENTS = ("stages", "blocks", "output", "regions")

Size = tuple[int, int]


def check_feature_mode(feature_mode: str) -> None:
    """Raise a ``ValueError`` naming the valid modes unless ``feature_mode`` is one of
    :data:`FEATURE_MODES`."""
    if feature_mode not in FEATURE_MODES:
        raise ValueError(f"unknown feature_mode {feature_mode!r}; valid: {list(FEATURE_MODES)}")


def check_placements(feature_mode: str, freeze: bool | int, cbam: str | None, stn: str | int | None) -> None:
    """Check where :class:`~vlkit.vision.ImageEncoder` puts its blocks and what it freezes.

    Raises:
        ValueError: an unknown ``feature_mode`` or ``cbam`` placement; ``stn`` not None, ``"input"``, ``"output"`` or a
            stage index >= 0; ``freeze`` not a bool or a number of stages >= 1; stage placements
            without ``feature_mode="features_only"``.
    """
    check_feature_mode(feature_mode)
    if cbam is not None and cbam not in CBAM_PLACEMENTS:
        raise ValueError(f"unknown cbam placement {cbam!r}; valid: None, {list(CBAM_PLACEMENTS)}")
    if stn not in (None, "input", "output") and (
        isinstance(stn, bool) or not isinstance(stn, int) or stn < 0
    ):
        raise ValueError(f"stn must be None, 'input', 'output' or a stage index >= 0, got {stn!r}")
    if not isinstance(freeze, bool) and (not isinstance(freeze, int) or freeze < 1):
        raise ValueError(f"freeze must be True, False or a number of stages >= 1, got {freeze!r}")
    staged = cbam == "stages" or isinstance(stn, int) or not isinstance(freeze, bool)
    if staged and feature_mode != "features_only":
        raise ValueError(
            "cbam='stages', stn=<stage> and freeze=<k stages> need feature_mode='features_only' (timm stages)"
        )


def check_stn_options(
    stn: str | int | None,
    stn_transform: str,
    stn_init_scale: float,
    stn_output_size: int | Size | None,
    stn_localization: str,
    stn_localization_size: int | Size | None,
    freeze: bool | int,
) -> tuple[Size | None, Size | None]:
    """Check a spatial transformer's options (see :class:`~vlkit.vision.ImageEncoder`) and
    return ``(output_size, localization_size)`` as ``(H, W)`` pairs or None: the size of the
    view the transformer hands the backbone, and of the view a ``"backbone"`` or
    ``"saliency"`` localisation reads (``stn_output_size`` unless ``stn_localization_size``).

    Raises:
        ValueError: ``stn_init_scale`` or ``stn_output_size`` without the transformer they are for;
            an unknown ``stn_localization``; a backbone localisation without ``stn="input"`` and
            ``freeze=True``; a saliency localisation without the ``"translation"`` transform;
            ``stn_localization_size`` without a backbone or saliency localisation.
    """
    if stn_init_scale != 1 and stn is None:
        raise ValueError(f"stn_init_scale={stn_init_scale} is for a spatial transformer; set stn too")
    if stn_output_size is not None and stn != "input":
        raise ValueError(f"stn_output_size is for stn='input' (the image), got stn={stn!r}")
    if stn_localization not in ("conv", "backbone", "saliency"):
        raise ValueError(
            f"stn_localization must be 'conv', 'backbone' or 'saliency', got {stn_localization!r}"
        )
    if stn_localization != "conv" and (stn != "input" or freeze is not True):
        raise ValueError(
            f"stn_localization {stn_localization!r} locates with the frozen backbone for an input "
            f"spatial transformer: it needs stn='input' and freeze=True, got stn={stn!r}, freeze={freeze!r}"
        )
    if stn_localization == "saliency" and stn_transform != "translation":
        raise ValueError(
            "stn_localization 'saliency' gives a window's position: it needs stn_transform "
            f"'translation' (and stn_init_scale < 1), got stn_transform={stn_transform!r}"
        )
    if stn_localization_size is not None and stn_localization == "conv":
        raise ValueError(
            "stn_localization_size is the view a 'backbone' or 'saliency' localisation reads; "
            "set stn_localization to one of them, or leave stn_localization_size unset"
        )
    output_size = _pair(stn_output_size)
    return output_size, _pair(stn_localization_size) or output_size


def _pair(size: int | Size | None) -> Size | None:
    """A side ``s`` as ``(s, s)``; a pair or None as it is."""
    return (size, size) if isinstance(size, int) and not isinstance(size, bool) else size
