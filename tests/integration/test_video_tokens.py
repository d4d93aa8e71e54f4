"""Video token counts equal the real processors' output on all three families.

Each record's length from :class:`TokenCounter` (frame count and size only, no pixels) is
compared with ``len(processor(text=..., images=..., videos=[frames], ...)["input_ids"][0])``,
the processor called as medvl calls it everywhere (:func:`video_call_kwargs`).
"""

from __future__ import annotations

import pytest
from PIL import Image

from medvl.data.record import Record
from medvl.data.tokens import TokenCounter, VideoBudget
from medvl.models.processing import set_video_pixel_budget, video_call_kwargs

FAMILIES = ["qwen2_vl", "qwen2_5_vl", "qwen3_vl"]
#: Odd frame sizes: below one patch, rounding down and up, tall, landscape.
FRAME_SIZES = [(57, 41), (13, 90), (333, 222), (30, 300), (640, 480)]
FRAME_COUNTS = [1, 3, 4, 7]


def video_record(text: str, n_frames: list[int], n_images: int = 0) -> Record:
    return Record(
        id="v",
        dataset="t",
        split="train",
        lang="en",
        images=[f"i{k}.png" for k in range(n_images)],
        videos=[{"frames": [f"{v}/{k}.png" for k in range(n)]} for v, n in enumerate(n_frames)],
        messages=[
            {"role": "system", "content": "You are a radiologist."},
            {"role": "user", "content": text},
            {"role": "assistant", "content": "A lesion in the upper half. 上半部有病灶。"},
        ],
    )


def frames(n: int, size: tuple[int, int]) -> list[Image.Image]:
    return [Image.new("RGB", size, (10 * k % 256, 80, 160)) for k in range(n)]


def processor_length(counter: TokenCounter, record: Record, images, videos) -> int:
    encoded = counter.processor(
        text=[counter.text(record)],
        images=images or None,
        **video_call_kwargs(counter.processor, videos),
    )
    return len(encoded["input_ids"][0])


def assert_counts_match(counter: TokenCounter) -> None:
    for n in FRAME_COUNTS:
        for size in FRAME_SIZES:
            record = video_record("<video>\nIs there a lesion?", [n])
            expected = processor_length(counter, record, [], [frames(n, size)])
            assert counter.count(record, [], [(n, *size)]) == expected, (n, size)
    # an image and a video in one record, text on both sides of the video (Qwen3-VL writes its
    # timestamps right after "Prior: "), and two videos of different lengths
    record = video_record("<image>\nPrior: <video> current:<video>Same lesion?", [3, 4], 1)
    videos = [frames(3, (100, 70)), frames(4, (57, 41))]
    image = Image.new("RGB", (90, 120), "gray")
    expected = processor_length(counter, record, [image], videos)
    assert counter.count(record, [(90, 120)], [(3, 100, 70), (4, 57, 41)]) == expected


@pytest.mark.parametrize("family", FAMILIES)
def test_video_count_equals_processor_output(family, tiny_model_dirs):
    assert_counts_match(TokenCounter.from_pretrained(tiny_model_dirs(family)))


@pytest.mark.parametrize("family", FAMILIES)
def test_video_count_with_per_frame_cap(family, tiny_model_dirs):
    """transformers' optional qwen-vl-utils cap, set small enough to bind, is followed too."""
    counter = TokenCounter.from_pretrained(tiny_model_dirs(family))
    uncapped = counter.video_budget
    processor = counter.processor
    processor.video_processor.cap_pixels_per_frame = True
    processor.video_processor.max_video_tokens = 12 if family == "qwen3_vl" else 40
    set_video_pixel_budget(processor, 2000, 120_000)
    counter = TokenCounter(processor)
    assert counter.video_budget.cap_pixels_per_frame
    assert counter.video_budget.grid(7, 640, 480) != uncapped.grid(7, 640, 480)  # it binds
    assert_counts_match(counter)


def test_qwen2_families_match_the_processor_defaults(tiny_model_dirs):
    """For Qwen2-VL and Qwen2.5-VL, medvl's call convention changes no count: a plain
    ``videos=[frames]`` call gives the same length (frames are never resampled there)."""
    for family in ("qwen2_vl", "qwen2_5_vl"):
        counter = TokenCounter.from_pretrained(tiny_model_dirs(family))
        for n in FRAME_COUNTS:
            record = video_record("<video>\nIs there a lesion?", [n])
            plain = counter.processor(text=[counter.text(record)], videos=[frames(n, (100, 70))])
            assert len(plain["input_ids"][0]) == counter.count(record, [], [(n, 100, 70)])


def test_qwen3_timestamps_and_qwen2_5_seconds_per_patch(tiny_model_dirs):
    counter = TokenCounter.from_pretrained(tiny_model_dirs("qwen3_vl"))
    record = video_record("<video>\nIs there a lesion?", [3])
    # 3 frames at 2 fps, padded to [0, 1, 2, 2]: patches at (0 + 0.5) / 2 and (1 + 1) / 2 s
    assert counter.video_budget.timestamp_texts(3) == ["<0.2 seconds>", "<1.0 seconds>"]
    encoded = counter.processor(
        text=[counter.text(record)], **video_call_kwargs(counter.processor, [frames(3, (64, 64))])
    )
    decoded = counter.tokenizer.decode(encoded["input_ids"][0])
    assert "<0.2 seconds><|vision_start|>" in decoded and "<1.0 seconds><|vision_start|>" in decoded
    q25 = TokenCounter.from_pretrained(tiny_model_dirs("qwen2_5_vl")).processor
    out = q25(
        text=["<|vision_start|><|video_pad|><|vision_end|>"],
        **video_call_kwargs(q25, [frames(4, (64, 64))]),
    )
    assert [float(x) for x in out["second_per_grid_ts"]] == [1.0]  # one patch = one second


def test_real_qwen2_vl_processor_video_counts(qwen2_vl_fixture_dir):
    counter = TokenCounter.from_pretrained(qwen2_vl_fixture_dir)
    # hand-computed: 4 frames of 224x224 -> grid [2, 16, 16] -> 2 * 256 / 4 = 128 pads
    assert counter.video_budget.grid(4, 224, 224) == (2, 16, 16)
    assert counter.video_tokens((4, 224, 224)) == 128
    assert_counts_match(counter)


def test_video_budget_hand_computed():
    """The two resize rules, worked by hand."""
    qwen2 = VideoBudget(14, 2, 2, 3136, 50176)
    # 100x70: sides round to 112 x 56 (6272 px, inside the range) -> 8 x 4 patches per frame;
    # 3 frames pad to 4 -> 2 temporal patches -> 2 * 32 / 4 = 16 tokens
    assert qwen2.grid(3, 100, 70) == (2, 4, 8) and qwen2.video_tokens(3, 100, 70) == 16
    assert qwen2.grid(1, 100, 70) == (1, 4, 8)  # one slice is padded to one patch
    qwen3 = VideoBudget(16, 2, 2, 4096, 65536, shared_pixels=True, timestamps=True)
    # 7 frames of 640x480 share 65536 px: beta = sqrt(7 * 480 * 640 / 65536) = 5.73;
    # 480 / 5.73 / 32 -> 2 -> 64 px, 640 / 5.73 / 32 -> 3 -> 96 px; 4 patches of 4 x 6
    assert qwen3.grid(7, 640, 480) == (4, 4, 6) and qwen3.video_tokens(7, 640, 480) == 24
    with pytest.raises(ValueError, match="at least one frame"):
        qwen2.grid(0, 100, 70)
