"""SFT features, padding and packing on records with videos (ordered slices) and several images:
assistant-only labels, the video tensors in the batch, and packed loss equal to unpacked loss
on all three tiny families (the image version is tests/integration/test_sft_packing.py)."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from PIL import Image
from test_sft_packing import summed_loss
from transformers import AutoProcessor

from medvl.data.features import IGNORE_INDEX, FeatureBuilder, final_answer_span
from medvl.data.record import Record
from medvl.train.collate import PackingCollator, PaddingCollator

FAMILIES = ["qwen2_vl", "qwen2_5_vl", "qwen3_vl"]

#: (id, question, answer, image sizes, frame counts of each video, frame size)
CASES = [
    ("video", "Is there a lesion?", "yes", [], [3], (70, 50)),
    (
        "two_images",
        "Compare the two views.",
        "The lateral view shows a nodule.",
        [(84, 56)] * 2,
        [],
        None,
    ),
    ("mixed", "Which slice shows it best?", "The middle slices.", [(56, 56)], [5], (64, 48)),
    ("text", "Which side is the lesion on?", "left", [], [], None),
]


def _noise(path: Path, size: tuple[int, int], seed: int) -> str:
    Image.effect_noise(size, seed).convert("RGB").save(path)
    return path.name


def make_record(tmp_path: Path, case: tuple) -> Record:
    """A record of ``case`` with noise PNGs (images, then video slices) written in tmp_path."""
    rid, question, answer, image_sizes, frame_counts, frame_size = case
    images = [
        _noise(tmp_path / f"{rid}-img{k}.png", size, 30 + k) for k, size in enumerate(image_sizes)
    ]
    videos = [
        {
            "frames": [
                _noise(tmp_path / f"{rid}-v{v}-{f:03d}.png", frame_size, 50 + 7 * v + f)
                for f in range(count)
            ]
        }
        for v, count in enumerate(frame_counts)
    ]
    prefix = "<video>\n" * len(videos) + "<image>\n" * len(images)
    return Record(
        id=rid,
        dataset="t",
        split="train",
        lang="en",
        images=images,
        videos=videos,
        messages=[
            {"role": "user", "content": prefix + question},
            {"role": "assistant", "content": answer},
        ],
    )


def build(model_dir: Path, tmp_path: Path, **kwargs) -> tuple:
    processor = AutoProcessor.from_pretrained(model_dir)
    builder = FeatureBuilder(processor, **kwargs)
    records = [make_record(tmp_path, case) for case in CASES]
    return processor, records, [builder(r, tmp_path) for r in records]


@pytest.mark.parametrize("family", FAMILIES)
def test_labels_are_the_answer_only_and_video_tokens_never(family, tiny_model_dirs, tmp_path):
    processor, _, samples = build(tiny_model_dirs(family), tmp_path)
    tokenizer = processor.tokenizer
    video_pad = tokenizer.convert_tokens_to_ids("<|video_pad|>")
    image_pad = tokenizer.convert_tokens_to_ids("<|image_pad|>")
    for case, sample in zip(CASES, samples, strict=True):
        kept = tokenizer.decode(sample.labels[sample.labels != IGNORE_INDEX])
        assert kept == case[2] + "<|im_end|>\n", case[0]
        is_media = (sample.input_ids == video_pad) | (sample.input_ids == image_pad)
        assert (sample.labels[is_media] == IGNORE_INDEX).all()
        # the labelled tokens are exactly the last ones before the end (nothing in the prompt)
        labelled = (sample.labels != IGNORE_INDEX).nonzero().flatten()
        assert labelled.tolist() == list(range(len(sample) - len(labelled), len(sample)))
    video, two_images, mixed, text = samples
    assert video.pixel_values is None and text.pixel_values_videos is None
    assert two_images.image_grid_thw.shape == (2, 3) and two_images.pixel_values_videos is None
    merge = processor.video_processor.merge_size**2
    for sample, frames in ((video, 3), (mixed, 5)):
        grid = sample.video_grid_thw[0]
        assert int(grid[0]) == (frames + 1) // 2  # frames padded to the temporal patch (2)
        assert int((sample.input_ids == video_pad).sum()) == int(grid.prod()) // merge
        assert int((sample.mm_token_type_ids == 2).sum()) == int(grid.prod()) // merge
        assert sample.pixel_values_videos.shape[0] == int(grid.prod())
    if family == "qwen2_5_vl":  # 2 frames per temporal patch at 2 frames per second
        assert video.second_per_grid_ts.tolist() == [1.0]
    else:
        assert video.second_per_grid_ts is None


def test_qwen3_timestamps_stay_unlabelled(tiny_model_dirs, tmp_path):
    """Qwen3-VL writes ``<t seconds>`` text inside the video region: never labelled."""
    processor, _, samples = build(tiny_model_dirs("qwen3_vl"), tmp_path)
    text = processor.tokenizer.decode(samples[0].input_ids)
    # 3 slices at 2 frames/s, padded to 4 by repeating the last: patches at (0 + 0.5) / 2 s and
    # (1 + 1) / 2 s, written with one decimal by the processor
    assert "<0.2 seconds><|vision_start|>" in text and "<1.0 seconds><|vision_start|>" in text
    prompt = samples[0].input_ids[samples[0].labels == IGNORE_INDEX]
    assert "seconds" in processor.tokenizer.decode(prompt)


def test_final_answer_span_with_a_video(tiny_model_dirs, tmp_path):
    processor, _, samples = build(tiny_model_dirs("qwen2_vl"), tmp_path, spans=final_answer_span)
    decoded = processor.tokenizer.decode(samples[2].labels[samples[2].labels != IGNORE_INDEX])
    assert decoded == "The middle slices."


def test_collators_concatenate_video_tensors_in_token_order(tiny_model_dirs, tmp_path):
    _, _, samples = build(tiny_model_dirs("qwen2_5_vl"), tmp_path)
    video, two_images, mixed, text = samples
    padded = PaddingCollator(0)([mixed, text, video, two_images])
    assert torch.equal(
        padded["video_grid_thw"], torch.cat([mixed.video_grid_thw, video.video_grid_thw])
    )
    assert torch.equal(
        padded["pixel_values_videos"],
        torch.cat([mixed.pixel_values_videos, video.pixel_values_videos]),
    )
    assert padded["second_per_grid_ts"].tolist() == [1.0, 1.0]
    assert torch.equal(
        padded["image_grid_thw"], torch.cat([mixed.image_grid_thw, two_images.image_grid_thw])
    )
    batch = PackingCollator(_text_rope, 0, rows=1)([video, text])  # only the layout matters
    assert torch.equal(batch["video_grid_thw"], video.video_grid_thw)
    assert "pixel_values" not in batch


def _text_rope(input_ids, mm_token_type_ids, **kwargs):
    n = input_ids.shape[1]
    return torch.arange(n).expand(3, 1, n), None


@pytest.mark.parametrize("family", FAMILIES)
@pytest.mark.parametrize(
    "subset",
    [["video", "text"], ["two_images", "text"], ["video", "two_images", "mixed", "text"]],
    ids=["video", "two_images", "mixed"],
)
def test_packed_loss_equals_unpacked_loss(family, subset, tiny_model_dirs, fp32_model, tmp_path):
    model_dir = tiny_model_dirs(family)
    _, _, samples = build(model_dir, tmp_path)
    samples = [s for s in samples if s.id in subset]
    model = fp32_model(model_dir)
    pad = model.config.text_config.pad_token_id or 0
    with torch.no_grad():
        separate = sum(summed_loss(model, PaddingCollator(pad)([s]))[0] for s in samples)
        padded, _ = summed_loss(model, PaddingCollator(pad)(samples))
        for rows in (1, 2):
            packer = PackingCollator(model.model.get_rope_index, pad, rows=rows)
            packed, _ = summed_loss(model, packer(samples))
            # fp32 on CPU: as in test_sft_packing, 1e-5 leaves room for BLAS order.
            assert torch.allclose(packed, separate, rtol=1e-5), (rows, packed, separate)
    assert torch.allclose(padded, separate, rtol=1e-5), (padded, separate)


def test_video_positions_are_3d_in_the_packed_row(tiny_model_dirs, fp32_model, tmp_path):
    """The packed row carries the video's own rope (not text positions): the temporal row
    steps between temporal patches while the height/width rows vary inside a frame."""
    model_dir = tiny_model_dirs("qwen2_vl")
    _, _, samples = build(model_dir, tmp_path)
    video, text = samples[0], samples[3]
    model = fp32_model(model_dir)
    batch = PackingCollator(model.model.get_rope_index, 0, rows=1)([text, video])
    start = len(text)
    expected, _ = model.model.get_rope_index(
        video.input_ids[None], video.mm_token_type_ids[None], video_grid_thw=video.video_grid_thw
    )
    row = batch["position_ids"][:, 0, start : start + len(video)]
    assert torch.equal(row[1:], expected[:, 0])
    assert torch.equal(row[0], torch.arange(len(video)))
    pads = video.mm_token_type_ids == 2
    assert len(set(row[1][pads].tolist())) == int(video.video_grid_thw[0, 0])  # one per patch


def test_packed_rope_uses_qwen2_5_seconds_per_patch(tiny_model_dirs, fp32_model, tmp_path):
    """``second_per_grid_ts`` reaches get_rope_index: at 0.5 s per temporal patch the temporal
    positions step half as far as at 1 s (tokens_per_second * seconds per patch)."""
    from dataclasses import replace

    from medvl.train.collate import sample_positions

    model_dir = tiny_model_dirs("qwen2_5_vl")
    _, _, samples = build(model_dir, tmp_path)
    video = samples[0]
    rope = fp32_model(model_dir).model.get_rope_index
    pads = video.mm_token_type_ids == 2
    steps = {}
    for seconds in (1.0, 0.5):
        changed = replace(video, second_per_grid_ts=torch.tensor([seconds]))
        temporal = sample_positions(changed, rope)[1][pads].unique()
        assert len(temporal) == 2  # two temporal patches
        steps[seconds] = int(temporal[1] - temporal[0])
    assert steps[1.0] == 2 * steps[0.5] > 0


@pytest.mark.parametrize("family", FAMILIES)
def test_sample_length_is_the_token_counters(family, tiny_model_dirs, tmp_path):
    """What training builds is what validation measured against max_length (no cut video)."""
    from medvl.data.tokens import TokenCounter

    processor, records, samples = build(tiny_model_dirs(family), tmp_path)
    counter = TokenCounter(processor)
    for case, record, sample in zip(CASES, records, samples, strict=True):
        _, _, _, image_sizes, frame_counts, frame_size = case
        shapes = [(n, *frame_size) for n in frame_counts]
        assert len(sample) == counter.count(record, image_sizes, shapes), case[0]


@pytest.mark.parametrize("family", FAMILIES)
def test_a_one_slice_video_trains_as_the_counter_counts_it(family, tiny_model_dirs, tmp_path):
    """One slice (``sample: {n: 1}``, a single-frame series) is padded to a temporal patch by
    repeating it; Qwen3-VL's processor refuses a 1-frame video otherwise."""
    from medvl.data.tokens import TokenCounter

    processor = AutoProcessor.from_pretrained(tiny_model_dirs(family))
    record = make_record(tmp_path, ("one", "Is there a lesion?", "no", [], [1], (64, 48)))
    sample = FeatureBuilder(processor)(record, tmp_path)
    assert sample.video_grid_thw.tolist() == [[1, *sample.video_grid_thw[0, 1:].tolist()]]
    assert len(sample) == TokenCounter(processor).count(record, [], [(1, 64, 48)])
