"""Base models and adapters as content-addressed manifests in the artifact store."""

from shared.models.store import (
    ModelFormatError,
    fetch_model_dir,
    read_manifest,
    store_model_dir,
)

__all__ = ["ModelFormatError", "fetch_model_dir", "read_manifest", "store_model_dir"]
