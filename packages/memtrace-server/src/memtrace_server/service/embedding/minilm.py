"""all-MiniLM-L6-v2 in numpy: a 6-layer BERT encoder, mean pooling, unit length.

The same computation as sentence-transformers with PyTorch on this model (the tests pin
reference vectors), without PyTorch: loading takes a fraction of a second and the
install is numpy alone.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from memtrace_server.service.embedding.model_files import ModelFiles
from memtrace_server.service.embedding.safetensors_file import read_safetensors
from memtrace_server.service.embedding.wordpiece import WordPieceTokenizer

Array = np.ndarray[Any, np.dtype[np.float32]]

DIMENSIONS = 384
HEADS = 12
LAYERS = 6
MAX_SEQ_LENGTH = 256  # sentence-transformers' max_seq_length for this model
LAYER_NORM_EPS = 1e-12
# Padded tokens per forward pass. Attention holds batch x heads x length² floats, so this
# bounds it at 4096 x 12 x 256 x 4 B = 48 MiB for the longest texts.
MAX_BATCH_TOKENS = 4096


@dataclass(frozen=True)
class _Layer:
    qkv: Array  # (384, 1152): query, key and value projections side by side
    qkv_bias: Array
    attn_out: Array
    attn_out_bias: Array
    attn_norm: tuple[Array, Array]
    ffn_in: Array
    ffn_in_bias: Array
    ffn_out: Array
    ffn_out_bias: Array
    ffn_norm: tuple[Array, Array]


class MiniLM:
    """Sentence embeddings from the all-MiniLM-L6-v2 weights."""

    def __init__(
        self,
        tensors: dict[str, np.ndarray[Any, Any]],
        tokenizer: WordPieceTokenizer,
        *,
        max_batch_tokens: int = MAX_BATCH_TOKENS,
    ) -> None:
        def get(name: str) -> Array:
            return np.ascontiguousarray(tensors[name], dtype=np.float32)

        def linear(prefix: str) -> tuple[Array, Array]:
            # stored as PyTorch's (out, in); kept as (in, out) for x @ w
            return np.ascontiguousarray(get(prefix + ".weight").T), get(prefix + ".bias")

        def norm(prefix: str) -> tuple[Array, Array]:
            return get(prefix + ".weight"), get(prefix + ".bias")

        self.tokenizer = tokenizer
        self.max_batch_tokens = max_batch_tokens
        # the word table stays memory-mapped: only the rows of seen tokens are read
        self._words = tensors["embeddings.word_embeddings.weight"]
        self._positions = get("embeddings.position_embeddings.weight")
        self._token_type = get("embeddings.token_type_embeddings.weight")[0]
        self._embed_norm = norm("embeddings.LayerNorm")
        self._layers = []
        for i in range(LAYERS):
            p = f"encoder.layer.{i}."
            parts = [linear(p + f"attention.self.{n}") for n in ("query", "key", "value")]
            attn_out, attn_out_bias = linear(p + "attention.output.dense")
            ffn_in, ffn_in_bias = linear(p + "intermediate.dense")
            ffn_out, ffn_out_bias = linear(p + "output.dense")
            self._layers.append(
                _Layer(
                    qkv=np.ascontiguousarray(np.concatenate([w for w, _ in parts], axis=1)),
                    qkv_bias=np.concatenate([b for _, b in parts]),
                    attn_out=attn_out,
                    attn_out_bias=attn_out_bias,
                    attn_norm=norm(p + "attention.output.LayerNorm"),
                    ffn_in=ffn_in,
                    ffn_in_bias=ffn_in_bias,
                    ffn_out=ffn_out,
                    ffn_out_bias=ffn_out_bias,
                    ffn_norm=norm(p + "output.LayerNorm"),
                )
            )

    @classmethod
    def load(cls, files: ModelFiles) -> MiniLM:
        """The model from verified files (see ``locate_model_files``)."""
        tokenizer = WordPieceTokenizer.from_file(files.vocab, MAX_SEQ_LENGTH)
        return cls(read_safetensors(files.weights), tokenizer)

    def encode(self, texts: Sequence[str]) -> Array:
        """One unit-length float32 row per text, in the order given."""
        out = np.zeros((len(texts), DIMENSIONS), dtype=np.float32)
        encoded = [self.tokenizer.encode(t) for t in texts]
        # longest first, so each batch pads little and holds at most max_batch_tokens
        order = sorted(range(len(texts)), key=lambda i: -len(encoded[i]))
        start = 0
        while start < len(order):
            length = len(encoded[order[start]])
            size = max(1, self.max_batch_tokens // length)
            batch = order[start : start + size]
            out[batch] = self._forward([encoded[i] for i in batch], length)
            start += size
        return out

    def _forward(self, batch: list[list[int]], length: int) -> Array:
        size = len(batch)
        ids = np.zeros((size, length), dtype=np.int64)
        mask = np.zeros((size, length), dtype=np.float32)
        for row, token_ids in enumerate(batch):
            ids[row, : len(token_ids)] = token_ids
            mask[row, : len(token_ids)] = 1.0
        x = self._words[ids] + self._positions[:length] + self._token_type
        x = _layer_norm(x.reshape(size * length, DIMENSIONS).astype(np.float32), self._embed_norm)
        # a padded key gets no attention
        bias = ((1.0 - mask) * np.finfo(np.float32).min)[:, None, None, :]
        head = DIMENSIONS // HEADS
        scale = np.float32(1.0 / math.sqrt(head))
        for layer in self._layers:
            qkv = (x @ layer.qkv + layer.qkv_bias).reshape(size, length, 3, HEADS, head)
            # each (batch, heads, length, head), contiguous so that matmul goes to BLAS
            q, k, v = np.ascontiguousarray(qkv.transpose(2, 0, 3, 1, 4))
            scores = q @ k.transpose(0, 1, 3, 2)
            scores *= scale
            scores += bias
            scores -= scores.max(axis=-1, keepdims=True)
            np.exp(scores, out=scores)
            scores /= scores.sum(axis=-1, keepdims=True)
            context = (scores @ v).transpose(0, 2, 1, 3).reshape(size * length, DIMENSIONS)
            x = _layer_norm(x + context @ layer.attn_out + layer.attn_out_bias, layer.attn_norm)
            hidden = _gelu(x @ layer.ffn_in + layer.ffn_in_bias)
            x = _layer_norm(x + hidden @ layer.ffn_out + layer.ffn_out_bias, layer.ffn_norm)
        tokens = x.reshape(size, length, DIMENSIONS)
        pooled = (tokens * mask[:, :, None]).sum(axis=1) / np.maximum(
            mask.sum(axis=1, keepdims=True), 1e-9
        )
        norms = np.maximum(np.linalg.norm(pooled, axis=1, keepdims=True), 1e-12)
        return np.asarray(pooled / norms, np.float32)


def _layer_norm(x: Array, params: tuple[Array, Array]) -> Array:
    weight, bias = params
    centred = x - x.mean(axis=-1, keepdims=True)
    variance = (centred * centred).mean(axis=-1, keepdims=True)
    return np.asarray(
        centred / np.sqrt(variance + np.float32(LAYER_NORM_EPS)) * weight + bias, np.float32
    )


# Abramowitz & Stegun 7.1.26: erf within 1.5e-7, below float32 resolution near 1; numpy
# has no erf, and BERT's GELU is the exact (erf) one, not the tanh approximation.
_ERF_P = np.float32(0.3275911)
_ERF_A = tuple(
    np.float32(a) for a in (1.061405429, -1.453152027, 1.421413741, -0.284496736, 0.254829592)
)


# GELU is a score of passes over its input: over (tokens x 1536) at once they go to memory
# and cost as much as the matmuls; over blocks of rows they stay in cache (3x faster).
_GELU_ROWS = 128


def _gelu(x: Array) -> Array:
    """x·Φ(x) = x/2 · (1 + erf(x/√2)) of a 2-D array, a block of rows at a time."""
    out = np.empty_like(x)
    for start in range(0, x.shape[0], _GELU_ROWS):
        out[start : start + _GELU_ROWS] = _gelu_block(x[start : start + _GELU_ROWS])
    return out


def _gelu_block(x: Array) -> Array:
    z = np.abs(x)
    z *= np.float32(1.0 / math.sqrt(2.0))
    t = z * _ERF_P
    t += np.float32(1.0)
    np.reciprocal(t, out=t)
    poly = np.full_like(t, _ERF_A[0])
    for a in _ERF_A[1:]:
        poly *= t
        poly += a
    poly *= t
    np.square(z, out=z)
    np.negative(z, out=z)
    np.exp(z, out=z)
    poly *= z  # 1 - erf(|x|/√2)
    np.copysign(poly, x, out=poly)  # so that 1 + erf(x/√2) = 1 + sign(x) - sign(x)·poly
    erf_plus_one = np.sign(x)
    erf_plus_one += np.float32(1.0)
    erf_plus_one -= poly
    erf_plus_one *= x
    erf_plus_one *= np.float32(0.5)
    return erf_plus_one
