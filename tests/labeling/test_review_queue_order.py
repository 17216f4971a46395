"""The review queue ordered by uncertainty or age and filtered by the model's top label, in the
API and on the page (whose keyboard use is driven in tests/e2e/test_review_browser.py)."""

from datetime import timedelta

import pytest
from django.test import Client
from django.utils import timezone

from labeling.models import Photo
from tests.factories import LabelFactory, PhotoFactory, PredictionFactory

QUEUE = "/api/v1/review-queue/"


@pytest.fixture
def queue(db):
    """Photos awaiting review: margins and ages chosen so that each ordering differs."""
    monstera, spider = LabelFactory(name="monstera"), LabelFactory(name="spider_plant")
    LabelFactory(name="dieffenbachia")  # a label no prediction has
    now = timezone.now()
    return {
        "sure_old": PredictionFactory(label=monstera, margin=0.7, photo__uploaded_at=now - timedelta(hours=3)).photo,
        "unsure_new": PredictionFactory(label=spider, margin=0.05, photo__uploaded_at=now).photo,
        "middle": PredictionFactory(label=monstera, margin=0.3, photo__uploaded_at=now - timedelta(hours=1)).photo,
        "no_prediction": PhotoFactory(status=Photo.Status.NEEDS_REVIEW, uploaded_at=now - timedelta(hours=2)),
    }


def ids(response):
    assert response.status_code == 200, response.content
    return [item["id"] for item in response.json()["results"]]


def names(queue, *keys):
    return [queue[k].id for k in keys]


def test_uncertainty_puts_the_smallest_margin_first_after_photos_without_a_prediction(api_for, expert, queue):
    response = api_for(expert).get(QUEUE, {"ordering": "uncertainty"})

    assert ids(response) == names(queue, "no_prediction", "unsure_new", "middle", "sure_old")


def test_uncertainty_puts_unfamiliar_photos_before_the_small_margins_however_sure_the_model_was(
        api_for, expert, queue):
    from labeling.models import Prediction

    Prediction.objects.filter(photo=queue["sure_old"]).update(familiarity=0.3, familiarity_cutoff=0.6)
    Prediction.objects.filter(photo=queue["middle"]).update(familiarity=0.9, familiarity_cutoff=0.6)

    response = api_for(expert).get(QUEUE, {"ordering": "uncertainty"})

    assert ids(response) == names(queue, "no_prediction", "sure_old", "unsure_new", "middle")


def test_uncertainty_is_the_default(api_for, expert, queue):
    client = api_for(expert)

    assert ids(client.get(QUEUE)) == ids(client.get(QUEUE, {"ordering": "uncertainty"}))


def test_age_puts_the_oldest_first(api_for, expert, queue):
    response = api_for(expert).get(QUEUE, {"ordering": "age"})

    assert ids(response) == names(queue, "sure_old", "no_prediction", "middle", "unsure_new")


def test_the_label_filter_keeps_the_photos_the_model_gave_that_label(api_for, expert, queue):
    client = api_for(expert)

    assert ids(client.get(QUEUE, {"label": "monstera"})) == names(queue, "middle", "sure_old")
    assert ids(client.get(QUEUE, {"label": "monstera", "ordering": "age"})) == names(queue, "sure_old", "middle")
    assert ids(client.get(QUEUE, {"label": "spider_plant"})) == names(queue, "unsure_new")
    assert ids(client.get(QUEUE, {"label": "dieffenbachia"})) == []


@pytest.mark.parametrize("label", ["no_such_plant", "MONSTERA", "monstera,spider_plant", "%", "x" * 65])
def test_a_label_that_is_not_a_label_name_is_400(api_for, expert, queue, label):
    response = api_for(expert).get(QUEUE, {"label": label})

    assert response.status_code == 400
    assert list(response.json()) == ["label"]


def test_an_empty_label_counts_as_not_given(api_for, expert, queue):
    client = api_for(expert)

    assert ids(client.get(f"{QUEUE}?label=")) == ids(client.get(QUEUE))


@pytest.mark.parametrize("ordering", ["margin_desc", "-age", "uncertainty,age", "owner__password"])
def test_an_ordering_outside_the_allow_list_is_400_naming_the_allowed_ones(api_for, expert, queue, ordering):
    response = api_for(expert).get(QUEUE, {"ordering": ordering})

    assert response.status_code == 400
    assert "use one of uncertainty, age" in response.json()["ordering"][0]


def test_queue_items_say_why_they_are_there(api_for, expert, queue):
    Photo.objects.filter(id=queue["sure_old"].id).update(review_kind=Photo.ReviewKind.AUDIT)

    items = {item["id"]: item for item in api_for(expert).get(QUEUE).json()["results"]}

    assert items[queue["sure_old"].id]["review_kind"] == "audit"
    assert items[queue["sure_old"].id]["claimed_by"] is None


# --- the page -----------------------------------------------------------------


@pytest.fixture
def expert_page(expert):
    client = Client()
    client.force_login(expert)
    return client


def order_on_page(html, queue):
    positions = {key: html.find(f'href="/review/{photo.id}/"') for key, photo in queue.items()}
    return [key for key, at in sorted(positions.items(), key=lambda kv: kv[1]) if at >= 0]


def test_the_page_orders_and_filters_like_the_api(expert_page, queue):
    by_age = expert_page.get("/review/", {"ordering": "age"}).content.decode()
    monstera = expert_page.get("/review/", {"ordering": "uncertainty", "label": "monstera"}).content.decode()

    assert order_on_page(by_age, queue) == ["sure_old", "no_prediction", "middle", "unsure_new"]
    assert "4 waiting, oldest first" in by_age
    assert order_on_page(monstera, queue) == ["middle", "sure_old"]
    assert "2 waiting, most uncertain first, model's guess monstera" in monstera


def test_the_page_refuses_an_unknown_ordering_or_label_with_a_message(expert_page, queue):
    response = expert_page.get("/review/", {"ordering": "owner__password", "label": "nope"})

    assert response.status_code == 400
    html = response.content.decode()
    assert "is not an allowed ordering" in html and "is not the name of a label" in html
    assert order_on_page(html, queue) == ["no_prediction", "unsure_new", "middle", "sure_old"]  # the default


def test_the_page_has_a_start_reviewing_button_that_keeps_the_view(expert_page, queue):
    html = expert_page.get("/review/", {"ordering": "age", "label": "monstera"}).content.decode()

    assert 'id="start-reviewing" data-key="s"' in html
    assert '<input type="hidden" name="ordering" value="age">' in html
    assert '<input type="hidden" name="label" value="monstera">' in html
    response = expert_page.post("/review/claim-next/", {"ordering": "age", "label": "monstera"})
    assert response["Location"] == f"/review/{queue['sure_old'].id}/"


def test_start_reviewing_is_disabled_when_the_queue_is_empty(expert_page, db):
    html = expert_page.get("/review/").content.decode()

    assert "Nothing to review." in html
    assert 'id="start-reviewing" data-key="s" disabled' in html


def test_start_reviewing_refuses_an_unknown_ordering(expert_page, queue):
    response = expert_page.post("/review/claim-next/", {"ordering": "owner__password"}, follow=True)

    assert "is not an allowed ordering" in response.content.decode()
    assert not Photo.objects.filter(claimed_by__isnull=False).exists()


def test_the_review_page_keeps_its_keys_and_a_next_link(expert_page, queue):
    html = expert_page.get(f"/review/{queue['middle'].id}/").content.decode()

    for key in ("1", "2", "3", "x"):
        assert f'data-key="{key}"' in html
    assert f'<a href="/review/{queue["no_prediction"].id}/" id="next-photo">Skip to next (n)</a>' in html
