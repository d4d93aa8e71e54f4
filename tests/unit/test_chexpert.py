"""The rule-based CheXpert labeler on literal reports, and CheXpert F1 (checked against sklearn)."""

from __future__ import annotations

import pytest

from medvl.eval.chexpert import (
    CHEXPERT_5,
    OBSERVATIONS,
    RULES_RESOURCE,
    label_report,
    load_rules,
    parse_rules,
)
from medvl.eval.metrics_report import (
    chexpert_f1,
    chexpert_record_f1,
    positive_set,
)


def _mentioned(text: str, lang: str = "en") -> dict[str, int]:
    return {o: v for o, v in label_report(text, lang).items() if v is not None}


@pytest.mark.parametrize(
    ("report", "expected"),
    [
        ("No acute cardiopulmonary process.", {"No Finding": 1}),
        (
            "Heart size is normal. No pleural effusion or pneumothorax.",
            {"No Finding": 1, "Cardiomegaly": 0, "Pleural Effusion": 0, "Pneumothorax": 0},
        ),
        (
            "Cardiomegaly with mild pulmonary edema. Small left pleural effusion.",
            {"Cardiomegaly": 1, "Edema": 1, "Pleural Effusion": 1},
        ),
        (
            "Possible right lower lobe pneumonia. No pneumothorax.",
            {"Pneumonia": -1, "Pneumothorax": 0},
        ),
        ("Pneumonia cannot be excluded.", {"Pneumonia": -1}),
        ("Cannot exclude a small left effusion.", {"Pleural Effusion": -1}),
        (
            "There is no evidence of consolidation, effusion, or pneumothorax.",
            {"No Finding": 1, "Consolidation": 0, "Pleural Effusion": 0, "Pneumothorax": 0},
        ),
        ("The lungs are free of consolidation.", {"No Finding": 1, "Consolidation": 0}),
        ("Negative for pneumothorax.", {"No Finding": 1, "Pneumothorax": 0}),
        ("Lungs are clear of edema.", {"No Finding": 1, "Edema": 0}),
        ("Chest without edema.", {"No Finding": 1, "Edema": 0}),
        (
            "Left basilar opacity may represent atelectasis or pneumonia.",
            {"Lung Opacity": 1, "Atelectasis": -1, "Pneumonia": -1},
        ),
        (
            "Findings suggest early pulmonary edema.",
            {"Edema": -1},
        ),
        ("Likely atelectasis at the bases.", {"Atelectasis": -1}),
        (
            "ET tube 4 cm above the carina. No change in the large right pleural effusion.",
            {"Support Devices": 1, "Pleural Effusion": 1},
        ),
        ("The previously seen pneumothorax has resolved.", {"No Finding": 1, "Pneumothorax": 0}),
        ("Pneumothorax is not seen.", {"No Finding": 1, "Pneumothorax": 0}),
        (
            "Lungs are clear without focal consolidation to suggest pneumonia.",
            {"No Finding": 1, "Consolidation": 0, "Pneumonia": 0},
        ),
        ("Enlarged cardiac silhouette, but no edema.", {"Cardiomegaly": 1, "Edema": 0}),
        (
            "No pneumothorax is seen and there is a large right effusion.",
            {"Pneumothorax": 0, "Pleural Effusion": 1},
        ),
        ("Small pericardial effusion.", {"No Finding": 1}),
        ("Mass effect on the trachea.", {"No Finding": 1}),
        ("Heart is not enlarged.", {"No Finding": 1, "Cardiomegaly": 0}),
        ("Atelectasis versus pneumonia.", {"Atelectasis": -1, "Pneumonia": -1}),
        ("Healed left rib fractures. Pacemaker in place.", {"Fracture": 1, "Support Devices": 1}),
        ("Pacemaker in place, otherwise normal.", {"No Finding": 1, "Support Devices": 1}),
        (
            "Widened mediastinum. A 2.5 cm nodule in the right upper lobe.",
            {"Enlarged Cardiomediastinum": 1, "Lung Lesion": 1},
        ),
        ("Apical pleural thickening.", {"Pleural Other": 1}),
        ("", {}),
    ],
)
def test_label_report_english(report, expected):
    assert _mentioned(report) == expected


@pytest.mark.parametrize(
    ("report", "expected"),
    [
        ("双肺未见明显实变，心影增大。", {"Cardiomegaly": 1, "Consolidation": 0}),
        ("右下肺斑片影，考虑肺炎。", {"Lung Opacity": 1, "Pneumonia": -1}),
        ("未见气胸及胸腔积液。", {"No Finding": 1, "Pneumothorax": 0, "Pleural Effusion": 0}),
        ("左侧胸腔积液，不除外肺不张。", {"Pleural Effusion": 1, "Atelectasis": -1}),
        ("心影不大，双肺纹理清晰。", {"No Finding": 1, "Cardiomegaly": 0}),
        ("右侧气胸已吸收。", {"No Finding": 1, "Pneumothorax": 0}),
        ("无肺水肿。可能有少量胸腔积液。", {"Edema": 0, "Pleural Effusion": -1}),
        ("心包积液。", {"No Finding": 1}),
        ("左侧肋骨骨折，起搏器置入术后。", {"Fracture": 1, "Support Devices": 1}),
    ],
)
def test_label_report_chinese(report, expected):
    assert _mentioned(report, "zh") == expected


def test_labels_cover_all_14_observations():
    labels = label_report("Cardiomegaly.")
    assert tuple(labels) == OBSERVATIONS and len(OBSERVATIONS) == 14
    assert set(CHEXPERT_5) <= set(OBSERVATIONS)


def test_rules_file_parses_and_every_observation_has_mentions():
    from importlib import resources

    table = parse_rules(resources.files("medvl.resources").joinpath(RULES_RESOURCE).read_text())
    for lang in ("en", "zh"):
        rules = load_rules(lang)
        named = {o for o, _ in rules.mentions}
        assert named == set(OBSERVATIONS) - {"No Finding"}, lang
    assert table[("en", "neg_pre", "")]
    with pytest.raises(ValueError, match="bad header"):
        parse_rules("[en mention Not An Observation]\nfoo\n")
    with pytest.raises(ValueError, match="before any"):
        parse_rules("foo\n")


def test_positive_set_uncertain_policy():
    labels = {"Edema": 1, "Pneumonia": -1, "Pneumothorax": 0, "Fracture": None}
    assert positive_set(labels) == {"Edema", "Pneumonia"}
    assert positive_set(labels, "negative") == {"Edema"}
    with pytest.raises(ValueError, match="uncertain"):
        positive_set(labels, "ignore")


PREDS = [
    "Cardiomegaly. Small left pleural effusion.",
    "No acute cardiopulmonary process.",
    "Possible pneumonia in the right lower lobe.",
    "Right pneumothorax. No effusion.",
    "Mild pulmonary edema.",
]
REFS = [
    "Cardiomegaly with pulmonary edema.",
    "Normal chest radiograph.",
    "Right lower lobe pneumonia.",
    "Small right pneumothorax and a right pleural effusion.",
    "No edema. Lungs are clear.",
]


def _binary(reports):
    return [[int(o in positive_set(label_report(r))) for o in OBSERVATIONS] for r in reports]


def test_chexpert_f1_equals_sklearn_classification_report():
    metrics = pytest.importorskip("sklearn.metrics")
    result = chexpert_f1(PREDS, REFS)
    y_true, y_pred = _binary(REFS), _binary(PREDS)
    report = metrics.classification_report(
        y_true, y_pred, target_names=list(OBSERVATIONS), output_dict=True, zero_division=0
    )
    assert result.micro_f1 == pytest.approx(report["micro avg"]["f1-score"])
    assert result.macro_f1 == pytest.approx(report["macro avg"]["f1-score"])
    for o in OBSERVATIONS:
        assert result.per_observation[o].f1 == pytest.approx(report[o]["f1-score"])
        assert result.per_observation[o].support == report[o]["support"]
    idx = [OBSERVATIONS.index(o) for o in CHEXPERT_5]
    report_5 = metrics.classification_report(
        [[row[i] for i in idx] for row in y_true],
        [[row[i] for i in idx] for row in y_pred],
        output_dict=True,
        zero_division=0,
    )
    assert result.micro_f1_5 == pytest.approx(report_5["micro avg"]["f1-score"])
    assert result.macro_f1_5 == pytest.approx(report_5["macro avg"]["f1-score"])


def test_chexpert_f1_hand_computed():
    # tp: Cardiomegaly, No Finding, Pneumonia (uncertain = present), Pneumothorax = 4
    # fp: Pleural Effusion (pair 1), Edema (pair 5) = 2; fn: Edema (1), Pleural Effusion (4),
    # No Finding (5) = 3  ->  micro F1 = 8 / (8 + 2 + 3)
    result = chexpert_f1(PREDS, REFS)
    assert result.micro_f1 == pytest.approx(8 / 13)
    assert result.n == 5
    strict = chexpert_f1(PREDS, REFS, uncertain="negative")
    # pneumonia becomes a false negative: tp 3, fp 2, fn 4 -> 6 / 12
    assert strict.micro_f1 == pytest.approx(0.5)
    assert chexpert_f1([], []).micro_f1 == 0.0
    with pytest.raises(ValueError):
        chexpert_f1(["a"], [])


@pytest.mark.parametrize(
    ("prediction", "reference", "expected"),
    [
        ("Cardiomegaly. Small left pleural effusion.", "Cardiomegaly with pulmonary edema.", 0.5),
        ("No acute process.", "Normal chest.", 1.0),
        ("", "", 1.0),
        ("", "Cardiomegaly.", 0.0),
        ("Right pneumothorax.", "No pneumothorax.", 0.0),
    ],
)
def test_chexpert_record_f1(prediction, reference, expected):
    assert chexpert_record_f1(prediction, reference) == pytest.approx(expected)


def test_metrics_table_wrappers_return_the_fields():
    from medvl.eval.metrics import METRICS

    result = chexpert_f1(PREDS, REFS)
    assert METRICS["chexpert_f1"].fn(PREDS, REFS, lang="en") == result.micro_f1
    assert METRICS["chexpert_macro_f1"].fn(PREDS, REFS) == result.macro_f1
    assert METRICS["chexpert_f1_5"].fn(PREDS, REFS) == result.micro_f1_5
    assert METRICS["chexpert_record_f1"].per_record and not METRICS["chexpert_f1"].per_record
