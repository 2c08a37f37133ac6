import pytest
from shapely.geometry import box

from workers.ml.scoring import match_objects, review_detections, score_detections, unoutlined_detections

AREA = box(0, 0, 100, 100)


def test_perfect_and_empty():
    truth = [(box(10, 10, 20, 20), "a"), (box(30, 30, 40, 40), "a")]
    s = score_detections(truth, truth, [AREA], ["a"])
    assert s["overall"]["f1"] == 1.0 and s["overall"]["count_error"] == 0.0
    s = score_detections([], truth, [AREA], ["a"])
    assert s["overall"]["recall"] == 0.0 and s["overall"]["count_error"] == -1.0


def test_known_answer_with_iou_thresholds():
    truth = [(box(0, 0, 10, 10), "a"), (box(20, 0, 30, 10), "a"), (box(40, 0, 50, 10), "a")]
    pred = [
        (box(0, 0, 10, 10), "a"),  # IoU 1
        (box(20, 0, 30, 5.5), "a"),  # IoU 0.55
        (box(40, 0, 50, 4.5), "a"),  # IoU 0.45: matches at 0.4 only
        (box(70, 70, 80, 80), "a"),  # false positive
    ]
    s = score_detections(pred, truth, [AREA], ["a"])["overall"]
    assert s["matches"] == 2 and s["matches_iou40"] == 3
    assert s["precision"] == pytest.approx(0.5) and s["recall"] == pytest.approx(2 / 3)
    assert s["f1"] == pytest.approx(2 * 0.5 * (2 / 3) / (0.5 + 2 / 3))
    assert s["recall_iou40"] == pytest.approx(1.0)
    assert s["count_error"] == pytest.approx(1 / 3)


def test_one_to_one_matching():
    # two predictions on one object: only one can match
    assert match_objects([box(0, 0, 10, 10), box(0, 0, 10, 9)], [box(0, 0, 10, 10)], 0.5) == 1


def test_only_accuracy_areas_count_and_per_area():
    truth = [(box(10, 10, 20, 20), "a"), (box(150, 150, 160, 160), "a")]
    pred = [(box(10, 10, 20, 20), "a"), (box(300, 300, 310, 310), "a")]  # outside every area: ignored
    s = score_detections(pred, truth, [AREA, box(140, 140, 200, 200)], ["a"])
    assert s["overall"]["n_pred"] == 1 and s["overall"]["n_true"] == 2
    assert [a["recall"] for a in s["per_area"]] == [1.0, 0.0]


def test_classes_must_agree():
    truth = [(box(0, 0, 10, 10), "a")]
    s = score_detections([(box(0, 0, 10, 10), "b")], truth, [AREA], ["a", "b"])
    assert s["overall"]["matches"] == 0
    assert s["per_class"]["a"]["recall"] == 0.0 and s["per_class"]["b"]["precision"] == 0.0


def test_segmentation_pixel_scores():
    truth = [(box(0, 0, 10, 10), "a")]
    pred = [(box(5, 0, 15, 10), "a")]
    s = score_detections(pred, truth, [AREA], ["a"], "segmentation")["overall"]
    assert s["precision"] == pytest.approx(0.5) and s["recall"] == pytest.approx(0.5)
    assert s["iou"] == pytest.approx(50 / 150)


def test_review_says_which_objects_matched_which_were_false_and_which_were_missed():
    truth = [(box(0, 0, 10, 10), "a"), (box(20, 0, 30, 10), "a"), (box(40, 0, 50, 10), "b")]
    pred = [
        (box(0, 0, 10, 10), "a"),  # match
        (box(20, 0, 30, 4), "a"),  # IoU 0.4: not a match at 0.5, so a false detection and a miss
        (box(40, 0, 50, 10), "a"),  # wrong class: false detection, and the "b" object is missed
        (box(300, 300, 310, 310), "a"),  # outside every accuracy area: not reviewed
    ]
    review = review_detections(pred, truth, [AREA], ["a", "b"])
    kinds = sorted((g.bounds, c, k) for g, c, k in review)
    assert kinds == [
        ((0.0, 0.0, 10.0, 10.0), "a", "match"),
        ((20.0, 0.0, 30.0, 4.0), "a", "false_detection"),
        ((20.0, 0.0, 30.0, 10.0), "a", "miss"),
        ((40.0, 0.0, 50.0, 10.0), "a", "false_detection"),
        ((40.0, 0.0, 50.0, 10.0), "b", "miss"),
    ]
    scored = score_detections(pred, truth, [AREA], ["a", "b"])["overall"]
    assert scored["matches"] == sum(k == "match" for _, _, k in review)


def test_review_of_segmentation_is_the_area_predicted_wrongly_and_the_area_missed():
    review = review_detections([(box(5, 0, 15, 10), "a")], [(box(0, 0, 10, 10), "a")], [AREA], ["a"], "segmentation")
    assert sorted((g.bounds, k) for g, _, k in review) == [
        ((0.0, 0.0, 5.0, 10.0), "miss"),
        ((10.0, 0.0, 15.0, 10.0), "false_detection"),
    ]


def test_objects_found_in_a_training_area_without_an_outline_are_offered_for_checking():
    training = [box(0, 0, 100, 100), box(50, 0, 150, 100)]  # overlapping areas: still one flag per object
    outlines = [(box(0, 0, 10, 10), "a"), (box(20, 20, 30, 30), "b")]
    pred = [
        (box(1, 1, 10, 10), "a"),  # outlined
        (box(20, 20, 30, 30), "a"),  # outlined, as another class: not forgotten, only misclassified
        (box(60, 60, 70, 70), "a"),  # nothing drawn there: forgotten?
        (box(0, 40, 10, 50), "a"),  # nothing drawn there either
        (box(-2, 0, 21, 10), "a"),  # an outlined object merged with an unoutlined neighbour: the neighbour shows
        (box(30, 0, 33, 10), "a"),  # too small beside the outlines (30 < 0.4 x 100): left alone
        (box(300, 300, 310, 310), "a"),  # outside the training areas: not the user's business here
    ]
    found = unoutlined_detections(pred, outlines, training)
    assert sorted(g.bounds for g, _, _ in found) == [
        (0.0, 40.0, 10.0, 50.0),
        (10.0, 0.0, 21.0, 10.0),
        (60.0, 60.0, 70.0, 70.0),
    ]
    assert {k for _, _, k in found} == {"unoutlined"}
    assert unoutlined_detections(pred, outlines, []) == []


def test_the_training_area_check_reports_only_finds_mostly_inside_the_training_areas():
    """Following its advice (outline this) must put the object where training learns from it."""
    training = [box(0, 0, 100, 100)]
    pred = [
        (box(95, 40, 115, 60), "a"),  # a quarter inside: its middle lies outside the area
        (box(85, 40, 105, 60), "a"),  # three quarters inside
        (box(90, 0, 110, 20), "a"),  # half inside: not "mostly"
    ]
    found = unoutlined_detections(pred, [], training)
    assert [g.bounds for g, _, _ in found] == [(85.0, 40.0, 105.0, 60.0)]


def test_unoutlined_segmentation_is_predicted_area_outside_the_outlines_above_a_size():
    training = [box(0, 0, 100, 100)]
    outlines = [(box(0, 0, 20, 20), "field")]
    pred = [(box(0, 0, 22, 20), "field"), (box(50, 50, 70, 70), "field")]  # a sliver and a whole new field
    found = unoutlined_detections(pred, outlines, training, "segmentation")
    assert [g.bounds for g, _, _ in found] == [(50.0, 50.0, 70.0, 70.0)]
