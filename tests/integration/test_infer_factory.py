"""One way to build an engine: EngineSpec validation, open_engine, HFEngine.from_model, and the
CLI options that make a spec."""

from __future__ import annotations

import argparse

import pytest

from medvl.cli.options import add_model_args, add_remote_args, engine_spec
from medvl.data.jsonl import read_records
from medvl.errors import ConfigError
from medvl.infer.engine import ChatRequest, GenerationSettings
from medvl.infer.factory import EngineSpec, load_local, open_engine
from medvl.infer.hf_engine import HFEngine
from medvl.infer.openai_engine import OpenAIEngine
from medvl.models.loading import LoadOptions, load_model

URL = "http://localhost:9/v1"


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({}, "pass --model"),
        ({"base_url": URL, "adapters": ("a",)}, "--adapter is for the local engine"),
        ({"base_url": URL, "load": LoadOptions()}, "load options .* are for the local engine"),
        ({"model": "m", "batch_size": 0}, "--batch-size must be positive, got 0"),
        ({"model": "m", "workers": -1}, "--workers must be 0 or more"),
        ({"base_url": URL, "concurrency": 0}, "--concurrency must be positive"),
    ],
)
def test_spec_refuses_what_cannot_run(kwargs, message):
    with pytest.raises(ConfigError, match=message):
        EngineSpec(**kwargs)


def test_spec_describes_itself_without_loading_or_leaking_the_key():
    remote = EngineSpec(base_url=URL + "/", model="served", api_key="secret")
    assert remote.engine == "openai" and "secret" not in repr(remote)
    assert "secret" not in str(remote.describe())
    assert remote.fingerprint() == {"id": "openai:served", "base_url": URL, "model": "served"}
    assert EngineSpec(base_url=URL).fingerprint() is None  # the server names its model
    local = EngineSpec(model="m", adapters=["a"])  # a list is kept as a tuple
    assert local.engine == "hf" and local.adapters == ("a",)
    with pytest.raises(ConfigError, match="needs a local model"):
        load_local(remote)


def test_open_engine_opens_a_local_model_or_a_server(tiny_model_dirs):
    model = str(tiny_model_dirs("qwen2_vl"))
    engine = open_engine(EngineSpec(model=model, batch_size=3, workers=0))
    assert isinstance(engine, HFEngine) and (engine.batch_size, engine.num_workers) == (3, 0)
    assert engine.fingerprint() == EngineSpec(model=model).fingerprint()
    remote = open_engine(EngineSpec(base_url=URL, model="served", concurrency=2))
    assert isinstance(remote, OpenAIEngine) and (remote.model, remote.concurrency) == ("served", 2)


def test_from_model_answers_as_the_loaded_engine(tiny_model_dirs, phantom_dir):
    root = phantom_dir
    requests = [ChatRequest.from_record(r, root) for r in read_records(root / "test.jsonl")[:3]]
    loaded = load_model(tiny_model_dirs("qwen2_vl"))
    settings = GenerationSettings(max_new_tokens=4)
    wrapped = HFEngine.from_model(loaded.model, loaded.processor, batch_size=2, num_workers=0)
    plain = HFEngine(loaded, num_workers=0)
    assert [g.text for g in wrapped.generate(requests, settings)] == [
        g.text for g in plain.generate(requests, settings)
    ]
    assert wrapped.fingerprint()["id"].startswith("in-memory:")


def _args(*argv: str) -> argparse.Namespace:
    parser = argparse.ArgumentParser()
    add_model_args(parser, required=False)
    add_remote_args(parser)
    return parser.parse_args(list(argv))


def test_cli_options_make_a_spec():
    local = engine_spec(_args("--model", "m", "--adapter", "a", "--dtype", "fp32"), batch_size=4)
    assert (local.model, local.adapters, local.load.dtype, local.batch_size) == (
        "m",
        ("a",),
        "fp32",
        4,
    )
    remote = engine_spec(_args("--engine", "openai", "--base-url", URL, "--concurrency", "3"))
    assert (remote.base_url, remote.load, remote.concurrency) == (URL, None, 3)
    with pytest.raises(ConfigError, match="--engine openai needs --base-url"):
        engine_spec(_args("--engine", "openai"))
    with pytest.raises(ConfigError, match="pass --model"):
        engine_spec(_args())
