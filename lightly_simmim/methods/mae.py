"""MAE (He et al., "Masked Autoencoders Are Scalable Vision Learners", CVPR 2022).

Built from lightly's parts: ``MaskedVisionTransformerTIMM`` encodes only the kept
patches, ``MaskedVisionTransformerDecoderTIMM`` (lightly's successor of the
deprecated ``MAEDecoderTIMM``) decodes the full sequence with mask tokens, and
``lightly.models.utils`` patchifies, gathers and scatters tokens.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from lightly.models.modules import (
    MaskedVisionTransformerDecoderTIMM,
    MaskedVisionTransformerTIMM,
)
from lightly.models.utils import normalize_mean_var, patchify, set_at_index, unpatchify
from lightly.transforms import MAETransform
from timm.models.vision_transformer import VisionTransformer
from torch import Tensor, nn

from lightly_simmim.batch_transforms import BatchRandomResizedCrop
from lightly_simmim.encoders import TimmKwargs, create_timm_model
from lightly_simmim.encoders.base import prepare_timm_model, square_size
from lightly_simmim.methods.base import PretrainMethod
from lightly_simmim.methods.interface import Reconstruction, ViewTransform
from lightly_simmim.methods.optimization import timm_no_weight_decay
from lightly_simmim.settings import Checked, setting
from lightly_simmim.transforms import ConvertChannels


@dataclass
class MAESettings(Checked):
    """MAE's options; the defaults are the paper's (ViT-B/16 recipe)."""

    #: Fraction of patches removed from the encoder's input.
    mask_ratio: float = setting(0.75, ge=0, lt=1)
    #: Width of the decoder tokens.
    decoder_dim: int = setting(512, ge=1)
    #: Transformer blocks of the decoder.
    decoder_depth: int = setting(8, ge=1)
    #: Attention heads of the decoder; must divide decoder_dim.
    decoder_num_heads: int = setting(16, ge=1)
    #: Regress per-patch normalised pixels (mean 0, std 1 per patch): the target of
    #: MAE's best results (its default in the released training code).
    norm_pix_loss: bool = True


def _init_linear(layer: nn.Linear) -> nn.Linear:
    # MAE initialises its linear layers xavier-uniform with zero bias.
    nn.init.xavier_uniform_(layer.weight)
    nn.init.zeros_(layer.bias)
    return layer


class MAEMethod(PretrainMethod):
    """MAE: encode a random 25 % of the patches, reconstruct the others' pixels.

    The encoder is a timm ``VisionTransformer`` wrapped in lightly's
    ``MaskedVisionTransformerTIMM``, initialised as in MAE (xavier-uniform linear
    layers, a fixed 2-D sine-cosine position embedding, which is therefore not
    trained). The loss is the mean squared error on the masked patches only, against
    per-patch normalised pixels when ``norm_pix_loss``. Patches are masked per image
    uniformly at random, ``int(num_patches * (1 - mask_ratio))`` kept, from this
    rank's seeded generator (lightly's ``random_token_mask`` draws from torch's
    global state, which is the same on every rank after ``seed_everything``).

    Pooled features (:meth:`forward`) are timm's own pooled pre-logits features of
    the unmasked image: the class token for a default ViT (MAE's linear-probing
    choice), the mean of the patch tokens with ``global_pool="avg"`` in the encoder
    kwargs (MAE's fine-tuning choice). They are the same features SimMIM's ViT
    adapter and the exported timm model give, so the methods are compared on equal
    terms.

    Images must be square and exactly the ViT's ``img_size`` (lightly's patchify and
    the decoder's fixed position embedding assume one square grid).

    Raises:
        TypeError: If the encoder is not a timm ``VisionTransformer``.
        ValueError: If the ViT's grid does not match ``input_size``, the decoder
            width is not a multiple of its heads, or ``mask_ratio`` leaves no patch
            kept or none masked.
    """

    Settings = MAESettings
    settings: MAESettings

    @classmethod
    def build_encoder(cls, name: str, kwargs: TimmKwargs) -> nn.Module:
        """A timm ViT without classifier (``create_timm_model(name, **kwargs)``).

        Raises:
            ValueError: If the name is not a ``VisionTransformer``.
        """
        model = create_timm_model(name, **kwargs)
        if not isinstance(model, VisionTransformer):
            raise ValueError(
                f"mae needs a timm VisionTransformer (vit_*, deit_*), but {name!r} is "
                f"a {type(model).__name__}."
            )
        return model

    def _build_modules(self, encoder: nn.Module) -> None:
        if not isinstance(encoder, VisionTransformer):
            raise TypeError(
                f"mae needs a timm VisionTransformer, got {type(encoder).__name__}."
            )
        settings = self.settings
        prepare_timm_model(encoder)  # drop a classifier: it would never get a gradient
        patch_size = square_size(encoder.patch_embed.patch_size, "patch size")
        grid = tuple(int(g) for g in encoder.patch_embed.grid_size)
        expected = (self.input_size // patch_size,) * 2
        if self.input_size % patch_size or grid != expected:
            raise ValueError(
                f"mae needs square images that are exactly the ViT's img_size: the "
                f"ViT has a {grid} grid of {patch_size} px patches but input_size="
                f"{self.input_size}; create it with img_size={self.input_size}."
            )
        if encoder.patch_embed.proj.in_channels != self.in_chans:
            raise ValueError(
                f"The ViT takes {encoder.patch_embed.proj.in_channels} input channels "
                f"but in_chans={self.in_chans}; create it with in_chans="
                f"{self.in_chans}."
            )
        if settings.decoder_dim % settings.decoder_num_heads:
            raise ValueError(
                f"decoder_dim ({settings.decoder_dim}) must be a multiple of "
                f"decoder_num_heads ({settings.decoder_num_heads})."
            )
        self.patch_size = patch_size
        self.num_patches = grid[0] * grid[1]
        self.num_prefix_tokens = int(encoder.num_prefix_tokens)
        self.num_keep = int(self.num_patches * (1.0 - settings.mask_ratio))
        if not 0.0 <= settings.mask_ratio <= 1.0 or not (
            1 <= self.num_keep < self.num_patches
        ):
            raise ValueError(
                f"mask_ratio={settings.mask_ratio} keeps {self.num_keep} of "
                f"{self.num_patches} patches; MAE needs at least one kept and one "
                f"masked patch."
            )

        self.backbone = MaskedVisionTransformerTIMM(vit=encoder)
        # MAE drops masked patches instead of replacing them: the encoder's mask
        # token is never used, and a trainable unused parameter breaks DDP.
        self.backbone.mask_token.requires_grad_(False)
        self.decoder_embed = _init_linear(
            nn.Linear(encoder.embed_dim, settings.decoder_dim)
        )
        self.decoder = MaskedVisionTransformerDecoderTIMM(
            num_patches=self.num_patches,
            embed_dim=settings.decoder_dim,
            depth=settings.decoder_depth,
            num_heads=settings.decoder_num_heads,
            num_prefix_tokens=self.num_prefix_tokens,
        )
        self.decoder_pred = _init_linear(
            nn.Linear(settings.decoder_dim, patch_size**2 * self.in_chans)
        )

    @property
    def vit(self) -> VisionTransformer:
        """The timm ViT."""
        vit: VisionTransformer = self.backbone.vit
        return vit

    @property
    def feature_dim(self) -> int:
        """The ViT's embedding width."""
        return int(self.vit.num_features)

    def forward(self, images: Tensor) -> Tensor:
        """timm's pooled features (B, feature_dim) of unmasked (B, C, H, W) images."""
        tokens = self.vit.forward_features(images)  # (B, prefix + N, D)
        pooled: Tensor = self.vit.forward_head(tokens, pre_logits=True)  # (B, D)
        return pooled

    def _random_masking(
        self, batch_size: int, generator: torch.Generator, device: torch.device
    ) -> tuple[Tensor, Tensor]:
        """Draws which patches each image keeps.

        Returns:
            (idx_keep (B, prefix + num_keep): sequence indices of the prefix tokens
            and the kept patches; patch_mask bool (B, N), True = masked).
        """
        noise = torch.rand(
            batch_size, self.num_patches, device=device, generator=generator
        )  # (B, N)
        # The num_keep lowest scores of a row are a uniform subset of the patches.
        order = noise.argsort(dim=1)  # (B, N)
        keep, masked = order[:, : self.num_keep], order[:, self.num_keep :]
        prefix = torch.arange(self.num_prefix_tokens, device=device)
        prefix = prefix.expand(batch_size, -1)  # (B, prefix): never masked
        # Patch i sits at sequence position prefix + i.
        idx_keep = torch.cat([prefix, keep + self.num_prefix_tokens], dim=1)
        patch_mask = torch.zeros(
            batch_size, self.num_patches, dtype=torch.bool, device=device
        )
        patch_mask.scatter_(1, masked, True)  # (B, N)
        return idx_keep, patch_mask

    def _predict(self, images: Tensor, idx_keep: Tensor) -> tuple[Tensor, Tensor]:
        """Encodes the kept patches and predicts the pixels of every patch.

        Args:
            images: (B, C, H, W).
            idx_keep: (B, prefix + num_keep) sequence indices to encode.

        Returns:
            ((B, N, patch_size**2 * C) predicted patches, in lightly's patchify
            order; (B, D) mean of the encoded kept patch tokens).
        """
        batch = images.shape[0]
        encoded = self.backbone.encode(images, idx_keep=idx_keep)  # (B, K, D)
        pooled = encoded[:, self.num_prefix_tokens :].mean(dim=1)  # (B, D)
        tokens = self.decoder_embed(encoded)  # (B, K, D_dec)
        # Full sequence of mask tokens with the encoded tokens put back in place.
        sequence = self.decoder.mask_token.to(tokens.dtype).expand(
            batch, self.decoder.sequence_length, -1
        )  # (B, prefix + N, D_dec)
        sequence = set_at_index(sequence, idx_keep, tokens)
        decoded = self.decoder.decode(self.decoder.add_pos_embed(sequence))
        # Predict pixels for patch tokens only: (B, N, D_dec) -> (B, N, p * p * C).
        prediction: Tensor = self.decoder_pred(decoded[:, self.num_prefix_tokens :])
        return prediction, pooled

    def method_loss(self, views: list[Tensor]) -> tuple[Tensor, Tensor | None]:
        images = views[0]  # (B, C, H, W)
        idx_keep, patch_mask = self._random_masking(
            len(images), self._generator(images.device), images.device
        )
        prediction, pooled = self._predict(images, idx_keep)  # (B, N, p * p * C)
        target = patchify(images, self.patch_size)  # (B, N, p * p * C)
        if self.settings.norm_pix_loss:
            target = normalize_mean_var(target, dim=-1)
        per_patch = (prediction - target).pow(2).mean(dim=-1)  # (B, N)
        weight = patch_mask.to(per_patch.dtype)
        loss = (per_patch * weight).sum() / weight.sum()  # masked patches only
        # The online classifier reads the encoded visible patches (as lightly's MAE
        # benchmark does): no second forward of the whole image.
        return loss, pooled

    def batch_augmentation(self) -> BatchRandomResizedCrop | None:
        """MAETransform's crop (area 0.2-1) and flip, per batch on the device."""
        if self.transform_factory is not None:
            return None
        return BatchRandomResizedCrop(
            self.input_size,
            scale=(0.2, 1.0),
            mean=self.mean,
            std=self.std,
            in_chans=self.in_chans,
        )

    def _own_transform(self) -> ViewTransform:
        """lightly's ``MAETransform``: crop (0.2-1), flip, normalise; one view."""
        transform = MAETransform(input_size=self.input_size, normalize=self.normalize)
        return ConvertChannels(transform, self.in_chans)

    @torch.no_grad()
    def reconstruct_batch(self, images: Tensor) -> Reconstruction | None:
        """MAE's prediction for images masked with a fixed-seed mask.

        With ``norm_pix_loss`` the predicted patches are mapped back with each
        patch's own mean and std (which the model never sees for masked patches;
        this is for display only).

        Args:
            images: (B, C, H, W) normalised images.

        Returns:
            (images, mask bool (B, H / patch_size, W / patch_size) with True =
            masked, reconstruction (B, C, H, W); visible patches hold the decoder's
            output for them too).
        """
        batch = len(images)
        idx_keep, patch_mask = self._random_masking(
            batch, self._fixed_generator(images.device), images.device
        )
        prediction, _ = self._predict(images, idx_keep)  # (B, N, p * p * C)
        if self.settings.norm_pix_loss:
            target = patchify(images, self.patch_size)
            mean = target.mean(dim=-1, keepdim=True)
            std = (target.var(dim=-1, keepdim=True) + 1e-6).sqrt()
            prediction = prediction * std + mean
        reconstruction = unpatchify(prediction, self.patch_size, self.in_chans)
        side = self.input_size // self.patch_size
        return images, patch_mask.view(batch, side, side), reconstruction

    def timm_encoder(self) -> nn.Module:
        """The timm ViT (its weights are the pretrained encoder)."""
        return self.vit

    def _no_weight_decay(self) -> set[str]:
        # Position embeddings are frozen here; the class token and the decoder's
        # mask token are the trainable tokens without decay.
        return timm_no_weight_decay(self.vit, "backbone.vit.") | {
            "decoder.mask_token",
            "decoder.pos_embed",
        }
