"""The OpenAI-compatible server, driven by the real ``openai`` client over a loopback port,
and the OpenAI-client engine giving the same outputs as the local engine."""

from __future__ import annotations

import base64
import json

import httpx
import openai
import pytest

import medvl
from medvl.data.jsonl import read_records
from medvl.infer.engine import ChatRequest, GenerationSettings
from medvl.infer.hf_engine import HFEngine
from medvl.infer.media import image_to_data_url
from medvl.infer.openai_engine import OpenAIEngine
from medvl.infer.protocol import ServerConfig
from medvl.infer.server import BackgroundServer, create_app
from medvl.models.loading import load_model

KEY = "test-key"
GREEDY = GenerationSettings(max_new_tokens=6)


@pytest.fixture(scope="module")
def root(phantom_dir):
    return phantom_dir


@pytest.fixture(scope="module")
def engine(tiny_model_dirs):
    return HFEngine(load_model(tiny_model_dirs("qwen2_vl")), batch_size=4, num_workers=1)


@pytest.fixture(scope="module")
def server(engine, root):
    config = ServerConfig(
        model_name="tiny",
        api_key=KEY,
        image_root=root / "images",
        max_body_bytes=300_000,
        defaults=GREEDY,
    )
    with BackgroundServer(create_app(engine, config)) as running:
        yield running


@pytest.fixture(scope="module")
def client(server):
    return openai.OpenAI(base_url=f"{server.url}/v1", api_key=KEY, max_retries=0)


def _question(url: str, text: str = "What is shown?") -> list[dict]:
    parts = [{"type": "image_url", "image_url": {"url": url}}, {"type": "text", "text": text}]
    return [{"role": "user", "content": parts}]


def test_models_and_completion_match_the_local_engine(client, engine, root):
    assert [m.id for m in client.models.list().data] == ["tiny"]
    image = root / "images" / "phantom-00000.png"
    reply = client.chat.completions.create(
        model="tiny", messages=_question(image_to_data_url(image)), max_tokens=6, temperature=0
    )
    [local] = engine.generate([ChatRequest.from_question("What is shown?", [image])], GREEDY)
    assert reply.choices[0].message.content == local.text
    assert reply.choices[0].finish_reason == "length"
    assert reply.usage.completion_tokens == 6 and reply.usage.prompt_tokens == local.prompt_tokens
    by_path = client.chat.completions.create(
        model="tiny", messages=_question("phantom-00000.png"), max_tokens=6
    )
    assert by_path.choices[0].message.content == local.text  # path under the image root


def test_streaming_gives_the_same_text(client, root):
    messages = _question(image_to_data_url(root / "images" / "phantom-00001.png"))
    plain = client.chat.completions.create(model="tiny", messages=messages, max_tokens=6)
    chunks = list(
        client.chat.completions.create(model="tiny", messages=messages, max_tokens=6, stream=True)
    )
    pieces = [c.choices[0].delta.content or "" for c in chunks if c.choices]
    assert len([p for p in pieces if p]) > 1
    assert "".join(pieces) == plain.choices[0].message.content
    assert chunks[-1].choices[0].finish_reason == "length"


def test_auth_is_required(server):
    anonymous = openai.OpenAI(base_url=f"{server.url}/v1", api_key="wrong", max_retries=0)
    with pytest.raises(openai.AuthenticationError) as info:
        anonymous.models.list()
    assert info.value.status_code == 401
    response = httpx.post(f"{server.url}/v1/chat/completions", json={"messages": []})
    assert response.status_code == 401 and "API key" in response.json()["error"]["message"]
    assert httpx.get(f"{server.url}/health").json() == {"status": "ok"}


@pytest.mark.parametrize(
    ("url", "status", "fragment"),
    [
        ("data:image/png;base64," + base64.b64encode(b"not a png").decode(), 400, "decoded"),
        ("data:image/png;base64,@@@", 400, "base64"),
        ("../test.jsonl", 403, "outside the allowed root"),
        ("/etc/passwd", 403, "outside the allowed root"),
        ("http://example.com/x.png", 400, "not fetched"),
        ("missing.png", 400, "not found"),
    ],
)
def test_bad_images_are_4xx_and_the_server_keeps_serving(client, url, status, fragment):
    with pytest.raises(openai.APIStatusError) as info:
        client.chat.completions.create(model="tiny", messages=_question(url), max_tokens=2)
    assert info.value.status_code == status
    assert fragment in info.value.body["message"]
    ok = client.chat.completions.create(
        model="tiny", messages=[{"role": "user", "content": "hi"}], max_tokens=2
    )
    assert ok.choices[0].message.role == "assistant"


def test_malformed_and_oversize_requests(server, client):
    headers = {"Authorization": f"Bearer {KEY}"}
    url = f"{server.url}/v1/chat/completions"
    big = {"messages": [{"role": "user", "content": "x" * 400_000}]}
    response = httpx.post(url, json=big, headers=headers)
    assert response.status_code == 413 and "larger than" in response.json()["error"]["message"]
    response = httpx.post(url, content=b"{not json", headers=headers)
    assert response.status_code == 400 and "not valid JSON" in response.json()["error"]["message"]
    cases = [
        ({"messages": [{"role": "robot", "content": "x"}]}, 400, "role"),
        ({"messages": [{"role": "user", "content": "x"}], "max_tokens": 0}, 400, "max_tokens"),
        ({"messages": [{"role": "user", "content": "x"}], "model": "other"}, 404, "not served"),
        ({"messages": [{"role": "user", "content": "x"}], "n": 2}, 400, "n=1"),
    ]
    for body, status, fragment in cases:
        response = httpx.post(url, content=json.dumps(body), headers=headers)
        assert response.status_code == status, body
        assert fragment in response.json()["error"]["message"]
    assert client.models.list().data  # still serving


def test_openai_engine_matches_the_hf_engine(server, engine, root):
    records = read_records(root / "test.jsonl")[:5]
    requests = [ChatRequest.from_record(r, root) for r in records]
    requests.append(ChatRequest.from_question("?", [root / "images" / "gone.png"], id="gone"))
    remote = OpenAIEngine(f"{server.url}/v1", api_key=KEY, concurrency=3)
    assert remote.model == "tiny"
    over_http = remote.generate(requests, GREEDY)
    local = engine.generate(requests, GREEDY)
    assert [g.text for g in over_http[:-1]] == [g.text for g in local[:-1]]
    assert over_http[-1].error and local[-1].error and "gone.png" in over_http[-1].error
    stream = remote.stream(requests[0], GREEDY)
    assert "".join(stream) == local[0].text and stream.result.finish_reason == "length"
    remote.close()
    api = medvl.load(base_url=f"{server.url}/v1", api_key=KEY, settings=GREEDY)
    image = root / "images" / "phantom-00002.png"
    [expected] = engine.generate([ChatRequest.from_question("Which side?", [image])], GREEDY)
    assert api.ask(image, "Which side?") == expected.text
