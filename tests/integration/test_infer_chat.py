"""Chat: scripted through stdin, images mid-conversation, reset, save, and bad input."""

from __future__ import annotations

import io

import pytest

from medvl.cli.main import main
from medvl.data.jsonl import read_records
from medvl.data.medimage import ImageError
from medvl.infer.chat import ChatCommandError, ChatSession, parse_line
from medvl.infer.engine import GenerationSettings
from medvl.infer.hf_engine import HFEngine
from medvl.models.loading import load_model

SETTINGS = GenerationSettings(max_new_tokens=5)


@pytest.fixture(scope="module")
def session_engine(tiny_model_dirs):
    return HFEngine(load_model(tiny_model_dirs("qwen2_vl")), num_workers=0)


def test_parse_line():
    assert parse_line("hello\n").command is None
    assert parse_line("/image 'a b.png'").text == "a b.png"
    assert parse_line("/quit").command == "/exit"
    assert parse_line("//image is text").text == "/image is text"
    with pytest.raises(ChatCommandError, match="unknown command /bogus"):
        parse_line("/bogus")
    with pytest.raises(ChatCommandError, match="needs a path"):
        parse_line("/save")


def test_session_turns_images_and_failures(session_engine, phantom_dir):
    image = phantom_dir / "images" / "phantom-00000.png"
    session = ChatSession(session_engine, SETTINGS, system="Be brief.")
    with pytest.raises(ImageError, match="not found"):
        session.add_image(image.with_name("nope.png"))
    session.add_image(image)
    first = session.ask("What organ is this?")
    assert session.pending == [] and len(session.turns) == 2
    request = session.request()
    assert request.images == [image.resolve()] and request.messages[0]["role"] == "system"
    second = session.ask("Is it normal?")
    assert len(session.turns) == 4 and isinstance(first, str) and isinstance(second, str)
    stream = session.send("Stop me")
    next(stream)
    stream.close()  # Ctrl-C during a reply: the half turn is dropped
    assert len(session.turns) == 4
    session.reset()
    assert session.turns == [] and session.system == "Be brief."


def test_scripted_cli_chat(tiny_model_dirs, tmp_path, phantom_dir, monkeypatch, capsys):
    image = phantom_dir / "images" / "phantom-00001.png"
    saved = tmp_path / "conversation.jsonl"
    script = "\n".join(
        [
            "What is shown?",
            f"/image {image}",
            "And in this image?",
            "/bogus",
            f"/image {tmp_path / 'missing.png'}",
            f"/save {saved}",
            "/reset",
            "Hello again",
            "/exit",
            "never sent",
        ]
    )
    monkeypatch.setattr("sys.stdin", io.StringIO(script + "\n"))
    model = str(tiny_model_dirs("qwen2_vl"))
    assert main(["chat", "--model", model, "--max-new-tokens", "5"]) == 0
    captured = capsys.readouterr()
    replies = captured.out.splitlines()
    assert len(replies) == 3  # one line per message; commands print to stderr
    assert "unknown command /bogus" in captured.err and "missing.png" in captured.err
    assert f"saved to {saved}" in captured.err and "conversation reset" in captured.err
    [record] = read_records(saved)
    assert [m.role for m in record.messages] == ["user", "assistant"] * 2
    assert record.images == [str(image.resolve())]
    assert record.messages[2].content.startswith("<image>\n")
    assert record.messages[3].content == replies[1]
    engine = HFEngine(load_model(model), num_workers=0)  # same greedy reply after /reset
    fresh = ChatSession(engine, SETTINGS)
    assert fresh.ask("Hello again") == replies[2]
