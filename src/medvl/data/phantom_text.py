"""The words of the phantom dataset: question templates and answers in English and Chinese.

Every answer is a pure function of the image facts (:class:`Facts`), so a model that reads the
image can produce it exactly; only the question wording varies (a few templates per type and
language) so the model must also read the question. Sides are the patient's (radiological
convention), answers in Chinese use Chinese words except counts, which are digits in both.
"""

from __future__ import annotations

from dataclasses import dataclass
from itertools import product
from typing import Any

import numpy as np

from medvl.data.phantom_images import Scene

QUESTION_TYPES = (
    "presence",
    "laterality",
    "modality",
    "organ",
    "counting",
    "size",
    "findings",
    "report",
)
CLOSED_TYPES = ("presence", "laterality", "modality")
MCQ_TYPES = ("laterality", "modality", "organ", "counting", "findings")


@dataclass(frozen=True)
class Facts:
    """What one phantom image shows. ``side`` is "left", "right", "bilateral" or "none"."""

    modality: str
    organ: str
    count: int
    side: str
    size: str | None
    scene: Scene


QUESTIONS: dict[str, dict[str, tuple[str, ...]]] = {
    "presence": {
        "en": (
            "Is there a lesion in this image?",
            "Is there a nodule in this image?",
            "Does this image show any abnormality?",
            "Are any lesions visible?",
        ),
        "zh": ("图像中是否有病灶？", "这张图片中有结节吗？", "图像是否显示异常？"),
    },
    "laterality": {
        "en": (
            "Which side is the lesion on?",
            "Is the lesion on the left or the right side?",
            "On which side of the patient is the abnormality?",
        ),
        "zh": ("病灶位于哪一侧？", "病变在左侧还是右侧？", "异常位于患者的哪一侧？"),
    },
    "modality": {
        "en": (
            "What imaging modality is this?",
            "What kind of scan is this?",
            "Which modality was used to acquire this image?",
        ),
        "zh": ("这是什么成像方式？", "这张图像是哪种检查？", "该图像采用了什么影像学检查方法？"),
    },
    "organ": {
        "en": (
            "Which organ is shown?",
            "What organ is visible in this image?",
            "Which organ does this image focus on?",
        ),
        "zh": ("图中显示的是哪个器官？", "这张图像主要显示什么器官？", "图像中可见哪个器官？"),
    },
    "counting": {
        "en": (
            "How many lesions are there?",
            "How many nodules can be seen?",
            "Count the lesions in this image.",
        ),
        "zh": ("图中有几个病灶？", "共有多少个结节？", "请数一数图像中的病灶数量。"),
    },
    "size": {
        "en": (
            "How large is the lesion?",
            "Is the lesion small or large?",
            "What is the size of the lesions?",
        ),
        "zh": ("病灶有多大？", "病灶是大还是小？", "病变的大小如何？"),
    },
    "findings": {
        "en": (
            "Describe the findings.",
            "What are the findings in this image?",
            "Briefly describe any abnormality.",
        ),
        "zh": ("请描述影像所见。", "这张图像有哪些发现？", "请简要描述异常表现。"),
    },
    "report": {
        "en": (
            "Write a radiology report for this image.",
            "Provide a detailed report of this study.",
            "Write the findings and impression for this image.",
        ),
        "zh": (
            "请为这张图像写一份影像报告。",
            "请给出详细的影像学报告。",
            "请写出影像所见和印象。",
        ),
    },
}
MCQ_FINDINGS_QUESTIONS = {
    "en": (
        "Which statement best describes the findings?",
        "Which of the following matches this image?",
    ),
    "zh": ("下列哪项最符合影像表现？", "以下哪一项与图像相符？"),
}
MCQ_INSTRUCTION = {
    "en": "Answer with the option's letter from the given choices directly.",
    "zh": "请直接回答正确选项的字母。",
}

_WORDS: dict[str, dict[str, Any]] = {
    "en": {
        "yes_no": ("yes", "no"),
        "modality": {"CT": "CT", "MRI": "MRI", "X-ray": "X-ray"},
        "organ": {"lung": "lung", "liver": "liver", "brain": "brain", "kidney": "kidney"},
        "side": {"left": "left", "right": "right"},
        "size": {"small": "small", "large": "large"},
        "number": {1: "one", 2: "two", 3: "three"},
        "adjective": {"CT": "hyperdense", "MRI": "hyperintense", "X-ray": "nodular"},
        "region": {
            "lung": "the chest",
            "liver": "the liver",
            "brain": "the brain",
            "kidney": "the kidneys",
        },
        "organ_all": {"lung": "lungs", "liver": "liver", "brain": "brain", "kidney": "kidneys"},
        "place": {
            "lung": {"left": "the left lung", "right": "the right lung", "bilateral": "both lungs"},
            "liver": {
                "left": "the left lobe of the liver",
                "right": "the right lobe of the liver",
                "bilateral": "both lobes of the liver",
            },
            "brain": {
                "left": "the left hemisphere",
                "right": "the right hemisphere",
                "bilateral": "both hemispheres",
            },
            "kidney": {
                "left": "the left kidney",
                "right": "the right kidney",
                "bilateral": "both kidneys",
            },
        },
        "background": {  # (no lesion, with lesions)
            "lung": ("The lung fields are clear.", "The remaining lung fields are clear."),
            "liver": (
                "The liver parenchyma is homogeneous.",
                "The remaining liver parenchyma is homogeneous.",
            ),
            "brain": (
                "The brain parenchyma and ventricles appear normal.",
                "The ventricles are normal in size.",
            ),
            "kidney": (
                "Both kidneys have smooth contours.",
                "The renal contours are otherwise smooth.",
            ),
        },
        "mcq": {
            "modality": ("CT", "MRI", "X-ray", "Ultrasound"),
            "laterality": ("left", "right", "both sides", "no lesion"),
        },
    },
    "zh": {
        "yes_no": ("是", "否"),
        "modality": {"CT": "CT", "MRI": "MRI", "X-ray": "X线"},
        "organ": {"lung": "肺", "liver": "肝", "brain": "脑", "kidney": "肾"},
        "side": {"left": "左侧", "right": "右侧"},
        "size": {"small": "小", "large": "大"},
        "number": {1: "一", 2: "两", 3: "三"},
        "adjective": {"CT": "高密度", "MRI": "高信号", "X-ray": "结节状"},
        "region": {"lung": "胸部", "liver": "肝脏", "brain": "头颅", "kidney": "双肾"},
        "organ_all": {"lung": "肺部", "liver": "肝脏", "brain": "脑部", "kidney": "肾脏"},
        "place": {
            "lung": {"left": "左肺", "right": "右肺", "bilateral": "双肺"},
            "liver": {"left": "肝左叶", "right": "肝右叶", "bilateral": "肝左右叶"},
            "brain": {"left": "左侧大脑半球", "right": "右侧大脑半球", "bilateral": "双侧大脑半球"},
            "kidney": {"left": "左肾", "right": "右肾", "bilateral": "双肾"},
        },
        "background": {
            "lung": ("双肺野清晰。", "其余肺野清晰。"),
            "liver": ("肝实质均匀。", "其余肝实质均匀。"),
            "brain": ("脑实质及脑室未见异常。", "脑室大小正常。"),
            "kidney": ("双肾轮廓光整。", "其余肾脏轮廓光整。"),
        },
        "mcq": {
            "modality": ("CT", "MRI", "X线", "超声"),
            "laterality": ("左侧", "右侧", "双侧", "无病灶"),
        },
    },
}


def question_templates(qtype: str, lang: str, mcq: bool) -> tuple[str, ...]:
    """The question phrasings for one question type and language."""
    if mcq and qtype == "findings":
        return MCQ_FINDINGS_QUESTIONS[lang]
    return QUESTIONS[qtype][lang]


def findings_sentence(organ: str, count: int, side: str, size: str | None, lang: str) -> str:
    """One short findings sentence, e.g. "Two large lesions in the left lung."."""
    w = _WORDS[lang]
    if count == 0:
        if lang == "zh":
            return f"{w['organ_all'][organ]}未见病灶。"
        return f"No lesion is seen in the {w['organ_all'][organ]}."
    place = w["place"][organ][side]
    if lang == "zh":
        return f"{place}见{w['number'][count]}个{w['size'][size]}病灶。"
    plural = "s" if count > 1 else ""
    return f"{w['number'][count].capitalize()} {size} lesion{plural} in {place}."


def report(facts: Facts, lang: str) -> str:
    """A four-sentence report (modality, lesions, background, impression) fixed by the facts."""
    w = _WORDS[lang]
    modality, organ, count = w["modality"][facts.modality], facts.organ, facts.count
    background = w["background"][organ][count > 0]
    if lang == "zh":
        place = w["place"][organ].get(facts.side, "")
        size = f"较{w['size'].get(facts.size, '')}"
        lesions = (
            f"{place}见{w['number'][count]}个{size}的{w['adjective'][facts.modality]}病灶。"
            if count
            else "未见明确局灶性病灶。"
        )
        impression = (
            f"印象：{place}{'单发' if count == 1 else '多发'}{size}病灶。"
            if count
            else "印象：未见明显异常。"
        )
        return f"影像所见：{w['region'][organ]}{modality}检查。{lesions}{background}{impression}"
    if count:
        place, plural = w["place"][organ][facts.side], "s" if count > 1 else ""
        verb = "is" if count == 1 else "are"
        lesions = (
            f"There {verb} {w['number'][count]} {facts.size} "
            f"{w['adjective'][facts.modality]} lesion{plural} in {place}."
        )
        impression = (
            f"Impression: {'Single' if count == 1 else 'Multiple'} {facts.size} "
            f"lesion{plural} in {place}."
        )
    else:
        lesions, impression = (
            "No focal lesion is identified.",
            "Impression: No abnormality detected.",
        )
    return " ".join(
        [f"Findings: {modality} of {w['region'][organ]}.", lesions, background, impression]
    )


def answer(qtype: str, facts: Facts, lang: str) -> str:
    """The gold answer text of a (non multiple-choice) question about ``facts``."""
    w = _WORDS[lang]
    if qtype == "presence":
        return w["yes_no"][0 if facts.count else 1]
    if qtype == "laterality":
        return w["side"][facts.side]
    if qtype == "modality":
        return w["modality"][facts.modality]
    if qtype == "organ":
        return w["organ"][facts.organ]
    if qtype == "counting":
        return str(facts.count)
    if qtype == "size":
        return w["size"][facts.size]
    if qtype == "findings":
        return findings_sentence(facts.organ, facts.count, facts.side, facts.size, lang)
    if qtype == "report":
        return report(facts, lang)
    raise ValueError(f"unknown phantom question type {qtype!r}")


def _choices(qtype: str, facts: Facts, lang: str) -> tuple[str, list[str]]:
    """The correct option text and every wrong one for a multiple-choice question."""
    w = _WORDS[lang]
    if qtype == "findings":
        correct = answer("findings", facts, lang)
        layouts = [(0, "none", None)] + [
            (count, side, size)
            for count, side, size in product(
                (1, 2, 3), ("left", "right", "bilateral"), ("small", "large")
            )
            if not (count == 1 and side == "bilateral")
        ]
        texts = [findings_sentence(facts.organ, *layout, lang) for layout in layouts]
        return correct, [t for t in texts if t != correct]
    if qtype == "organ":
        pool: tuple[str, ...] = tuple(w["organ"].values())
    elif qtype == "counting":
        pool = ("0", "1", "2", "3")
    elif qtype in w["mcq"]:
        pool = w["mcq"][qtype]
    else:
        raise ValueError(f"no multiple-choice variant of {qtype!r} questions")
    correct = answer(qtype, facts, lang)
    return correct, [option for option in pool if option != correct]


def mcq_options(
    qtype: str, facts: Facts, lang: str, letter: str, rng: np.random.Generator
) -> dict[str, str]:
    """Options A-D with the correct one at ``letter`` and three shuffled wrong ones elsewhere."""
    correct, wrong = _choices(qtype, facts, lang)
    picked = [wrong[int(i)] for i in rng.permutation(len(wrong))[:3]]
    letters = [x for x in "ABCD" if x != letter]
    options = dict(zip(letters, picked, strict=True))
    options[letter] = correct
    return dict(sorted(options.items()))


def readme(info: dict[str, Any]) -> str:
    """A short human-readable description of a generated phantom folder."""
    rows = [
        f"| {split} | {s['count']} | {s['multiple_choice']} | "
        + ", ".join(f"{k} {v}" for k, v in s["question_types"].items())
        + " |"
        for split, s in info["splits"].items()
    ]
    return "\n".join(
        [
            "# Phantom medical VQA dataset",
            "",
            f"Synthetic data from `{info['generator']}` version {info['generator_version']}, "
            f"n={info['n']}, seed={info['seed']}.",
            "Regenerating with the same arguments gives byte-identical files.",
            "Not real patient data: for tests, demos and smoke training.",
            "",
            "Images show the facts coarsely. The anatomy lies in a narrow gray band (92-117/255,",
            "below the vision encoder's normalisation mean) and lesions are the only bright things",
            "(round discs, 247/255). Modality shows as texture (X-ray: dark lung fields, ribs;",
            "CT: dark background, body in a ring; MRI: intensity gradient, dark rim, speckle),",
            "organ as layout. Sides are the patient's in radiological convention: the patient's",
            "left is on the image's right.",
            "",
            "| split | records | multiple choice | question types |",
            "|---|---|---|---|",
            *rows,
            "",
        ]
    )
