"""The pages' answers when something went wrong or was left out: the review queue's "next" link
and filter, late or repeated answers, uploads without JavaScript, error pages and kept values."""

import re
from datetime import timedelta
from unittest import mock

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile
from django.test import Client
from django.utils import timezone

from classifier.models import TrainingRun
from labeling import labelling, review
from labeling.models import LabellingAssignment, Photo
from tests.factories import LabelFactory, PhotoFactory, PredictionFactory, UserFactory, jpeg_bytes


def client_for(user):
    client = Client()
    client.force_login(user)
    return client


def messages_of(response):
    return [str(m) for m in response.context["messages"]]


def jpeg(name, colour):
    return SimpleUploadedFile(name, jpeg_bytes(colour=colour), "image/jpeg")


# --- 1. the review page's "Skip to next (n)" -----------------------------------------------


@pytest.mark.django_db
def test_skip_to_next_walks_through_the_queue_instead_of_back_to_the_photo_before(expert):
    a, b, c = (PredictionFactory(margin=margin, photo__sha256=f"{i:064x}").photo.pk
               for i, margin in enumerate([0.1, 0.2, 0.3]))
    page = client_for(expert)

    url, visited = f"/review/{a}/", []
    for _ in range(5):
        visited.append(url)
        url = re.search(r'href="(/review/\d+/)" id="next-photo"', page.get(url).content.decode()).group(1)

    assert visited == [f"/review/{pk}/" for pk in (a, b, c, a, b)]


# --- 2. a labeller's answer after their photo was decided without them ---------------------


@pytest.mark.django_db
def test_a_labeller_whose_photo_was_decided_meanwhile_is_told_so_and_served_the_next_one(settings):
    settings.LABELLING_OVERLAP = 2
    prediction = PredictionFactory()
    photo = prediction.photo
    late, *others = (UserFactory(username=name) for name in ("late", "quick1", "quick2"))
    page = client_for(late)
    assert f'data-photo-id="{photo.pk}"' in page.get("/label/").content.decode()
    LabellingAssignment.objects.filter(user=late).update(expires_at=timezone.now() - timedelta(seconds=1))
    for user in others:  # the lease lapsed: two others are served the photo and decide it
        assert labelling.labelling_next(user).pk == photo.pk
        labelling.label_vote(photo_id=photo.pk, user=user, label_name=prediction.label.name)

    response = page.post("/label/", {"photo": photo.pk, "label": prediction.label.name})

    assert (response.status_code, response["Location"]) == (302, "/label/")
    assert messages_of(page.get("/label/")) == [
        f"Not saved: photo {photo.pk} no longer needs your label."]


# --- 3. who decided a photo before the expert's decision arrived ---------------------------


def _open_for_review(expert):
    prediction = PredictionFactory()
    page = client_for(expert)
    assert page.get(f"/review/{prediction.photo.pk}/").status_code == 200
    return page, prediction


@pytest.mark.django_db
def test_a_review_that_loses_to_the_labellers_consensus_says_the_labellers_decided_it(expert):
    page, prediction = _open_for_review(expert)
    photo = Photo.objects.get(pk=prediction.photo.pk)
    photo.decide_by_consensus(prediction.label, reason="labellers agreed")
    photo.save()

    response = page.post(f"/review/{photo.pk}/", {"label": prediction.label.name}, follow=True)

    assert messages_of(response) == ["Not saved: This photo is no longer awaiting review (it is Final). "
                                     "The labellers agreed on it first."]


@pytest.mark.django_db
def test_a_review_that_loses_to_another_expert_names_that_expert(expert):
    page, prediction = _open_for_review(expert)
    Photo.objects.filter(pk=prediction.photo.pk).update(claim_expires_at=timezone.now() - timedelta(seconds=1))
    review.review_decide(photo_id=prediction.photo.pk, expert=UserFactory(username="quicker", expert=True),
                         reject=True)

    response = page.post(f"/review/{prediction.photo.pk}/", {"label": prediction.label.name}, follow=True)

    assert messages_of(response) == ["Not saved: This photo is no longer awaiting review (it is Rejected). "
                                     "quicker decided it first."]


# --- 4. the same label sent twice (a double click) -----------------------------------------


@pytest.mark.django_db
def test_the_same_label_sent_twice_by_a_double_click_is_saved_without_an_error():
    prediction = PredictionFactory()
    page = client_for(UserFactory(username="double"))
    page.get("/label/")
    page.post("/label/", {"photo": prediction.photo.pk, "label": prediction.label.name})
    page.cookies.pop("messages", None)  # the browser dropped the first answer's page for the second's

    response = page.post("/label/", {"photo": prediction.photo.pk, "label": prediction.label.name}, follow=True)

    assert messages_of(response) == [f"Saved: {prediction.label.name} for photo {prediction.photo.pk}."]
    assert prediction.photo.votes.count() == 1


@pytest.mark.django_db
def test_a_repeated_vote_is_refused_as_already_labelled_and_says_whether_it_is_the_same_answer():
    prediction = PredictionFactory()
    user = UserFactory(username="again")
    labelling.labelling_next(user)
    labelling.label_vote(photo_id=prediction.photo.pk, user=user, label_name=prediction.label.name)

    with pytest.raises(labelling.AlreadyLabelled) as same:
        labelling.label_vote(photo_id=prediction.photo.pk, user=user, label_name=prediction.label.name)
    with pytest.raises(labelling.AlreadyLabelled) as other:
        labelling.label_vote(photo_id=prediction.photo.pk, user=user, unusable=True)

    assert (same.value.same_answer, other.value.same_answer) == (True, False)
    assert str(other.value) == "You have already labelled this photo."


# --- 5. the review queue remembers the expert's filter -------------------------------------


@pytest.fixture
def filtered_queue(db):
    spider_plant = LabelFactory(name="spider_plant")
    PredictionFactory(photo__sha256="1" * 64)  # monstera
    PredictionFactory(photo__sha256="2" * 64)
    PredictionFactory(photo__sha256="3" * 64, label=spider_plant)


def queue_heading(response):
    return re.search(r"<small>([^<]*)</small>", response.content.decode()).group(1)


def test_back_to_the_queue_shows_the_experts_filter_not_the_default(expert, filtered_queue):
    page = client_for(expert)
    page.get("/review/", {"ordering": "age", "label": "monstera"})
    page.get(page.post("/review/claim-next/", {"ordering": "age", "label": "monstera"})["Location"])

    assert queue_heading(page.get("/review/")) == "2 waiting, oldest first, model's guess monstera"


def test_the_filter_form_takes_the_queue_back_to_the_default_view(expert, filtered_queue):
    page = client_for(expert)
    page.get("/review/", {"ordering": "age", "label": "monstera"})

    page.get("/review/", {"ordering": "uncertainty", "label": ""})  # the form sends both fields

    assert queue_heading(page.get("/review/")) == "3 waiting, most uncertain first"


# --- 6. several files uploaded without JavaScript ------------------------------------------


def test_several_files_uploaded_without_javascript_are_each_stored_or_refused_and_named(
        member, sent_predictions):
    files = [jpeg("a.jpg", (1, 2, 3)), SimpleUploadedFile("notes.jpg", b"not an image", "image/jpeg"),
             jpeg("b.jpg", (200, 2, 3))]

    response = client_for(member).post("/", {"image": files}, follow=True)

    first, second = Photo.objects.filter(owner=member).order_by("id")
    said = messages_of(response)
    assert said[0] == f"a.jpg: uploaded as photo {first.pk}."
    assert said[1].startswith("notes.jpg: ")
    assert said[2] == f"b.jpg: uploaded as photo {second.pk}."
    assert response.redirect_chain == [("/", 302)]


def test_each_file_of_a_multiple_upload_counts_against_the_upload_limit(member, settings, sent_predictions):
    settings.UPLOAD_THROTTLE_RATE = "2/min"
    files = [jpeg(f"{n}.jpg", (n, 2, 3)) for n in (1, 2, 3, 4)]

    response = client_for(member).post("/", {"image": files}, follow=True)

    assert Photo.objects.filter(owner=member).count() == 2
    assert messages_of(response)[-1].startswith("Not uploaded: 3.jpg, 4.jpg. Too many uploads: at most 2/min.")


# --- 7. the bulk upload page without JavaScript --------------------------------------------


def test_the_bulk_upload_page_says_what_to_do_without_javascript(staff):
    html = client_for(staff).get("/import/").content.decode()

    noscript = re.search(r"<noscript>(.*?)</noscript>", html, re.S).group(1)
    assert "This page needs JavaScript" in noscript
    assert 'href="/"' in noscript and "manage.py import_photos DIR" in noscript


# --- 8. a training run the queue could not take --------------------------------------------


@pytest.mark.django_db(transaction=True)  # the run is sent on commit, and failed there
def test_a_training_run_the_queue_could_not_take_is_reported_as_failed_not_queued(staff):
    page = client_for(staff)
    with mock.patch("classifier.tasks.training_run_execute.apply_async", side_effect=ConnectionError("redis down")):
        response = page.post("/training/", {"architecture": "resnet18", "image_size": 64, "epochs": 1,
                                             "batch_size": 8, "learning_rate": "0.002", "cleaning_folds": 0},
                             follow=True)

    run = TrainingRun.objects.get()
    assert run.status == TrainingRun.Status.FAILED
    [message] = response.context["messages"]
    assert (message.level_tag, str(message)) == ("error", f"Training run {run.pk} failed to start: {run.error}")


# --- 9. the 403 and 404 pages ---------------------------------------------------------------


def test_a_page_refused_to_a_member_is_the_403_page_with_that_pages_reason(member):
    page = client_for(member)

    review_page, cleaner = page.get("/review/"), page.get("/models/1/cleaner/")

    assert (review_page.status_code, cleaner.status_code) == (403, 403)
    assert [t.name for t in review_page.templates][:2] == ["403.html", "base.html"]
    assert '<p class="message error" data-role="forbidden">Only experts and staff can review photos.</p>' in (
        review_page.content.decode())
    assert "Only experts and staff can clean the training data." in cleaner.content.decode()
    assert '<a href="/">Go to the home page</a>' in cleaner.content.decode()


def test_a_staff_page_refused_to_an_expert_is_the_403_page(expert):
    response = client_for(expert).get("/training/")

    assert response.status_code == 403
    assert "Only staff can open this page." in response.content.decode()
    assert 'href="/review/"' in response.content.decode()  # the site's menu, as on every page


def test_an_unknown_page_is_the_404_page_even_without_a_database():
    response = Client().get("/no-such-page/")  # no database access is allowed in this test

    assert response.status_code == 404
    html = response.content.decode()
    assert "<title>Not found · Plantsite</title>" in html
    assert "There is nothing at <code>/no-such-page/</code>" in html and '<a href="/">Go to the home page</a>' in html


@pytest.mark.django_db
def test_a_photo_that_is_not_yours_is_the_404_page(member):
    response = client_for(member).get(f"/photos/{PhotoFactory().pk}/")

    assert response.status_code == 404
    assert "Log out member" in response.content.decode()  # the page of a logged-in member


# --- 10. the values of a refused form are kept ---------------------------------------------


def test_a_throttled_upload_without_javascript_still_lists_the_members_photos(member, settings, sent_predictions):
    settings.UPLOAD_THROTTLE_RATE = "1/min"
    page = client_for(member)
    page.post("/", {"image": jpeg("a.jpg", (5, 2, 3))})

    response = page.post("/", {"image": jpeg("b.jpg", (9, 2, 3))})

    html = response.content.decode()
    assert response.status_code == 429 and "Too many uploads" in html
    assert "No photos yet." not in html
    assert f'data-photo-id="{Photo.objects.get(owner=member).pk}"' in html


def test_a_refused_label_edit_keeps_the_admins_ticks(staff):
    label = LabelFactory(name="monstera")
    saved, ticked = (PhotoFactory(status=Photo.Status.FINAL, final_label=label, sha256=f"{i:064x}") for i in range(2))
    label.examples.set([saved])

    response = client_for(staff).post(f"/labels/{label.pk}/", {
        "action": "save", "description": "new words", "example": [ticked.pk], "example_ids": "abc"})

    boxes = dict(re.findall(r'<input type="checkbox" name="example" value="(\d+)" ?(checked)?>',
                            response.content.decode()))
    assert response.status_code == 400
    assert boxes == {str(saved.pk): "", str(ticked.pk): "checked"}


def test_a_rate_limited_login_keeps_the_page_to_return_to(settings, member):
    settings.LOGIN_MAX_FAILURES = 1
    page = Client()
    page.post("/login/", {"username": "member", "password": "wrong", "next": "/review/"})

    response = page.post("/login/", {"username": "member", "password": "wrong", "next": "/review/"})

    assert response.status_code == 429
    assert '<input type="hidden" name="next" value="/review/">' in response.content.decode()


# --- 11. what the review page and the upload hint promise ----------------------------------


def test_the_review_page_of_a_failed_photo_offers_predict_again_not_a_correction(expert):
    photo = PhotoFactory(status=Photo.Status.FAILED, reason="The model crashed.")

    html = client_for(expert).get(f"/review/{photo.pk}/").content.decode()

    assert "correction form" not in html
    assert f'<form method="post" action="/photos/{photo.pk}/retry/">' in html
    assert '<button type="submit" data-role="retry">Predict again</button>' in html


def test_the_review_page_of_a_decided_photo_points_to_its_correction_form(expert):
    photo = PhotoFactory(status=Photo.Status.REJECTED)

    html = client_for(expert).get(f"/review/{photo.pk}/").content.decode()

    assert f'Its <a href="/photos/{photo.pk}/history/">history</a> has the correction form.' in html
    assert "Predict again" not in html


def test_the_upload_hint_states_the_configured_limits(member, settings):
    settings.UPLOAD_MAX_BYTES = 5 * 1024 * 1024
    settings.UPLOAD_MAX_PIXELS = 12_500_000

    html = client_for(member).get("/").content.decode()

    assert "JPEG, PNG or WebP, up to 5 MB and 12.5 megapixels." in html
