"""Answer extraction on literal model outputs: every rule, English and Chinese, and the traps."""

from __future__ import annotations

import pytest

from medvl.eval.extract import RULES, Extraction, extract_choice, extract_tag

MRI = {"A": "Hemorrhage", "B": "Acute infarct", "C": "Abscess formation", "D": "Chronic infarct"}
PET = {"A": "A:Diffuse uptake pattern", "B": "B:Focal uptake pattern", "C": "C:Breast tissue"}
TISSUE = {"A": "Adipose tissue", "B": "Breast tissue", "C": "Muscle", "D": "Skin"}
MASS = {"A": "Large mass in the liver", "B": "Cyst", "C": "Normal liver", "D": "Abscess"}
FIVE = {"A": "CT", "B": "MRI", "C": "X-ray", "D": "Ultrasound", "E": "PET"}
ZH = {"A": "肺炎", "B": "气胸", "C": "胸腔积液", "D": "正常"}
YES_NO = {"A": "Yes", "B": "No"}

# (model output, options, expected letter, expected rule)
CASES = [
    # answer_tag: MedVLM-R1 / Med-R1 style
    ("<think>The lesion is hypodense.</think><answer>D</answer>", MRI, "D", "answer_tag"),
    (
        "<think>\nOption A: hemorrhage, unlikely.\nB is acute, C no.\n</think><answer>B</answer>",
        MRI,
        "B",
        "answer_tag",
    ),
    (
        "<think>An axial MRI; A) Hemorrhage and C) Abscess do not fit.</think>\n<answer>D</answer>",
        MRI,
        "D",
        "answer_tag",
    ),
    ("<answer> C </answer>", MRI, "C", "answer_tag"),
    ("<answer>D) Chronic infarct</answer>", MRI, "D", "answer_tag"),
    ("<answer>Chronic infarct</answer>", MRI, "D", "answer_tag"),
    ("<answer>b</answer>", MRI, "B", "answer_tag"),
    ("<Answer>C</Answer>", MRI, "C", "answer_tag"),
    ("<think>hmm</think><answer>The answer is C</answer>", MRI, "C", "answer_tag"),
    ("<think>Looks like B.</think><answer>B", MRI, "B", "answer_tag"),
    ("<answer>A</answer> wait, no. <answer>C</answer>", MRI, "C", "answer_tag"),
    ("<answer>\\boxed{A}</answer>", MRI, "A", "answer_tag"),
    ("<answer>chronic infarction</answer>", MRI, "D", "similarity"),
    ("<think>The answer is B.</think>", MRI, "B", "phrase"),
    ("<think>Maybe A, maybe C.</think> B", MRI, "B", "lone_letter"),
    ("<think>Maybe A, or C?</think>", MRI, None, "unparsed"),
    ("<think>I think it's A</think>", MRI, "A", "phrase"),
    ("<answer></answer>", MRI, None, "unparsed"),
    # boxed
    ("\\boxed{B}", MRI, "B", "boxed"),
    ("So the final answer is $\\boxed{\\text{C}}$.", MRI, "C", "boxed"),
    ("\\boxed{Chronic infarct}", MRI, "D", "boxed"),
    ("The answer is A... no: \\boxed{D}", MRI, "D", "boxed"),
    # phrase (English)
    ("The answer is B.", MRI, "B", "phrase"),
    ("Answer: (C)", MRI, "C", "phrase"),
    ("The correct option is D because the signal is low.", MRI, "D", "phrase"),
    ("Option B is correct.", MRI, "B", "phrase"),
    ("answer: **E**", FIVE, "E", "phrase"),
    ("The answer is A.", MRI, "A", "phrase"),
    ("The answer is A because the lesion is hyperdense.", MRI, "A", "phrase"),
    ("Answer: A large mass in the liver", MASS, "A", "phrase"),
    ("The answer is (d)", MRI, "D", "phrase"),
    ("the answer is b", MRI, "B", "phrase"),
    ("The correct answer is: B) Acute infarct", MRI, "B", "phrase"),
    ("I choose C.", MRI, "C", "phrase"),
    ("The answer is B, not A.", MRI, "B", "phrase"),
    ("Option A is wrong, so the final answer is C.", MRI, "C", "phrase"),
    ("Based on the image, the answer is most likely C.", MRI, "C", "phrase"),
    ("**Answer:** B\n\nExplanation: Option A is incorrect.", MRI, "B", "phrase"),
    ("Option A is not correct. So D is the correct answer.", MRI, "D", "phrase"),
    ("A is correct.", MRI, "A", "phrase"),
    ("C is the most likely diagnosis.", MRI, "C", "phrase"),
    ("The answer is not B, it is C.", MRI, "C", "phrase"),
    ("It's D.", MRI, "D", "phrase"),
    ("This is B-mode ultrasound.", MRI, None, "unparsed"),
    ("It is a hemorrhage.", MRI, "A", "option_text"),
    ("Hepatitis B is the right diagnosis here.", MRI, None, "unparsed"),
    # phrase (Chinese)
    ("答案是B", MRI, "B", "phrase"),
    ("答案：C", MRI, "C", "phrase"),
    ("答案是：C", MRI, "C", "phrase"),
    ("选B", MRI, "B", "phrase"),
    ("正确答案为D。", MRI, "D", "phrase"),
    ("我认为答案应该是A，因为病灶呈高密度。", MRI, "A", "phrase"),
    ("根据影像表现，选择C。", MRI, "C", "phrase"),
    ("答案是 C 胸腔积液", ZH, "C", "phrase"),
    ("B选项正确。", MRI, "B", "phrase"),
    # lone_letter
    ("B", MRI, "B", "lone_letter"),
    ("(B)", MRI, "B", "lone_letter"),
    ("B.", MRI, "B", "lone_letter"),
    ("B)", MRI, "B", "lone_letter"),
    ("**B**", MRI, "B", "lone_letter"),
    ("b", MRI, "B", "lone_letter"),
    (" \n C \n", MRI, "C", "lone_letter"),
    ("Option C", MRI, "C", "lone_letter"),
    ("B) Breast tissue", TISSUE, "B", "lone_letter"),
    ("A. Hemorrhage", MRI, "A", "lone_letter"),
    ("D: Chronic infarct", MRI, "D", "lone_letter"),
    ("A Hemorrhage", MRI, "A", "lone_letter"),
    ("B\nRestricted diffusion is typical of an acute infarct.", MRI, "B", "lone_letter"),
    ("Let me think step by step.\nOption A would be bright.\nD", MRI, "D", "lone_letter"),
    ("F", None, "F", "lone_letter"),
    # option_text
    ("Chronic infarct", MRI, "D", "option_text"),
    ("It is an acute infarct.", MRI, "B", "option_text"),
    (
        "Based on the findings, the most likely diagnosis is chronic infarct (D).",
        MRI,
        "D",
        "option_text",
    ),
    ("A large hemorrhage is present.", MRI, "A", "option_text"),
    ("Focal uptake pattern", PET, "B", "option_text"),
    ("The image shows a focal uptake pattern in the breast.", PET, "B", "option_text"),
    ("图像显示气胸。", ZH, "B", "option_text"),
    ("Yes", YES_NO, "A", "option_text"),
    ("No.", YES_NO, "B", "option_text"),
    ("No, it looks normal.", {"A": "Normal", "B": "No"}, None, "unparsed"),
    ("Normal", {"A": "Normal", "B": "No"}, "A", "option_text"),
    # similarity
    ("Chronic infract", MRI, "D", "similarity"),
    ("Hemorrhagic", MRI, "A", "similarity"),
    # unparsed: never a guess
    ("", MRI, None, "unparsed"),
    ("Answer: A large mass is seen in the liver.", MRI, None, "unparsed"),
    ("A large mass is seen.", MRI, None, "unparsed"),
    ("The answer is B or C.", MRI, None, "unparsed"),
    ("A or B", MRI, None, "unparsed"),
    ("Both A and C are plausible.", MRI, None, "unparsed"),
    ("C\nOn reflection, though,\nD", MRI, None, "unparsed"),
    ("This is a chronic infarct rather than an acute infarct.", MRI, None, "unparsed"),
    ("I cannot determine the answer from this image.", MRI, None, "unparsed"),
    ("E", MRI, None, "unparsed"),
    ("Normal", YES_NO, None, "unparsed"),
    ("答案是B和C", MRI, None, "unparsed"),
    ("A: Hemorrhage. B: Acute infarct.", MRI, None, "unparsed"),
    ("(A) Hemorrhage, (B) Acute infarct", MRI, None, "unparsed"),
    ("Infarct", MRI, None, "unparsed"),
]


@pytest.mark.parametrize(("text", "options", "letter", "rule"), CASES)
def test_extract_choice_table(text, options, letter, rule):
    assert extract_choice(text, options) == Extraction(letter, rule)


def test_the_table_is_large_and_covers_every_rule():
    assert len(CASES) >= 60
    assert {rule for *_, rule in CASES} == set(RULES)


def test_empty_options_dict_means_no_options():
    assert extract_choice("C", {}) == Extraction("C", "lone_letter")
    assert extract_choice("C", {}, letters="AB") == Extraction(None, "unparsed")


def test_similarity_threshold_is_respected():
    assert extract_choice("Hemorrhagic", MRI, similarity_threshold=0.95).letter is None


def test_extraction_is_frozen():
    with pytest.raises(AttributeError):
        extract_choice("B", MRI).letter = "C"  # type: ignore[misc]


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("<think>x</think><answer> B </answer>", "B"),
        ("<answer>A</answer><answer>C</answer>", "C"),
        ("<ANSWER>\nmulti\nline\n</ANSWER>", "multi\nline"),
        ("<answer>unclosed", "unclosed"),
        ("no tag here", None),
        ("", None),
    ],
)
def test_extract_tag(text, expected):
    assert extract_tag(text) == expected


def test_extract_tag_other_tag():
    assert extract_tag("<think>why</think><answer>B</answer>", tag="think") == "why"
