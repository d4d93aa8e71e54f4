"""Scoring protocols: other tools' rules for judging an answer, reproduced so numbers compare.

Each protocol is a small object with metadata (``name``, ``title``, ``follows``, ``benchmarks``,
``notes``) and one pure ``judge(Answer) -> Judgment``; see :mod:`medvl.eval.protocols.base`. The
modules say which upstream files and version they follow and which upstream bugs they keep.

>>> answer = Answer(kind="mcq", prediction="<answer>B</answer>", gold="B",
...     options={"A": "x", "B": "y"}, benchmark="medvlm_r1")
>>> get_protocol("medvlm-r1").judge(answer).correct
1.0
"""

from __future__ import annotations

from collections.abc import Mapping
from types import MappingProxyType

from medvl.errors import UnknownNameError
from medvl.eval.protocols.base import (
    KINDS,
    Answer,
    Judgment,
    ProtocolError,
    ScoringProtocol,
    check_benchmark,
)
from medvl.eval.protocols.huatuogpt_vision import HuatuoGPTVisionProtocol
from medvl.eval.protocols.llava_med import LlavaMedProtocol
from medvl.eval.protocols.lmms_eval import LmmsEvalProtocol
from medvl.eval.protocols.medevalkit import MedEvalKitProtocol
from medvl.eval.protocols.medvl import MedvlProtocol
from medvl.eval.protocols.medvlm_r1 import MedVLMR1Protocol
from medvl.eval.protocols.vlmevalkit import VLMEvalKitProtocol

DEFAULT_PROTOCOL = "medvl"

_ALL: tuple[ScoringProtocol, ...] = (
    MedvlProtocol(),
    LmmsEvalProtocol(),
    VLMEvalKitProtocol(),
    MedEvalKitProtocol(),
    LlavaMedProtocol(),
    MedVLMR1Protocol(),
    HuatuoGPTVisionProtocol(),
)
#: Name -> protocol, ``medvl`` (the default) first.
PROTOCOLS: Mapping[str, ScoringProtocol] = MappingProxyType({p.name: p for p in _ALL})


def get_protocol(name: str) -> ScoringProtocol:
    """The protocol called ``name``; :class:`UnknownNameError` listing the names otherwise."""
    if name not in PROTOCOLS:
        raise UnknownNameError("protocol", name, list(PROTOCOLS))
    return PROTOCOLS[name]


def list_protocols() -> list[ScoringProtocol]:
    """Every protocol, ``medvl`` first."""
    return list(PROTOCOLS.values())


__all__ = [
    "DEFAULT_PROTOCOL",
    "KINDS",
    "PROTOCOLS",
    "Answer",
    "Judgment",
    "ProtocolError",
    "ScoringProtocol",
    "check_benchmark",
    "get_protocol",
    "list_protocols",
]
