"""What every format reader shares: the read context, the per-record outcome, the field helpers.

A reader is a function ``read(ctx) -> Iterator[Candidate | Skipped]``. It parses the input as the
publisher ships it and yields one :class:`Candidate` per source record: a cheap key (its id), the
language and split when known up front (so ``--lang``/``--split`` filter without touching images),
and a ``build`` callable that makes the canonical :class:`~medvl.data.record.Record`. ``build`` may
raise :class:`SkipRecord` (or any ``ValueError``/``KeyError``/``TypeError``) for a broken record;
:func:`medvl.data.formats.convert` reports it by id (in a
:class:`~medvl.data.formats.convert_report.ConvertReport`) and carries on with the rest. The
small field helpers here (``text_field``, ``closed_or_open``, ``qa_record``...) are what readers
build records with.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath, PureWindowsPath
from typing import Any

from medvl.data.paths import output_path
from medvl.data.record import IMAGE_PLACEHOLDER, Message, Record

MCQ_INSTRUCTION = {
    "en": "Answer with the option's letter from the given choices directly.",
    "zh": "请直接回答正确选项的字母。",
}
YES_NO = frozenset({"yes", "no"})
_CJK_RE = re.compile(r"[\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff]")
_SPLIT_WORDS = {
    "train": "train",
    "training": "train",
    "test": "test",
    "testing": "test",
    "val": "validation",
    "valid": "validation",
    "validation": "validation",
    "dev": "validation",
    # data_RAD (trainset.json / testset.json) and similar "<split>set" names
    "trainset": "train",
    "testset": "test",
    "valset": "validation",
    "validset": "validation",
    "validationset": "validation",
    "devset": "validation",
}


class SkipRecord(ValueError):
    """Raised while building one record: the record is skipped and ``str(exc)`` is the reason."""


@dataclass(frozen=True)
class Skipped:
    """A source record (or line) that could not even be parsed; ``key`` names it in the report.

    ``truncated`` marks the end of a file that was cut short (a download or copy that stopped):
    the records before it were read, the rest of the file is lost, and the command fails.
    """

    key: str
    reason: str
    truncated: bool = False


@dataclass(frozen=True)
class Candidate:
    """One parsed source record, built into a canonical record only if it passes the filters."""

    key: str
    build: Callable[[], Record]
    lang: str | None = None
    split: str | None = None


@dataclass
class ReadContext:
    """Everything a reader needs to know about one conversion run.

    ``out_dir`` is the output JSONL's folder: image paths in the records are written relative to
    it where the two share a folder other than the filesystem root (see
    :func:`medvl.data.paths.output_path`).
    ``image_out_dir`` is where readers that carry images inline (base64 TSV) write image files.
    ``lang`` and ``split`` are filters that :func:`medvl.data.formats.convert` applies; readers
    may use ``split`` only to skip reading files of other splits, never to label records.
    """

    input: Path
    out_dir: Path
    image_root: Path
    image_out_dir: Path
    lang: str | None = None
    split: str | None = None
    options: dict[str, Any] = field(default_factory=dict)
    _found: dict[str, Path | None] = field(default_factory=dict, repr=False)

    def image(self, raw: Any, subdirs: Iterable[str] = ()) -> str:
        """The output path of the source image ``raw``; raise :class:`SkipRecord` if it is missing.

        ``raw`` may use Windows separators. A relative path is looked up under ``image_root`` and
        then under each of ``subdirs`` inside it (publishers differ on whether paths include the
        image folder). An absolute path from another machine that does not exist here is looked
        up by its last one or two components under ``image_root``.
        """
        if not isinstance(raw, str) or not raw.strip():
            raise SkipRecord(f"image path must be a non-empty string, got {raw!r}")
        key = f"{raw}\0{'|'.join(subdirs)}"
        if key not in self._found:
            self._found[key] = self._locate(raw.strip(), tuple(subdirs))
        found = self._found[key]
        if found is None:
            raise SkipRecord(
                f"image not found: {raw!r} (looked under {self.image_root}); "
                "pass --image-root with the folder that holds the images"
            )
        return output_path(found, self.out_dir)

    def _locate(self, raw: str, subdirs: tuple[str, ...]) -> Path | None:
        posix = normalise_image_path(raw)
        candidates: list[Path] = []
        if is_absolute(raw):
            candidates.append(Path(posix))
            parts = PurePosixPath(posix).parts
            relatives = ["/".join(parts[-1:]), "/".join(parts[-2:])]
        else:
            relatives = [posix]
        for rel in relatives:
            candidates.append(self.image_root / rel)
            candidates.extend(self.image_root / sub / rel for sub in subdirs)
        return next((path for path in candidates if path.is_file()), None)

    def option(self, name: str, default: Any = None) -> Any:
        """A reader option given to ``convert(..., name=value)``."""
        return self.options.get(name, default)


def normalise_image_path(raw: str) -> str:
    """``raw`` with forward slashes (``images\\test\\a.jpg`` -> ``images/test/a.jpg``)."""
    if "\\" in raw:
        raw = PureWindowsPath(raw).as_posix()
    return raw[2:] if raw.startswith("./") else raw


def is_absolute(raw: str) -> bool:
    """True for POSIX absolute paths and Windows drive paths such as ``C:\\data\\a.png``."""
    return raw.startswith(("/", "\\")) or bool(re.match(r"^[A-Za-z]:[\\/]", raw))


def guess_lang(*texts: Any) -> str:
    """``"zh"`` when any text holds CJK ideographs, else ``"en"``."""
    return "zh" if any(isinstance(t, str) and _CJK_RE.search(t) for t in texts) else "en"


def guess_split(path: Path, default: str) -> str:
    """The split named by a file name (``test_2.csv`` -> test, ``GMAI_..._VAL`` -> validation,
    ``trainset.json`` -> train), or ``default`` when the name holds no split word."""
    for word in re.split(r"[^a-z0-9]+", path.stem.lower()):
        if word in _SPLIT_WORDS:
            return _SPLIT_WORDS[word]
    return default


def normalise_split(name: str) -> str:
    """Canonical split names: ``val``/``dev`` -> ``validation``; others unchanged (lowercased)."""
    return _SPLIT_WORDS.get(name.strip().lower(), name.strip().lower())


def split_label(ctx: ReadContext, path: Path, default: str) -> str:
    """The split of a single-split file: named by the file (``testset.json`` -> test), else
    ``default``. ``--split`` never relabels: it only filters (``ctx`` is kept for readers that
    pass it; it is not consulted)."""
    del ctx
    return guess_split(path, default)


def text_field(row: dict[str, Any], *names: str, required: bool = True) -> str | None:
    """The first non-empty field of ``names`` as stripped text (numbers become text)."""
    for name in names:
        value = row.get(name)
        if is_missing(value):
            continue
        return str(value).strip()
    if required:
        raise SkipRecord(f"missing field {' / '.join(repr(n) for n in names)}")
    return None


def is_missing(value: Any) -> bool:
    """None, NaN, empty text or the text ``"None"``/``"nan"`` (how exports spell "no value")."""
    if value is None:
        return True
    if isinstance(value, float) and value != value:
        return True
    return isinstance(value, str) and value.strip().lower() in ("", "none", "nan", "null")


def closed_or_open(raw: Any, answer: str | None = None) -> str | None:
    """Map a benchmark's answer type (CLOSED/OPEN...) to canonical ``closed``/``open``.

    Without a label, a yes/no answer is closed and anything else open (how MedEvalKit scores
    exports that dropped the answer type); without either, None.
    """
    if isinstance(raw, str) and raw.strip():
        label = raw.strip().lower()
        if label.startswith("close"):
            return "closed"
        if label.startswith("open"):
            return "open"
    if answer is None:
        return None
    return "closed" if answer.strip().lower() in YES_NO else "open"


def mcq_prompt(question: str, options: dict[str, str], lang: str = "en") -> str:
    """The multiple-choice prompt: question, ``A. text`` lines and the answer-format instruction."""
    lines = [f"{letter}. {text}" for letter, text in options.items()]
    return "\n".join([question.strip(), *lines, MCQ_INSTRUCTION.get(lang, MCQ_INSTRUCTION["en"])])


def letter_for(answer_text: str, options: dict[str, str]) -> str:
    """The letter whose option text equals ``answer_text`` (exact, then case/space-insensitive)."""
    for letter, text in options.items():
        if text == answer_text:
            return letter
    wanted = " ".join(answer_text.split()).casefold()
    for letter, text in options.items():
        if " ".join(text.split()).casefold() == wanted:
            return letter
    raise SkipRecord(f"answer {answer_text!r} matches none of the options {sorted(options)}")


def lettered(texts: Iterable[Any]) -> dict[str, str]:
    """Options keyed A, B, C... from a list of texts, dropping empty ones (order kept)."""
    kept = [str(t).strip() for t in texts if not is_missing(t)]
    if len(kept) > 26:
        raise SkipRecord(f"{len(kept)} options; at most 26 (A-Z) are supported")
    return {chr(ord("A") + i): text for i, text in enumerate(kept)}


def has_surrogates(value: Any) -> bool:
    """True if a parsed value holds text decoded from bytes that are not valid UTF-8."""
    if isinstance(value, str):
        return any("\udc80" <= ch <= "\udcff" for ch in value)
    if isinstance(value, dict):
        return any(has_surrogates(k) or has_surrogates(v) for k, v in value.items())
    if isinstance(value, list):
        return any(has_surrogates(v) for v in value)
    return False


def json_safe(value: Any) -> Any:
    """``value`` with NaN floats replaced by None, so ``meta`` stays valid JSON."""
    if isinstance(value, float) and value != value:
        return None
    if isinstance(value, dict):
        return {str(k): json_safe(v) for k, v in value.items()}
    if isinstance(value, list):
        return [json_safe(v) for v in value]
    return value


def qa_record(
    *,
    record_id: str,
    dataset: str,
    split: str,
    lang: str,
    images: list[str],
    question: str,
    answer: str | None,
    answer_type: str | None,
    question_type: str | None = None,
    options: dict[str, str] | None = None,
    meta: dict[str, Any] | None = None,
) -> Record:
    """A single-question record: ``<image>`` lines + question (+ options), then the answer turn.

    With ``options`` the user turn lists them as ``A. text`` lines and asks for the letter, and
    ``answer`` is the letter. Without an answer (hidden test labels) there is no assistant turn.
    """
    if not question.strip():
        raise SkipRecord("empty question")
    prompt = mcq_prompt(question, options, lang) if options else question.strip()
    messages = [Message("user", (IMAGE_PLACEHOLDER + "\n") * len(images) + prompt)]
    if answer is not None:
        messages.append(Message("assistant", answer))
    return Record(
        id=record_id,
        dataset=dataset,
        split=split,
        lang=lang,
        images=images,
        messages=messages,
        answer=answer,
        options=options,
        answer_type=answer_type,
        question_type=question_type or None,
        meta=json_safe(meta or {}),
    )
