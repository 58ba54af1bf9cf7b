"""Transformer building blocks and the embedding network h_alpha of ACTIVA (paper 5.2).

The embedding network reads a dataset with its intervention representation appended,
(B, N, d, 1 + |I|), and alternates self-attention over the variable axis and over the sample
axis. Nothing in it carries a position: it is exactly equivariant under permutations of the
variables and, after the final mean over samples, exactly invariant under permutations of
the samples. It therefore accepts any d and any N.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


class MultiHeadSelfAttention(nn.Module):
    """Self-attention over the token axis of (T, S, e) with scaled_dot_product_attention."""

    def __init__(self, embed_dim: int, heads: int) -> None:
        super().__init__()
        if embed_dim % heads != 0:
            raise ValueError(f"embed_dim ({embed_dim}) must be divisible by heads ({heads})")
        self.heads = heads
        self.qkv = nn.Linear(embed_dim, 3 * embed_dim)
        self.out = nn.Linear(embed_dim, embed_dim)

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        # tokens: (T, S, e), attention over S within each of the T groups
        groups, length, embed = tokens.shape
        qkv = self.qkv(tokens).view(groups, length, 3, self.heads, embed // self.heads)
        query, key, value = qkv.permute(2, 0, 3, 1, 4).unbind(0)  # each (T, H, S, e/H)
        return self.out(attend(query, key, value).transpose(1, 2).reshape(groups, length, embed))


def attend(query: torch.Tensor, key: torch.Tensor, value: torch.Tensor) -> torch.Tensor:
    """softmax(q kᵀ / sqrt(e/H)) v for (T, H, S, e/H) tensors, on the fastest kernel for the dtype and device.

    fp32, and any GPU: scaled_dot_product_attention (flash on GPU). bf16 on a CPU: the plain products
    in bf16 with the softmax in fp32. Our sequences are short (S = d variables or N samples) and
    the CPU flash kernel's bf16 backward is ~10x slower than its fp32 one; the plain form is faster than
    both (bench/README.md, train_step_gauss8).
    """
    if query.dtype == torch.float32 or query.is_cuda:
        return F.scaled_dot_product_attention(query, key, value)
    scores = (query @ key.transpose(-1, -2)).float() * query.shape[-1] ** -0.5  # (T, H, S, S)
    return torch.softmax(scores, dim=-1).to(value.dtype) @ value


class TransformerBlock(nn.Module):
    """Pre-layer-norm transformer block: x + Dropout(MHSA(LN(x))), then x + Dropout(FF(LN(x))).

    Pre-LN keeps the residual stream an identity path, which trains stably without warm-up.
    Dropout sits on the outputs of the attention and feed-forward sublayers (Vaswani et al.'s
    residual dropout), not on the attention weights or inside the feed-forward: on CPU the
    random masks cost more than the matrix products (27% of a Gauss 8 step with the
    (tokens, h)-sized mask inside the feed-forward), and SDPA's fused CPU kernel has no dropout.
    """

    def __init__(self, embed_dim: int, heads: int, hidden_dim: int, dropout: float) -> None:
        super().__init__()
        self.attention_norm = nn.LayerNorm(embed_dim)
        self.attention = MultiHeadSelfAttention(embed_dim, heads)
        self.feedforward_norm = nn.LayerNorm(embed_dim)
        self.feedforward = nn.Sequential(
            nn.Linear(embed_dim, hidden_dim),
            nn.GELU(),
            nn.Linear(hidden_dim, embed_dim),
        )
        self.residual_dropout = nn.Dropout(dropout)

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        # tokens: (T, S, e)
        tokens = tokens + self.residual_dropout(self.attention(self.attention_norm(tokens)))
        return tokens + self.residual_dropout(self.feedforward(self.feedforward_norm(tokens)))


class AlternatingEmbedding(nn.Module):
    """h_alpha: (B, N, d, f) -> (B, d, e).

    Input projection f -> e, then `layers` transformer blocks; even-numbered blocks attend over
    the d variables of each sample, odd-numbered blocks over the N samples of each variable
    (the paper's L, even, so both axes get the same number of blocks). A final layer norm and
    the mean over samples give one embedding per variable.
    """

    def __init__(
        self, in_features: int, embed_dim: int, heads: int, hidden_dim: int, layers: int, dropout: float
    ) -> None:
        super().__init__()
        self.input_projection = nn.Linear(in_features, embed_dim)
        self.blocks = nn.ModuleList(
            TransformerBlock(embed_dim, heads, hidden_dim, dropout) for _ in range(layers)
        )
        self.final_norm = nn.LayerNorm(embed_dim)

    def forward(self, data: torch.Tensor) -> torch.Tensor:
        batch, samples, variables, _ = data.shape
        tokens = self.input_projection(data)  # (B, N, d, e)
        embed = tokens.shape[-1]
        for index, block in enumerate(self.blocks):
            if index % 2 == 0:  # over variables: groups are (batch, sample)
                tokens = block(tokens.reshape(batch * samples, variables, embed))
                tokens = tokens.view(batch, samples, variables, embed)
            else:  # over samples: groups are (batch, variable)
                by_variable = tokens.transpose(1, 2).reshape(batch * variables, samples, embed)
                tokens = block(by_variable).view(batch, variables, samples, embed).transpose(1, 2)
        return self.final_norm(tokens).mean(dim=1)  # (B, d, e)
