"""BERT's uncased WordPiece tokenizer, as the model's ``tokenizer.json`` configures it.

It reproduces the ids of Hugging Face ``tokenizers`` for this vocabulary (the tests pin
them): clean-up of control characters, spaces around CJK ideographs, accents stripped,
lower case, a split on whitespace and punctuation, then greedy longest-match WordPiece with
``##`` continuations. Special tokens written literally in a text (``[SEP]``) map to their
ids, as in ``tokenizers``, where they are matched before normalisation.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Sequence
from pathlib import Path

SPECIAL_TOKENS = ("[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]")
_SPECIAL = re.compile("(" + "|".join(re.escape(t) for t in SPECIAL_TOKENS) + ")")
MAX_CHARS_PER_WORD = 100
# The CJK Unified Ideographs blocks BERT treats as one word per character.
_CJK = (
    (0x4E00, 0x9FFF),
    (0x3400, 0x4DBF),
    (0x20000, 0x2A6DF),
    (0x2A700, 0x2B73F),
    (0x2B740, 0x2B81F),
    (0x2B820, 0x2CEAF),
    (0xF900, 0xFAFF),
    (0x2F800, 0x2FA1F),
)


class WordPieceTokenizer:
    """Text to token ids: ``[CLS] pieces… [SEP]``, at most ``max_length`` ids."""

    def __init__(self, vocab: Sequence[str], max_length: int = 256) -> None:
        self.vocab = {token: i for i, token in enumerate(vocab)}
        self.max_length = max_length
        self.cls_id = self.vocab["[CLS]"]
        self.sep_id = self.vocab["[SEP]"]
        self.unk_id = self.vocab["[UNK]"]

    @classmethod
    def from_file(cls, path: Path, max_length: int = 256) -> WordPieceTokenizer:
        """Read a ``vocab.txt``: one token a line, the line number is the id."""
        return cls(path.read_text(encoding="utf-8").splitlines(), max_length)

    def encode(self, text: str) -> list[int]:
        """The ids of ``text`` with ``[CLS]`` and ``[SEP]``, truncated to ``max_length``."""
        ids: list[int] = []
        budget = self.max_length - 2
        for i, part in enumerate(_SPECIAL.split(text)):
            if len(ids) >= budget:
                break
            if i % 2:  # a literal special token
                ids.append(self.vocab[part])
                continue
            for word in pre_tokenize(normalize(part)):
                ids.extend(self._word_ids(word))
                if len(ids) >= budget:
                    break
        return [self.cls_id, *ids[:budget], self.sep_id]

    def _word_ids(self, word: str) -> list[int]:
        if len(word) > MAX_CHARS_PER_WORD:
            return [self.unk_id]
        ids: list[int] = []
        start = 0
        while start < len(word):
            end = len(word)
            while end > start:
                piece = word[start:end] if start == 0 else "##" + word[start:end]
                token = self.vocab.get(piece)
                if token is not None:
                    ids.append(token)
                    break
                end -= 1
            else:
                return [self.unk_id]
            start = end
        return ids


def normalize(text: str) -> str:
    """BERT's normaliser: clean, space out CJK, strip accents, lower-case."""
    out: list[str] = []
    for char in text:
        code = ord(char)
        if code == 0 or code == 0xFFFD or _is_control(char):
            continue
        if _is_whitespace(char):
            out.append(" ")
        elif _is_cjk(code):
            out.append(f" {char} ")
        else:
            out.append(char)
    decomposed = unicodedata.normalize("NFD", "".join(out))
    stripped = "".join(c for c in decomposed if unicodedata.category(c) != "Mn")
    if "Σ" in stripped:
        # str.lower() gives a word-final capital sigma the final form ς; tokenizers
        # lower-cases one character at a time (σ), and so does the vocabulary
        return "".join(c.lower() for c in stripped)
    return stripped.lower()


def pre_tokenize(text: str) -> list[str]:
    """Split on whitespace and make every punctuation character a word of its own."""
    words: list[str] = []
    for chunk in text.split():
        current: list[str] = []
        for char in chunk:
            if _is_punctuation(char):
                if current:
                    words.append("".join(current))
                    current = []
                words.append(char)
            else:
                current.append(char)
        if current:
            words.append("".join(current))
    return words


def _is_whitespace(char: str) -> bool:
    return char in "\t\n\r" or char.isspace()


def _is_control(char: str) -> bool:
    return char not in "\t\n\r" and unicodedata.category(char).startswith("C")


def _is_cjk(code: int) -> bool:
    return any(low <= code <= high for low, high in _CJK)


def _is_punctuation(char: str) -> bool:
    code = ord(char)
    if 33 <= code <= 47 or 58 <= code <= 64 or 91 <= code <= 96 or 123 <= code <= 126:
        return True
    return unicodedata.category(char).startswith("P")
