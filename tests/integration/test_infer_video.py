"""Inference on records with videos (ordered slices of a CT/MRI study) on all three families.

The slices are PNG files written here, 84 x 56 pixels: every family's tiny processor keeps that
size (a multiple of 28 and of 32 after rounding, within the pixel budget), so each temporal patch
of two frames is a 4 x 6 grid of patches, 6 tokens after the 2 x 2 merge, and a 5-slice video is
ceil(5 / 2) = 3 temporal patches, 18 video tokens: counted by hand, checked against the engine.
"""

from __future__ import annotations

import json
from pathlib import Path
from unittest.mock import ANY

import httpx
import numpy as np
import pytest
from PIL import Image

from medvl.data.jsonl import write_records
from medvl.data.record import Record
from medvl.infer.engine import ChatRequest, GenerationSettings, VideoRef, load_video
from medvl.infer.hf_engine import HFEngine
from medvl.infer.image_cache import ProcessedImageCache
from medvl.models.loading import load_model

GREEDY = GenerationSettings(max_new_tokens=5)
FAMILIES = ["qwen2_vl", "qwen2_5_vl", "qwen3_vl"]
WIDTH, HEIGHT = 84, 56


def write_slices(folder: Path, n: int, seed: int, size: tuple[int, int] = (WIDTH, HEIGHT)) -> list:
    """``n`` grayscale slices with a bright square that moves through them; names in order."""
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    names = []
    for i in range(n):
        pixels = rng.integers(0, 60, size=(size[1], size[0]), dtype=np.uint8)
        pixels[10 + 2 * i : 20 + 2 * i, 20:30] = 230
        path = folder / f"slice_{i:03d}.png"
        Image.fromarray(pixels, mode="L").save(path)
        names.append(path)
    return names


def write_volume(path: Path) -> Path:
    """A 12-slice int16 NIfTI volume in Hounsfield-like units, 2.5 mm slices; its axial planes
    are 84 x 56 pixels as shown (RAS+ voxel order, x across)."""
    import nibabel as nib

    rng = np.random.default_rng(7)
    voxels = rng.integers(-1000, 400, size=(WIDTH, HEIGHT, 12)).astype(np.int16)
    voxels[30:50, 20:30, 4:8] = 900  # a dense lesion in slices 4..7
    nib.save(nib.Nifti1Image(voxels, np.diag([1.0, 1.0, 2.5, 1.0])), path)
    return path


def write_study(root: Path) -> Path:
    """A JSONL of records with videos (slices alone, with an image, two, a NIfTI volume, and one
    missing slice) and an image-only record; returns the JSONL path."""
    a = write_slices(root / "ct_a", 5, seed=1)
    write_volume(root / "ct.nii.gz")
    b = write_slices(root / "ct_b", 4, seed=2)
    xray = write_slices(root / "xray", 1, seed=3, size=(60, 60))[0]
    rel = [str(p.relative_to(root)) for p in a]
    base = {"dataset": "t", "split": "test", "lang": "en"}

    def record(rid: str, content: str, images=(), videos=()) -> Record:
        return Record.from_dict(
            {
                "id": rid,
                "images": list(images),
                "videos": list(videos),
                "messages": [
                    {"role": "user", "content": content},
                    {"role": "assistant", "content": "no"},
                ],
                **base,
            }
        )

    records = [
        record("video", "<video>\nIs there a lesion?", videos=[{"frames": rel}]),
        record("image", "<image>\nIs there a lesion?", images=["xray/slice_000.png"]),
        record(
            "both",
            "<image>\n<video>\nCompare the radiograph and the CT.",
            images=[str(xray.relative_to(root))],
            videos=[{"frames": rel}],
        ),
        record(
            "two",
            "Prior: <video>\nCurrent: <video>\nAny change?",
            videos=[{"frames": rel}, {"frames": [str(p.relative_to(root)) for p in b]}],
        ),
        record(
            "volume",
            "<video>\nIs there a lesion?",
            videos=[{"volume": "ct.nii.gz", "sample": {"n": 5}, "window": [40, 400]}],
        ),
        record("missing", "<video>\nAnything?", videos=[{"frames": [*rel[:2], "ct_a/gone.png"]}]),
    ]
    path = root / "study.jsonl"
    write_records(path, records)
    return path


@pytest.fixture(scope="module")
def study(tmp_path_factory) -> Path:
    return write_study(tmp_path_factory.mktemp("study"))


def _requests(study: Path) -> list[ChatRequest]:
    from medvl.data.jsonl import read_records

    return [ChatRequest.from_record(r, study.parent) for r in read_records(study)]


def test_requests_carry_unread_videos(study):
    requests = {r.id: r for r in _requests(study)}
    video = requests["video"].videos[0]
    assert isinstance(video, VideoRef) and requests["video"].check() is None
    assert [part["type"] for part in requests["both"].messages[0]["content"]] == [
        "image",
        "video",
        "text",
    ]
    assert len(requests["two"].videos) == 2 and requests["image"].videos == []
    frames = load_video(video)
    assert len(frames) == 5 and {f.size for f in frames} == {(WIDTH, HEIGHT)}
    assert frames[0].mode == "RGB"
    broken = ChatRequest.from_question("q?", videos=[[frames[0]]])
    broken.videos.append([frames[1]])
    assert "1 video part(s) in the messages but 2 video(s) given" in broken.check()


def test_frames_of_one_video_must_share_a_size():
    small, large = Image.new("RGB", (10, 10)), Image.new("RGB", (20, 10))
    with pytest.raises(Exception, match="share one size, got 10x10, 20x10"):
        load_video([small, large])


@pytest.mark.parametrize("family", FAMILIES)
def test_video_tokens_and_batched_greedy(family, tiny_model_dirs, study):
    loaded = load_model(tiny_model_dirs(family))
    requests = _requests(study)
    single = HFEngine(loaded, batch_size=1, num_workers=0).generate(requests, GREEDY)
    batched = HFEngine(loaded, batch_size=4, num_workers=2, lookahead=2).generate(requests, GREEDY)
    for one, many in zip(single, batched, strict=True):
        assert one.text == many.text, one.id
        assert one.prompt_tokens == many.prompt_tokens
    assert all(g.error is None for g in batched[:-1]), [g.error for g in batched]
    assert "gone.png" in batched[-1].error and batched[-1].finish_reason == "error"

    engine = HFEngine(loaded, num_workers=0)
    processor = loaded.processor
    video_id = processor.tokenizer.convert_tokens_to_ids("<|video_pad|>")
    inputs = engine.prepare(0, requests[0]).inputs
    assert int((inputs["input_ids"] == video_id).sum()) == 18  # 3 temporal patches x 6
    assert inputs["video_grid_thw"].tolist() == [[3, 4, 6]]
    two = engine.prepare(0, requests[3]).inputs  # 5 and 4 slices: 3 + 2 temporal patches
    assert two["video_grid_thw"].tolist() == [[3, 4, 6], [2, 4, 6]]
    assert int((two["input_ids"] == video_id).sum()) == 18 + 12
    volume = engine.prepare(0, requests[4]).inputs  # 5 sampled axial planes of 84 x 56
    assert volume["video_grid_thw"].tolist() == [[3, 4, 6]]
    text = processor.tokenizer.decode(inputs["input_ids"][0])
    if family == "qwen2_5_vl":  # temporal_patch_size / fps = 2 / 2.0 s per temporal patch
        assert inputs["second_per_grid_ts"].tolist() == [1.0]
    if family == "qwen3_vl":  # slices 0..4 (last repeated) at 2 fps, averaged per patch
        assert "<0.2 seconds>" in text and "<1.2 seconds>" in text and "<2.0 seconds>" in text
    else:
        assert "seconds>" not in text


def test_image_cache_is_bypassed_for_videos_and_keeps_outputs(tiny_model_dirs, study):
    loaded = load_model(tiny_model_dirs("qwen2_vl"))
    requests = _requests(study)[:4]
    cache = ProcessedImageCache(2**28)
    cached = HFEngine(loaded, num_workers=0, image_cache=cache)
    plain = HFEngine(loaded, num_workers=0, image_cache=ProcessedImageCache(0))
    first = cached.generate(requests, GREEDY)
    again = cached.generate(requests, GREEDY)
    reference = plain.generate(requests, GREEDY)
    assert [g.text for g in first] == [g.text for g in again] == [g.text for g in reference]
    assert cache.stats()["hits"] >= 1  # the image-only request is served from the cache


@pytest.mark.parametrize("family", FAMILIES)
def test_predict_cli_on_video_records(family, tiny_model_dirs, study, tmp_path, capsys):
    from medvl.cli.main import main
    from medvl.infer.predict import read_prediction_rows

    out = tmp_path / "pred.jsonl"
    argv = ["predict", "--data", str(study), "--out", str(out), "--max-new-tokens", "2"]
    assert main([*argv, "--model", str(tiny_model_dirs(family)), "--batch-size", "3"]) == 0
    rows = {row["id"]: row for row in read_prediction_rows(out)}
    assert set(rows) == {"video", "image", "both", "two", "volume", "missing"}
    for rid in ("video", "both", "two", "volume"):
        assert rows[rid]["error"] is None and rows[rid]["prediction"] is not None, rows[rid]
        assert "<|video_pad|>" in rows[rid]["prompt"]
    assert rows["two"]["prompt"].count("<|video_pad|>") == 2  # one placeholder per video
    assert rows["two"]["prompt_tokens"] > rows["video"]["prompt_tokens"] + 12
    assert "gone.png" in rows["missing"]["error"]


def test_eval_run_on_video_records(tiny_model_dirs, study, tmp_path, capsys):
    import json

    from medvl.cli.main import main

    run = tmp_path / "run"
    argv = ["eval", "run", "--bench", "phantom", "--data", str(study), "--out", str(run)]
    argv += ["--model", str(tiny_model_dirs("qwen2_vl")), "--max-new-tokens", "2"]
    assert main([*argv, "--resamples", "10"]) == 0
    rows = [json.loads(line) for line in (run / "predictions.jsonl").read_text().splitlines()]
    by_id = {row["id"]: row for row in rows}
    assert set(by_id) == {"video", "image", "both", "two", "volume", "missing"}
    assert all(by_id[r].get("error") is None for r in ("video", "both", "two", "volume")), rows
    assert (run / "metrics.json").is_file()


def test_video_spec_from_a_path(tmp_path):
    from medvl.infer.video_media import VideoInputError, parse_options, video_spec

    folder = tmp_path / "slices"
    folder.mkdir()
    for i in (1, 2, 10, 3, 20):  # natural order 1, 2, 3, 10, 20 (not 1, 10, 2, 20, 3)
        Image.new("L", (8, 8), color=i).save(folder / f"s{i}.png")
    spec = video_spec(folder, parse_options(["n=3", "window=40,400"]))
    assert [Path(p).name for p in spec.frames] == ["s1.png", "s3.png", "s20.png"]  # 0, 2, 4
    assert spec.window == (40.0, 400.0)
    assert len(video_spec(folder).frames) == 5  # default n=16 keeps all five
    nifti = tmp_path / "ct.nii.gz"
    nifti.write_bytes(b"")
    volume = video_spec(nifti, parse_options(["n=8", "axis=coronal", "window=lung"]))
    assert volume.to_dict() == {
        "volume": str(nifti),
        "axis": "coronal",
        "sample": {"n": 8},
        "window": "lung",
    }
    (tmp_path / "empty").mkdir()
    with pytest.raises(VideoInputError, match="no slice images"):
        video_spec(tmp_path / "empty")
    with pytest.raises(VideoInputError, match="no such file"):
        video_spec(tmp_path / "gone")
    for bad, message in [("n=0", "positive whole"), ("axis=up", "axis must"), ("x=1", "unknown")]:
        with pytest.raises(VideoInputError, match=message):
            parse_options([bad])


def test_scripted_chat_with_a_volume(tiny_model_dirs, study, tmp_path, monkeypatch, capsys):
    import io

    from medvl.cli.main import main
    from medvl.data.jsonl import read_records

    folder = study.parent / "ct_a"
    saved = tmp_path / "chat.jsonl"
    script = [
        f"/volume {folder} n=3 window=40,400",
        "Is there a lesion?",
        f"/volume {tmp_path / 'gone'}",
        f"/volume {folder} n=zero",
        f"/save {saved}",
        f"/volume {study.parent / 'ct.nii.gz'} n=4 axis=coronal",
        "/exit",
    ]
    monkeypatch.setattr("sys.stdin", io.StringIO("\n".join(script) + "\n"))
    model = str(tiny_model_dirs("qwen2_vl"))
    assert main(["chat", "--model", model, "--max-new-tokens", "4"]) == 0
    captured = capsys.readouterr()
    assert f"[volume attached: {folder}, 3 frames]" in captured.err
    assert f"[volume attached: {study.parent / 'ct.nii.gz'}, 4 frames]" in captured.err
    assert "gone: no such file" in captured.err and "positive whole number" in captured.err
    [reply] = captured.out.splitlines()
    [record] = read_records(saved)
    assert record.messages[0].content == "<video>\nIs there a lesion?"
    assert [Path(p).name for p in record.videos[0].frames] == [
        "slice_000.png",
        "slice_002.png",
        "slice_004.png",
    ]
    assert record.videos[0].window == (40.0, 400.0)
    # the saved record, predicted as a record, gives the chat's greedy reply
    engine = HFEngine(load_model(model), num_workers=0)
    request = ChatRequest.from_record(record, saved.parent)
    [generation] = engine.generate([request], GenerationSettings(max_new_tokens=4))
    assert generation.text == reply


# ---------------------------------------------------------------- the server


@pytest.fixture(scope="module")
def served(tiny_model_dirs, study):
    from medvl.infer.protocol import ServerConfig
    from medvl.infer.server import BackgroundServer, create_app

    engine = HFEngine(load_model(tiny_model_dirs("qwen2_vl")), batch_size=4, num_workers=1)
    config = ServerConfig(
        model_name="tiny",
        image_root=study.parent,
        max_video_frames=8,
        max_request_pixels=9 * WIDTH * HEIGHT,  # 9 slices; a 60x60 radiograph adds 3,600
        defaults=GREEDY,
    )
    with BackgroundServer(create_app(engine, config)) as running:
        yield running, engine


def _ask(server, video_part: dict, text: str = "Is there a lesion?") -> httpx.Response:
    body = {
        "messages": [
            {"role": "user", "content": [video_part, {"type": "text", "text": text}]},
        ],
        "max_tokens": 5,
        "temperature": 0,
    }
    return httpx.post(f"{server.url}/v1/chat/completions", json=body, timeout=60)


def _local(engine, frames, text: str = "Is there a lesion?"):
    [generation] = engine.generate([ChatRequest.from_question(text, videos=[frames])], GREEDY)
    return generation


def _jpeg_roundtrip(paths) -> tuple[str, list]:
    import base64
    import io

    encoded, decoded = [], []
    for path in paths:
        buffer = io.BytesIO()
        Image.open(path).convert("RGB").save(buffer, format="JPEG", quality=95)
        encoded.append(base64.b64encode(buffer.getvalue()).decode("ascii"))
        decoded.append(Image.open(io.BytesIO(buffer.getvalue())).convert("RGB"))
    return "data:video/jpeg;base64," + ",".join(encoded), decoded


def test_served_videos_match_the_local_engine(served, study):
    from medvl.infer.media import image_to_data_url

    server, engine = served
    slices = sorted((study.parent / "ct_a").glob("*.png"))
    part = {"type": "video", "video": [image_to_data_url(p) for p in slices]}
    answer = _ask(server, part).json()
    local = _local(engine, slices)
    assert answer["choices"][0]["message"]["content"] == local.text
    assert answer["usage"]["prompt_tokens"] == local.prompt_tokens
    import openai

    client = openai.OpenAI(base_url=f"{server.url}/v1", api_key="x", max_retries=0)
    stream = client.chat.completions.create(
        model="tiny",
        messages=[
            {"role": "user", "content": [part, {"type": "text", "text": "Is there a lesion?"}]}
        ],
        max_tokens=5,
        temperature=0,
        stream=True,
    )
    assert "".join(c.choices[0].delta.content or "" for c in stream if c.choices) == local.text
    by_path = _ask(server, {"type": "video_url", "video_url": {"url": "ct_a", "n": 3}}).json()
    picked = _local(engine, [slices[0], slices[2], slices[4]])
    assert by_path["choices"][0]["message"]["content"] == picked.text
    assert by_path["usage"]["prompt_tokens"] == picked.prompt_tokens
    volume = study.parent / "ct.nii.gz"
    options = {"n": 5, "window": [40, 400], "axis": "axial"}
    by_volume = _ask(server, {"type": "video_url", "video_url": {"url": "ct.nii.gz", **options}})
    [record] = [r for r in _requests(study) if r.id == "volume"]
    expected = _local(engine, load_video(record.videos[0]))
    assert by_volume.json()["choices"][0]["message"]["content"] == expected.text
    as_file_url = {"url": volume.as_uri(), **options}
    assert _ask(server, {"type": "video_url", "video_url": as_file_url}).json() == {
        **by_volume.json(),
        "id": ANY,
        "created": ANY,
    }
    url, decoded = _jpeg_roundtrip(slices)
    as_vllm = _ask(server, {"type": "video_url", "video_url": {"url": url}}).json()
    assert as_vllm["choices"][0]["message"]["content"] == _local(engine, decoded).text


def test_served_video_inputs_are_built_once(tiny_model_dirs, study):
    """The server runs the processor on a video request once (to count its tokens) and
    generates from those inputs: streamed, unbatched plain, and batched plain requests."""
    from medvl.infer.media import image_to_data_url
    from medvl.infer.protocol import ServerConfig
    from medvl.infer.server import BackgroundServer, create_app

    engine = HFEngine(load_model(tiny_model_dirs("qwen2_vl")), num_workers=0)
    built = []
    prepare = engine.prepare

    def counted(index, request):
        built.append(request.id)
        return prepare(index, request)

    engine.prepare = counted
    slices = sorted((study.parent / "ct_a").glob("*.png"))
    part = {"type": "video", "video": [image_to_data_url(p) for p in slices]}
    local = _local(engine, slices)
    for window in (0.0, 5.0):  # unbatched, then micro-batched plain requests
        config = ServerConfig(model_name="tiny", defaults=GREEDY, batch_window_ms=window)
        with BackgroundServer(create_app(engine, config)) as server:
            built.clear()
            answer = _ask(server, part).json()
            assert answer["choices"][0]["message"]["content"] == local.text
            assert answer["usage"]["prompt_tokens"] == local.prompt_tokens
            assert len(built) == 1, built
            built.clear()
            body = {
                "messages": [
                    {
                        "role": "user",
                        "content": [part, {"type": "text", "text": "Is there a lesion?"}],
                    }
                ],
                "max_tokens": 5,
                "temperature": 0,
                "stream": True,
            }
            with httpx.stream(
                "POST", f"{server.url}/v1/chat/completions", json=body, timeout=60
            ) as response:
                events = [line for line in response.iter_lines() if line.startswith("data: {")]
            text = "".join(
                json.loads(e[6:])["choices"][0]["delta"].get("content") or "" for e in events
            )
            assert text == local.text
            assert len(built) == 1, built


def test_served_video_limits(served, study):
    from medvl.infer.media import image_to_data_url

    server, _ = served
    slices = sorted((study.parent / "ct_a").glob("*.png"))
    png = image_to_data_url(slices[0])
    odd = image_to_data_url(Image.new("RGB", (30, 20)))
    cases = [
        ({"type": "video", "video": [png] * 9}, 400, "9 frames, above this server's limit of 8"),
        ({"type": "video_url", "video_url": {"url": "ct_a", "n": 20}}, 400, "--max-video-frames"),
        ({"type": "video_url", "video_url": {"url": "ct_a", "n": 0}}, 400, "positive whole"),
        ({"type": "video_url", "video_url": {"url": "/etc"}}, 403, "outside the allowed root"),
        ({"type": "video_url", "video_url": {"url": "gone"}}, 400, "no such file"),
        ({"type": "video_url", "video_url": {"url": "http://x/ct.mp4"}}, 400, "not fetched"),
        ({"type": "video_url", "video_url": {"url": "data:video/mp4;base64,AAAA"}}, 400, "MP4"),
        ({"type": "video", "video": []}, 400, "non-empty list"),
        ({"type": "video", "video": [png, odd]}, 400, "share one size"),
    ]
    for part, status, fragment in cases:
        response = _ask(server, part)
        assert response.status_code == status, (part, response.text)
        assert fragment in response.json()["error"]["message"], response.text
    # 8 slices (the frame limit) and a 168 x 112 image: 12 slices' worth, over the 9 allowed
    big = image_to_data_url(Image.new("RGB", (WIDTH * 2, HEIGHT * 2)))
    body = {
        "messages": [
            {
                "role": "user",
                "content": [
                    {"type": "video", "video": [png] * 8},
                    {"type": "image_url", "image_url": {"url": big}},
                    {"type": "text", "text": "?"},
                ],
            }
        ],
        "max_tokens": 2,
    }
    response = httpx.post(f"{server.url}/v1/chat/completions", json=body, timeout=60)
    assert response.status_code == 400 and "pixels" in response.json()["error"]["message"]
    # the same image with 8 planes of the NIfTI volume: counted once the planes are read
    body["messages"][0]["content"][0] = {"type": "video_url", "video_url": {"url": "ct.nii.gz"}}
    response = httpx.post(f"{server.url}/v1/chat/completions", json=body, timeout=60)
    assert response.status_code == 400, response.text
    assert "56,448 pixels, above this server's limit of 42,336" in response.text
    del body["messages"][0]["content"][1]  # the volume alone (n: the limit, 8) is answered
    response = httpx.post(f"{server.url}/v1/chat/completions", json=body, timeout=60)
    assert response.status_code == 200
    assert _ask(server, {"type": "video", "video": [png] * 8}).status_code == 200


def test_openai_engine_sends_videos(served, study):
    from medvl.infer.openai_engine import OpenAIEngine

    server, engine = served
    requests = _requests(study)
    remote = OpenAIEngine(f"{server.url}/v1", concurrency=2)
    over_http = remote.generate(requests, GREEDY)
    remote.close()
    assert all(g.error is None for g in over_http[:3]), [g.error for g in over_http]
    assert "9 frames, above this server's limit of 8" in over_http[3].error  # 5 + 4 slices
    assert over_http[4].error is None  # the NIfTI volume, sent as its 5 sampled frames
    assert "gone.png" in over_http[-1].error
    _, decoded = _jpeg_roundtrip(sorted((study.parent / "ct_a").glob("*.png")))
    video = requests[0]
    expected = engine.generate(
        [ChatRequest(video.messages, videos=[decoded], id=video.id)], GREEDY
    )[0]
    assert over_http[0].text == expected.text  # the JPEG frames vLLM's video_url carries


@pytest.mark.parametrize("family", ["qwen2_5_vl", "qwen3_vl"])
def test_prompt_length_equals_the_token_counter(family, tiny_model_dirs, study):
    """What validation and training count for a record is what inference feeds the model."""
    from medvl.data.jsonl import read_records
    from medvl.data.tokens import TokenCounter

    loaded = load_model(tiny_model_dirs(family))
    counter = TokenCounter(loaded.processor)
    engine = HFEngine(loaded, num_workers=0)
    for record in read_records(study)[:5]:
        request = ChatRequest.from_record(record, study.parent)
        images = [Image.open(p).size for p in record.image_paths(study.parent)]
        shapes = [(len(f), *f[0].size) for f in map(load_video, request.videos)]
        expected = counter.count(record, images, shapes, with_answer=False)
        assert engine.prepare(0, request).length == expected, record.id


@pytest.mark.parametrize("family", ["qwen2_vl", "qwen3_vl"])
def test_a_one_slice_video_is_padded_to_a_temporal_patch(family, tiny_model_dirs, tmp_path):
    """``sample: {n: 1}`` or a single-frame series: the engine repeats the slice (Qwen3-VL's
    processor refuses one frame) and prompts as many tokens as the counter counts."""
    from medvl.data.tokens import TokenCounter

    Image.effect_noise((84, 56), 40).convert("RGB").save(tmp_path / "s.png")
    rec = Record(
        id="one",
        dataset="t",
        split="test",
        lang="en",
        images=[],
        videos=[{"frames": ["s.png"]}],
        messages=[{"role": "user", "content": "<video>\nIs there a lesion?"}],
    )
    loaded = load_model(tiny_model_dirs(family))
    prepared = HFEngine(loaded, num_workers=0).prepare(0, ChatRequest.from_record(rec, tmp_path))
    assert prepared.error is None, prepared.error
    assert prepared.inputs["video_grid_thw"].tolist() == [[1, 4, 6]]
    counted = TokenCounter(loaded.processor).count(rec, [], [(1, 84, 56)], with_answer=False)
    assert prepared.length == counted
