import numpy as np
import pytest

from napari_pcam.core.click_scores import choose_crf, click_scores, paint_clicks, stage_warnings
from napari_pcam.core.data.points import PointAnnotations

NAMES = ("background", "cell", "dirt")


def _points(image, yx, cls):
    return PointAnnotations(np.array(image), np.array(yx, float), np.array(cls), NAMES)


def test_scores_are_class_balanced_at_the_clicks():
    labels = [np.zeros((8, 8), np.uint8)]
    labels[0][4:, 4:] = 1
    pts = _points([0, 0, 0, 0], [[0, 0], [1, 1], [2, 2], [5, 5]], [0, 0, 0, 1])
    assert click_scores(labels, pts)["balanced"] == 100.0
    pts = _points([0, 0, 0, 0], [[0, 0], [1, 1], [2, 2], [1, 7]], [0, 0, 0, 1])
    scores = click_scores(labels, pts)
    assert scores["per_class"] == {"background": 100.0, "cell": 0.0, "dirt": None}
    assert scores["balanced"] == 50.0, "three right background clicks do not hide the missed cell"
    assert scores["present"] == {"background": 1, "cell": 1, "dirt": 0} and scores["clicks"] == 4


def test_one_class_everywhere_is_named():
    pts = _points([0, 0], [[0, 0], [5, 5]], [0, 1])
    problems = stage_warnings("final", click_scores([np.ones((8, 8), np.uint8)], pts))
    assert any("labelled 'cell' only" in p for p in problems)
    assert any("'background'" in p and "appear in no image" in p for p in problems)


def test_a_clicked_class_that_is_almost_lost_is_named():
    labels = np.zeros((20, 20), np.uint8)
    labels[0, 0] = 1
    pts = _points([0] * 12, [[10, i] for i in range(12)], [0] + [1] * 11)
    problems = stage_warnings("refined", click_scores([labels], pts))
    assert problems == ["refined: class(es) 'cell' (0.0% of its clicks) are almost lost."]


def test_a_collapse_against_the_previous_stage_gives_both_numbers():
    good, bad = {"balanced": 90.0}, {"balanced": 60.0}
    base = {"per_class": {"background": 90.0}, "present": {"background": 1, "cell": 1}}
    problems = stage_warnings("refined", {**base, **bad}, ("pcam", {**base, **good}))
    assert problems == ["refined: click accuracy 60.0% is far below pcam's 90.0%."]
    assert stage_warnings("refined", {**base, "balanced": 80.0}, ("pcam", {**base, **good})) == []


def test_clicks_override_pseudo_labels_without_changing_them():
    labels = [np.zeros((9, 9), np.uint8)]
    pts = _points([0], [[4, 4]], [2])
    out = paint_clicks(labels, pts, radius=1)
    assert labels[0].max() == 0
    assert out[0][3:6, 3:6].tolist() == [[0, 2, 0], [2, 2, 2], [0, 2, 0]]
    with pytest.raises(ValueError, match="radius"):
        paint_clicks(labels, pts, radius=-1)



def _scores(per_class: dict, present: int = 3) -> dict:
    scored = [v for v in per_class.values() if v is not None]
    return {"balanced": round(float(np.mean(scored)), 2), "per_class": per_class, "clicks": 40,
            "present": {n: present for n in per_class}}


@pytest.mark.parametrize(("plain", "crf", "problem"), [
    # dsb2018 seed 0 and the default sample: a point or two lost at the clicks the network learnt, kept
    ({"background": 65.81, "nucleus": 99.12}, {"background": 64.96, "nucleus": 99.5}, None),
    ({"background": 100.0, "cell": 100.0, "fiber": 100.0, "crystal": 100.0},
     {"background": 100.0, "cell": 100.0, "fiber": 94.1, "crystal": 100.0}, None),
    # the sample's grayscale variant: classes almost lost and the score far below the network's own
    ({"background": 100.0, "cell": 100.0, "fiber": 92.0, "crystal": 94.12},
     {"background": 100.0, "cell": 3.33, "fiber": 8.0, "crystal": 17.65}, "far below DeepLabv3+'s 96.5%"),
    ({"background": 100.0, "cell": 90.0}, {"background": 100.0, "cell": 9.0}, "'cell' (9.0% of its clicks)"),
])
def test_the_crf_is_kept_unless_it_collapses_the_final_labels_at_the_clicks(plain, crf, problem):
    record = choose_crf(_scores(plain), _scores(crf))
    assert record["value"] == (problem is None) and record["configured"] is True
    assert (record["crf_score"], record["plain_score"]) == (_scores(crf)["balanced"], _scores(plain)["balanced"])
    assert (problem is None) == (record["problems"] == [])
    if problem:
        assert any(problem in m for m in record["problems"]), record["problems"]


def test_a_collapse_the_network_s_own_labels_share_does_not_turn_the_crf_off():
    plain = _scores({"background": 100.0, "cell": 5.0})  # almost lost without the CRF too
    assert choose_crf(plain, _scores({"background": 100.0, "cell": 6.0}))["value"] is True
