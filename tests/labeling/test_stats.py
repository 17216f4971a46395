"""Agreement statistics against published worked examples, and the team page and API."""

import random
from datetime import timedelta
from unittest import mock

import pytest
from django.utils import timezone

from labeling import labelling
from labeling.models import LabellingAssignment, Photo
from labeling.review import review_decide
from labeling.stats import cohen_kappa, counts_table, fleiss_category_kappas, fleiss_kappa, team_statistics
from tests.factories import LabelFactory, PhotoFactory, UserFactory

# Fleiss' kappa, worked example of Wikipedia's "Fleiss' kappa" article: 14 raters put each of
# 10 subjects into one of 5 categories. P-bar = 0.378, P-bar-e = 0.213, kappa = 0.210.
WIKIPEDIA_FLEISS = [
    [0, 0, 0, 0, 14],
    [0, 2, 6, 4, 2],
    [0, 0, 3, 5, 6],
    [0, 3, 9, 2, 0],
    [2, 2, 8, 1, 1],
    [7, 7, 0, 0, 0],
    [3, 2, 6, 3, 0],
    [2, 5, 3, 2, 2],
    [6, 5, 2, 1, 0],
    [0, 2, 2, 3, 7],
]


def pairs(yes_yes, yes_no, no_yes, no_no):
    return [("yes", "yes")] * yes_yes + [("yes", "no")] * yes_no + [("no", "yes")] * no_yes + [("no", "no")] * no_no


def test_fleiss_kappa_of_the_wikipedia_worked_example():
    assert fleiss_kappa(WIKIPEDIA_FLEISS) == pytest.approx(0.2099, abs=5e-4)


def test_cohen_kappa_of_the_wikipedia_worked_examples():
    # 50 grant proposals read by two readers: p_o = 0.7, p_e = 0.5, kappa = 0.4.
    assert cohen_kappa(pairs(20, 5, 10, 15)) == pytest.approx(0.4)
    # The same p_o = 0.60 with two different marginals: kappa 0.1304 and 0.2593.
    assert cohen_kappa(pairs(45, 15, 25, 15)) == pytest.approx(0.1304, abs=1e-4)
    assert cohen_kappa(pairs(25, 35, 5, 35)) == pytest.approx(0.2593, abs=1e-4)


def test_cohen_kappa_agrees_with_scikit_learn():
    from sklearn.metrics import cohen_kappa_score

    rng = random.Random(3)
    for _ in range(20):
        a = [rng.choice("abcd") for _ in range(60)]
        b = [x if rng.random() < 0.6 else rng.choice("abcd") for x in a]
        assert cohen_kappa(zip(a, b)) == pytest.approx(cohen_kappa_score(a, b))


def test_kappas_at_the_edges():
    assert cohen_kappa([]) is None
    assert cohen_kappa([("a", "a")] * 5) is None  # one category only: chance agreement is 1
    assert cohen_kappa([("a", "a"), ("b", "b")]) == pytest.approx(1.0)
    assert cohen_kappa([("a", "b"), ("b", "a")]) == pytest.approx(-1.0)
    assert fleiss_kappa([[2, 0], [0, 2]]) == pytest.approx(1.0)
    assert fleiss_kappa([[3, 0], [3, 0]]) is None
    with pytest.raises(ValueError, match="same number"):
        fleiss_kappa([[2, 0], [1, 2]])
    with pytest.raises(ValueError, match="at least two"):
        fleiss_kappa([[1, 0]])


def test_category_kappas_of_two_categories_equal_the_overall_kappa():
    table = [[2, 0], [1, 1], [0, 2], [2, 0], [1, 1], [2, 0]]
    overall = fleiss_kappa(table)

    assert fleiss_category_kappas(table) == [pytest.approx(overall), pytest.approx(overall)]


def test_category_kappas_average_to_the_overall_kappa_weighted_by_p_q():
    # Fleiss (1971): kappa = sum_j p_j q_j kappa_j / sum_j p_j q_j.
    kappas = fleiss_category_kappas(WIKIPEDIA_FLEISS)
    p = [sum(r[j] for r in WIKIPEDIA_FLEISS) / 140 for j in range(5)]
    weighted = sum(pj * (1 - pj) * k for pj, k in zip(p, kappas)) / sum(pj * (1 - pj) for pj in p)

    assert weighted == pytest.approx(fleiss_kappa(WIKIPEDIA_FLEISS))


def test_counts_table():
    categories, rows = counts_table([["a", None], ["b", "b"]])

    assert categories == [None, "a", "b"]
    assert rows == [[1, 1, 0], [0, 0, 2]]


def test_team_statistics():
    votes = [
        (1, "ann", "monstera"), (1, "bob", "monstera"),
        (2, "ann", "monstera"), (2, "bob", None),
        (3, "ann", "spider"), (3, "bob", "spider"),
        (4, "ann", "spider"), (4, "cid", "spider"),
        (5, "cid", "monstera"),  # one vote only: not in Fleiss
    ]
    expert = {2: "monstera", 5: "spider"}

    stats = team_statistics(votes, expert, raters=2)

    assert (stats["raters"], stats["photos"], stats["unanimous"]) == (2, 4, 3)
    _, table = counts_table([["monstera", "monstera"], ["monstera", None], ["spider", "spider"], ["spider", "spider"]])
    assert stats["fleiss_kappa"] == pytest.approx(fleiss_kappa(table))
    ann, bob, cid = stats["labellers"]
    assert (ann["labeller"], ann["labels"], ann["compared"], ann["agreement"]) == ("ann", 4, 4, 0.75)
    assert ann["kappa"] == pytest.approx(cohen_kappa([("monstera", "monstera"), ("monstera", None),
                                                      ("spider", "spider"), ("spider", "spider")]))
    assert (ann["expert_checked"], ann["accuracy"]) == (1, 1.0)
    assert (bob["expert_checked"], bob["accuracy"]) == (1, 0.0)
    assert (cid["labels"], cid["expert_checked"], cid["accuracy"]) == (2, 1, 0.0)
    by_label = {row["label"]: row for row in stats["labels"]}
    assert by_label["monstera"]["votes"] == 4 and by_label[None]["votes"] == 1
    assert (by_label["monstera"]["expert_checked"], by_label["monstera"]["accuracy"]) == (2, 0.5)
    assert [p["labellers"] for p in stats["pairs"]] == [["ann", "bob"], ["ann", "cid"]]
    assert stats["pairs"][1]["kappa"] is None  # a single shared photo in one category


# --- the team page and API ------------------------------------------------------------------


@pytest.fixture
def labelled(db, expert):
    with mock.patch("labeling.tasks.photo_predict_task.delay"):
        LabelFactory(name="monstera")
        LabelFactory(name="spider_plant")
        ann, bob = UserFactory(username="ann"), UserFactory(username="bob")
        answers = [("monstera", "monstera"), ("spider_plant", "spider_plant"), ("monstera", "spider_plant")]
        photos = []
        for a, b in answers:
            photo = PhotoFactory(status=Photo.Status.NEEDS_REVIEW, review_kind=Photo.ReviewKind.UNCERTAIN)
            for user, answer in ((ann, a), (bob, b)):
                LabellingAssignment.objects.create(photo=photo, user=user,
                                                   expires_at=timezone.now() + timedelta(minutes=5))
                labelling.label_vote(photo_id=photo.id, user=user, label_name=answer)
            photos.append(photo)
        review_decide(photo_id=photos[2].id, expert=expert, label_name="spider_plant")
    return photos


def test_the_team_stats_api(labelled, member, api_for):
    response = api_for(member).get("/api/v1/team/stats/")

    assert response.status_code == 200
    body = response.json()
    assert (body["raters"], body["photos"], body["unanimous"]) == (2, 3, 2)
    assert body["fleiss_kappa"] == pytest.approx(fleiss_kappa([[2, 0], [0, 2], [1, 1]]))
    ann = next(row for row in body["labellers"] if row["labeller"] == "ann")
    bob = next(row for row in body["labellers"] if row["labeller"] == "bob")
    assert (ann["labels"], ann["expert_checked"], ann["accuracy"]) == (3, 1, 0.0)
    assert (bob["labels"], bob["expert_checked"], bob["accuracy"]) == (3, 1, 1.0)
    assert body["pairs"] == [{"labellers": ["ann", "bob"], "photos": 3, "agreement": pytest.approx(2 / 3),
                              "kappa": pytest.approx(cohen_kappa([("monstera", "monstera"),
                                                                  ("spider_plant", "spider_plant"),
                                                                  ("monstera", "spider_plant")]))}]


def test_the_team_page(labelled, member, client):
    client.force_login(member)

    page = client.get("/team/").content.decode()

    assert 'data-labeller="ann"' in page and 'data-labeller="bob"' in page
    assert 'id="fleiss-kappa"' in page
