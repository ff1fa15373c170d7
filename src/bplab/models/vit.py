"""A Vision Transformer (Dosovitskiy et al., 2021) for small images.

Patches are embedded by a strided convolution; a class token and learned position embeddings are
added; each encoder block is pre-norm, ``x + attn(norm(x))`` then ``x + mlp(norm(x))``; the
class token's final state feeds a linear head. Attention is softmax(q k^T / sqrt(d)) over the keys,
so each query's weights sum to 1.
"""

from __future__ import annotations

import math

import torch
from torch import nn

from bplab.errors import BplabError
from bplab.models.registry import register_model


class Attention(nn.Module):
    """Multi-head self-attention; keeps the last attention weights when `keep_weights` is set."""

    def __init__(self, dim: int, num_heads: int, attn_drop: float = 0.0):
        super().__init__()
        if dim % num_heads:
            raise BplabError(f"embed_dim {dim} is not divisible by num_heads {num_heads}")
        self.num_heads = num_heads
        self.head_dim = dim // num_heads
        self.qkv = nn.Linear(dim, 3 * dim)
        self.proj = nn.Linear(dim, dim)
        self.attn_drop = nn.Dropout(attn_drop)
        self.keep_weights = False
        self.last_weights: torch.Tensor | None = None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        N, T, D = x.shape
        qkv = self.qkv(x).reshape(N, T, 3, self.num_heads, self.head_dim)
        q, k, v = qkv.permute(2, 0, 3, 1, 4)  # each (N, heads, T, head_dim)
        scores = q @ k.transpose(-2, -1) / math.sqrt(self.head_dim)  # (N, heads, T queries, T keys)
        weights = scores.softmax(dim=-1)  # normalized over the keys
        if self.keep_weights:
            self.last_weights = weights.detach()
        out = self.attn_drop(weights) @ v  # (N, heads, T, head_dim)
        out = out.transpose(1, 2).reshape(N, T, D)  # (N, T, D)
        return self.proj(out)


class Block(nn.Module):
    """A pre-norm transformer encoder block: attention and an MLP, each with a residual."""

    def __init__(self, dim: int, num_heads: int, mlp_dim: int, drop_rate: float = 0.0):
        super().__init__()
        self.norm1 = nn.LayerNorm(dim)
        self.attn = Attention(dim, num_heads)
        self.norm2 = nn.LayerNorm(dim)
        self.mlp = nn.Sequential(
            nn.Linear(dim, mlp_dim),
            nn.GELU(),
            nn.Dropout(drop_rate),
            nn.Linear(mlp_dim, dim),
            nn.Dropout(drop_rate),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x + self.attn(self.norm1(x))
        return x + self.mlp(self.norm2(x))


class VisionTransformer(nn.Module):
    """ViT: patch embedding, class token, learned positions, `depth` blocks, linear head."""

    def __init__(self, num_classes: int = 10, in_chans: int = 1, img_size: int = 28,
                 patch_size: int = 4, embed_dim: int = 64, depth: int = 6, num_heads: int = 4,
                 mlp_dim: int = 128, drop_rate: float = 0.0):
        super().__init__()
        if img_size % patch_size:
            raise BplabError(f"img_size {img_size} is not divisible by patch_size {patch_size}")
        self.num_patches = (img_size // patch_size) ** 2
        self.patch_embed = nn.Conv2d(in_chans, embed_dim, kernel_size=patch_size,
                                     stride=patch_size)
        self.cls_token = nn.Parameter(torch.zeros(1, 1, embed_dim))
        self.pos_embed = nn.Parameter(torch.zeros(1, self.num_patches + 1, embed_dim))
        self.pos_drop = nn.Dropout(drop_rate)
        self.blocks = nn.Sequential(
            *[Block(embed_dim, num_heads, mlp_dim, drop_rate) for _ in range(depth)]
        )
        self.norm = nn.LayerNorm(embed_dim)
        self.num_features = embed_dim
        self.head = nn.Linear(embed_dim, num_classes)
        nn.init.trunc_normal_(self.pos_embed, std=0.02)
        nn.init.trunc_normal_(self.cls_token, std=0.02)
        for m in self.modules():
            if isinstance(m, nn.Linear):
                nn.init.trunc_normal_(m.weight, std=0.02)
                nn.init.zeros_(m.bias)

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        """Map images (N, C, H, W) to token states (N, 1 + num_patches, embed_dim)."""
        N = x.shape[0]
        tokens = self.patch_embed(x).flatten(2).transpose(1, 2)  # (N, num_patches, D)
        cls = self.cls_token.expand(N, -1, -1)  # (N, 1, D)
        tokens = torch.cat([cls, tokens], dim=1) + self.pos_embed  # (N, 1 + num_patches, D)
        tokens = self.blocks(self.pos_drop(tokens))
        return self.norm(tokens)

    def forward_head(self, features: torch.Tensor) -> torch.Tensor:
        """Map token states to logits (N, num_classes) through the class token."""
        return self.head(features[:, 0])

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.forward_head(self.forward_features(x))

    def attention_weights(self, x: torch.Tensor) -> list[torch.Tensor]:
        """Return each block's attention weights, (N, heads, T, T) rows summing to 1, for `x`."""
        attns = [block.attn for block in self.blocks]
        for attn in attns:
            attn.keep_weights = True
        try:
            with torch.no_grad():
                self(x)
            return [attn.last_weights for attn in attns]
        finally:
            for attn in attns:
                attn.keep_weights = False
                attn.last_weights = None


@register_model
def vit_course(num_classes: int = 10, in_chans: int = 1, img_size: int = 28,
               **kwargs) -> VisionTransformer:
    """The course's ViT settings: patch 14 (4 tokens), embedding 64, MLP 128, 4 heads, 1 block."""
    options = dict(patch_size=14, embed_dim=64, depth=1, num_heads=4, mlp_dim=128)
    options.update(kwargs)
    return VisionTransformer(num_classes, in_chans, img_size, **options)


@register_model
def vit_tiny(num_classes: int = 10, in_chans: int = 1, img_size: int = 28,
             **kwargs) -> VisionTransformer:
    """A tiny ViT for 28x28 or 32x32 input: patch 4, embedding 64, 6 blocks, 4 heads, MLP 128."""
    options = dict(patch_size=4, embed_dim=64, depth=6, num_heads=4, mlp_dim=128)
    options.update(kwargs)
    return VisionTransformer(num_classes, in_chans, img_size, **options)
