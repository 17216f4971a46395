"""The shared labelling workspace: who is served what, votes, consensus, adjudication, blindness."""

from datetime import timedelta
from unittest import mock

import pytest
from django.utils import timezone

from labeling import selectors
from labeling.labelling import LabellingConflict, label_vote, labelling_next, labelling_skip
from labeling.models import LabellingAssignment, LabelVote, Photo
from labeling.services import UnknownLabel
from tests.factories import LabelFactory, PhotoFactory, PredictionFactory, UserFactory


@pytest.fixture(autouse=True)
def no_broker():
    with mock.patch("labeling.tasks.photo_predict_task.delay"):
        yield


@pytest.fixture
def labels(db):
    return {name: LabelFactory(name=name) for name in ("monstera", "spider_plant", "dieffenbachia")}


@pytest.fixture
def ann(db):
    return UserFactory(username="ann")


@pytest.fixture
def bob(db):
    return UserFactory(username="bob")


@pytest.fixture
def cid(db):
    return UserFactory(username="cid")


def uncertain(margin=None, label="monstera", **kwargs):
    """A photo the model was unsure about (margin given) or that has no prediction (margin None)."""
    photo = PhotoFactory(status=Photo.Status.NEEDS_REVIEW, review_kind=Photo.ReviewKind.UNCERTAIN,
                         reason="The model is 55% sure, below the 80% threshold: an expert will decide.", **kwargs)
    if margin is not None:
        PredictionFactory(photo=photo, margin=margin, confidence=0.5 + margin / 2, label=LabelFactory(name=label),
                          probabilities={label: 0.5 + margin / 2, "other": 0.5 - margin / 2})
    return photo


def auto_accepted(margin=0.9, label="monstera"):
    photo = PhotoFactory(status=Photo.Status.FINAL, label_source=Photo.LabelSource.MODEL,
                         decided_by=Photo.DecidedBy.MODEL, final_label=LabelFactory(name=label))
    PredictionFactory(photo=photo, margin=margin, confidence=0.95, label=LabelFactory(name=label))
    return photo


def serve_and_vote(user, photo, answer):
    """Serve `photo` to `user` (asserting the server picks it) and record their answer."""
    served = labelling_next(user)
    assert served == photo, f"{user.username} was served {served}, expected {photo}"
    return label_vote(photo_id=photo.id, user=user, label_name=None if answer is None else answer,
                      unusable=answer is None)


# --- which photos need labels -------------------------------------------------------------


def test_photos_needing_labels_are_the_unverified_ones(labels, expert):
    waiting = uncertain(0.2)
    no_model = uncertain(None)
    model_final = auto_accepted()
    legacy_waiting = PhotoFactory(status=Photo.Status.NEEDS_REVIEW, review_kind="")
    PhotoFactory(status=Photo.Status.NEEDS_REVIEW, review_kind=Photo.ReviewKind.AUDIT)
    PhotoFactory(status=Photo.Status.NEEDS_REVIEW, review_kind=Photo.ReviewKind.ADJUDICATION)
    PhotoFactory(status=Photo.Status.QUEUED)
    PhotoFactory(status=Photo.Status.FAILED)
    PhotoFactory(status=Photo.Status.REJECTED)
    for source in (Photo.LabelSource.IMPORT, Photo.LabelSource.EXPERT, Photo.LabelSource.CONSENSUS,
                   Photo.LabelSource.AUDIT):
        PhotoFactory(status=Photo.Status.FINAL, label_source=source, final_label=labels["monstera"])
    excluded = auto_accepted()
    excluded.excluded_from_training = True
    excluded.save()

    assert set(selectors.photos_needing_labels()) == {waiting, no_model, model_final, legacy_waiting}


def test_the_most_informative_photo_is_served_first(labels, ann):
    sure = uncertain(0.6)
    unsure = uncertain(0.05)
    middling = auto_accepted(margin=0.3)
    unpredicted = uncertain(None)

    order = []
    for _ in range(4):
        photo = labelling_next(ann)
        order.append(photo)
        labelling_skip(ann, photo.id, serve_next=False)

    assert order == [unpredicted, unsure, middling, sure]


def test_an_unfamiliar_photo_is_served_before_the_small_margins(labels, ann):
    from labeling.models import Prediction

    unsure = uncertain(0.05)
    unfamiliar = uncertain(0.6)
    Prediction.objects.filter(photo=unfamiliar).update(familiarity=0.3, familiarity_cutoff=0.6)

    assert labelling_next(ann) == unfamiliar
    labelling_skip(ann, unfamiliar.id, serve_next=False)
    assert labelling_next(ann) == unsure


def test_a_reload_serves_the_same_photo_again(labels, ann):
    first = uncertain(0.1)
    uncertain(0.2)

    assert labelling_next(ann) == first
    assert labelling_next(ann) == first
    assignment = LabellingAssignment.objects.get(user=ann)
    assert assignment.photo == first
    assert assignment.expires_at > timezone.now() + timedelta(seconds=250)


def test_two_labellers_are_served_different_photos_while_others_are_available(labels, ann, bob, cid):
    a, b, c = uncertain(0.1), uncertain(0.2), uncertain(0.3)

    assert labelling_next(ann) == a
    assert labelling_next(bob) == b
    assert labelling_next(cid) == c
    # Nothing free left: the fourth labeller shares a photo (the overlap allows it), best first.
    assert labelling_next(UserFactory()) == a


def test_a_lapsed_assignment_frees_the_photo(labels, ann, bob, settings):
    a, _b = uncertain(0.1), uncertain(0.2)  # a second photo that is not served first
    assert labelling_next(ann) == a
    LabellingAssignment.objects.filter(user=ann).update(expires_at=timezone.now() - timedelta(seconds=1))

    assert labelling_next(bob) == a


def test_skip_releases_the_photo_and_serves_another(labels, ann, bob):
    a, b = uncertain(0.1), uncertain(0.2)
    assert labelling_next(ann) == a

    assert labelling_skip(ann, a.id) == b
    # Released: bob gets it at once, and ann is not served it again while there is anything else.
    assert labelling_next(bob) == a
    label_vote(photo_id=b.id, user=ann, label_name="monstera")
    # Only the skipped photo is left for ann: she gets it back.
    assert labelling_next(ann) == a


def test_skipping_the_only_photo_serves_nothing_at_once(labels, ann):
    a = uncertain(0.1)
    labelling_next(ann)

    assert labelling_skip(ann, a.id) is None
    assert labelling_next(ann) == a


def test_a_labeller_is_never_served_a_photo_they_labelled(labels, ann):
    a = uncertain(0.1)
    serve_and_vote(ann, a, "monstera")

    assert labelling_next(ann) is None


def test_a_photo_claimed_by_an_expert_waits_until_others_are_labelled(labels, ann, expert):
    claimed = uncertain(0.05)
    other = uncertain(0.5)
    claimed.claimed_by = expert
    claimed.claim_expires_at = timezone.now() + timedelta(minutes=5)
    claimed.save()

    assert labelling_next(ann) == other


# --- votes and their outcome -----------------------------------------------------------------


def test_two_labellers_who_agree_give_the_photo_a_consensus_label(labels, ann, bob, expert):
    photo = uncertain(0.1)
    assert photo in selectors.review_queue()

    serve_and_vote(ann, photo, "spider_plant")
    photo.refresh_from_db()
    assert photo.status == Photo.Status.NEEDS_REVIEW  # one vote of two: nothing decided yet
    serve_and_vote(bob, photo, "spider_plant")

    photo.refresh_from_db()
    assert photo.status == Photo.Status.FINAL
    assert photo.final_label == labels["spider_plant"]
    assert (photo.label_source, photo.decided_by) == ("consensus", "consensus")
    assert photo.reviewed_by is None and photo.decided_at is not None
    assert photo.review_kind == ""
    assert photo not in selectors.review_queue()  # it left the expert queue
    assert not LabellingAssignment.objects.filter(photo=photo).exists()
    assert photo not in selectors.photos_needing_labels()


def test_consensus_overrides_the_models_auto_accepted_label(labels, ann, bob):
    photo = auto_accepted(label="monstera")

    serve_and_vote(ann, photo, "dieffenbachia")
    serve_and_vote(bob, photo, "dieffenbachia")

    photo.refresh_from_db()
    assert (photo.status, photo.final_label.name, photo.label_source) == ("final", "dieffenbachia", "consensus")


def test_two_labellers_who_disagree_send_the_photo_to_adjudication(labels, ann, bob, expert):
    photo = auto_accepted(label="monstera")

    serve_and_vote(ann, photo, "monstera")
    serve_and_vote(bob, photo, None)

    photo.refresh_from_db()
    assert photo.status == Photo.Status.NEEDS_REVIEW
    assert photo.review_kind == Photo.ReviewKind.ADJUDICATION
    assert photo.final_label is None and photo.label_source == "" and photo.decided_by == ""
    assert photo.reason == ("The 2 labellers disagreed (monstera ×1, not a plant / unusable ×1): "
                            "an expert will adjudicate.")
    assert "model" not in photo.reason
    assert photo in selectors.review_queue()
    assert photo not in selectors.photos_needing_labels()
    assert [(v.user.username, v.label.name if v.label else None) for v in selectors.labelling_votes(photo)] == [
        ("ann", "monstera"), ("bob", None)]


def test_all_saying_unusable_rejects_the_photo_by_consensus(labels, ann, bob):
    photo = uncertain(0.1)

    serve_and_vote(ann, photo, None)
    serve_and_vote(bob, photo, None)

    photo.refresh_from_db()
    assert (photo.status, photo.final_label, photo.decided_by) == ("rejected", None, "consensus")
    assert photo.reason == "2 labellers agreed: not a plant / unusable."


def test_a_third_label_is_refused_once_the_overlap_is_reached(labels, ann, bob, cid):
    photo = uncertain(0.1)
    serve_and_vote(ann, photo, "monstera")
    LabellingAssignment.objects.create(photo=photo, user=cid, expires_at=timezone.now() + timedelta(minutes=5))
    serve_and_vote(bob, photo, "spider_plant")

    with pytest.raises(LabellingConflict, match="already has its 2 labels"):
        label_vote(photo_id=photo.id, user=cid, label_name="monstera")
    assert LabelVote.objects.filter(photo=photo).count() == 2


def test_the_overlap_is_a_setting(labels, ann, bob, cid, settings):
    settings.LABELLING_OVERLAP = 3
    photo = uncertain(0.1)
    serve_and_vote(ann, photo, "monstera")
    serve_and_vote(bob, photo, "monstera")
    photo.refresh_from_db()
    assert photo.status == Photo.Status.NEEDS_REVIEW

    serve_and_vote(cid, photo, "monstera")

    photo.refresh_from_db()
    assert (photo.status, photo.label_source) == ("final", "consensus")


def test_photos_with_all_their_votes_once_the_overlap_is_lowered_are_decided_by_them(labels, ann, bob, cid,
                                                                                     settings):
    settings.LABELLING_OVERLAP = 3
    photo = uncertain(0.1)
    serve_and_vote(ann, photo, "monstera")
    serve_and_vote(bob, photo, "monstera")
    settings.LABELLING_OVERLAP = 2

    assert labelling_next(cid) is None

    photo.refresh_from_db()
    assert (photo.status, photo.final_label, photo.label_source) == ("final", labels["monstera"], "consensus")


def test_a_vote_on_a_photo_with_all_its_votes_once_the_overlap_is_lowered_lets_them_decide_it(labels, ann, bob,
                                                                                            cid, settings):
    settings.LABELLING_OVERLAP = 3
    photo = uncertain(0.1)
    assert labelling_next(cid) == photo  # served while it needed three votes
    serve_and_vote(ann, photo, "monstera")
    serve_and_vote(bob, photo, "spider_plant")
    settings.LABELLING_OVERLAP = 2

    with pytest.raises(LabellingConflict, match="already has its 2 labels"):
        label_vote(photo_id=photo.id, user=cid, label_name="monstera")

    photo.refresh_from_db()
    assert (photo.status, photo.review_kind) == ("needs_review", "adjudication")
    assert photo.reason.startswith("The 2 labellers disagreed (monstera ×1, spider_plant ×1)")
    assert LabelVote.objects.filter(photo=photo).count() == 2


def test_a_second_vote_of_the_same_labeller_is_refused(labels, ann):
    photo = uncertain(0.1)
    serve_and_vote(ann, photo, "monstera")

    with pytest.raises(LabellingConflict, match="already labelled"):
        label_vote(photo_id=photo.id, user=ann, label_name="spider_plant")


def test_a_photo_with_a_verified_label_takes_no_votes(labels, ann, expert):
    photo = uncertain(0.1)
    labelling_next(ann)
    from labeling.review import review_decide

    review_decide(photo_id=photo.id, expert=expert, label_name="monstera")

    with pytest.raises(LabellingConflict, match="no longer needs labels"):
        label_vote(photo_id=photo.id, user=ann, label_name="monstera")


def test_a_photo_that_was_not_served_takes_no_vote(labels, ann):
    photo = uncertain(0.1)

    with pytest.raises(LabellingConflict, match="not served to you"):
        label_vote(photo_id=photo.id, user=ann, label_name="monstera")


def test_unknown_and_retired_labels_are_refused(labels, ann):
    photo = uncertain(0.1)
    labelling_next(ann)
    labels["dieffenbachia"].retired = True
    labels["dieffenbachia"].save()

    with pytest.raises(UnknownLabel, match="Unknown label"):
        label_vote(photo_id=photo.id, user=ann, label_name="cactus")
    with pytest.raises(UnknownLabel, match="retired"):
        label_vote(photo_id=photo.id, user=ann, label_name="dieffenbachia")
    assert not LabelVote.objects.exists()


def test_what_the_votes_decided_is_in_the_photos_history(labels, ann, bob, expert, member, api_for, client):
    from labeling.review import review_decide

    outcomes = {}
    for name, answers in (("agreed", ("spider_plant", "spider_plant")), ("rejected", (None, None)),
                          ("disputed", ("monstera", None))):
        outcomes[name] = uncertain(0.1, owner=member)
        for user, answer in zip((ann, bob), answers):
            serve_and_vote(user, outcomes[name], answer)
    review_decide(photo_id=outcomes["disputed"].id, expert=expert, label_name="monstera")

    def history(photo):
        return [(e["what"], e["who"], e["detail"])
                for e in api_for(expert).get(f"/api/v1/photos/{photo.id}/history/").json()][2:]

    assert history(outcomes["agreed"]) == [
        ("consensus: spider_plant", "labellers", "needs_review → final; spider_plant ×2")]
    assert history(outcomes["rejected"]) == [
        ("consensus: rejected", "labellers", "needs_review → rejected; not a plant / unusable ×2")]
    assert history(outcomes["disputed"]) == [
        ("sent to adjudication", "labellers", "needs_review → needs_review; monstera ×1, not a plant / unusable ×1"),
        ("decided monstera", "expert", "needs_review → final")]
    client.force_login(member)
    assert "consensus: spider_plant" in client.get(f"/photos/{outcomes['agreed'].id}/history/").content.decode()


# --- the API -------------------------------------------------------------------------------------


def test_next_over_the_api_is_blind(labels, ann, api_for, settings):
    settings.LABELLING_SHOW_MODEL_GUESS = False
    photo = uncertain(0.1, label="monstera")
    other = UserFactory()
    LabelVote.objects.create(photo=photo, user=other, label=labels["spider_plant"])

    response = api_for(ann).get("/api/v1/labelling/next/")

    assert response.status_code == 200
    body = response.json()
    assert set(body) == {"id", "image_url", "width", "height", "synthetic", "model_guess"}
    assert body["id"] == photo.id and body["model_guess"] is None
    assert body["image_url"].endswith(f"/label/photos/{photo.id}/image")
    text = response.content.decode()
    for leak in ("monstera", "spider_plant", "margin", "confidence", "reason", "status", "final_label"):
        assert leak not in text


def test_the_model_guess_is_shown_when_the_setting_says_so(labels, ann, api_for, settings):
    settings.LABELLING_SHOW_MODEL_GUESS = True
    uncertain(0.1, label="monstera")

    body = api_for(ann).get("/api/v1/labelling/next/").json()

    assert body["model_guess"] == {"label": "monstera", "confidence": pytest.approx(0.55)}


def test_next_answers_204_when_nothing_is_left(labels, ann, api_for):
    assert api_for(ann).get("/api/v1/labelling/next/").status_code == 204


def test_labelling_over_the_api(labels, ann, bob, api_for):
    photo = uncertain(0.1)
    a, b = api_for(ann), api_for(bob)
    assert a.get("/api/v1/labelling/next/").json()["id"] == photo.id
    assert b.get("/api/v1/labelling/next/").json()["id"] == photo.id

    first = a.post(f"/api/v1/photos/{photo.id}/labels/", {"label": "monstera"}, format="json")
    again = a.post(f"/api/v1/photos/{photo.id}/labels/", {"label": "monstera"}, format="json")
    second = b.post(f"/api/v1/photos/{photo.id}/labels/", {"unusable": True}, format="json")

    assert first.status_code == 201, first.content
    assert first.json() == {"photo": photo.id, "label": "monstera", "unusable": False,
                            "created_at": first.json()["created_at"]}
    assert again.status_code == 200 and again.json() == first.json()  # sent again: stored once, as asked
    assert LabelVote.objects.filter(photo=photo, user=ann).count() == 1
    assert second.status_code == 201 and second.json()["unusable"] is True
    photo.refresh_from_db()
    assert photo.review_kind == Photo.ReviewKind.ADJUDICATION


def test_a_second_vote_with_another_answer_over_the_api_is_a_409_and_keeps_the_first(labels, ann, api_for):
    photo = uncertain(0.1)
    a = api_for(ann)
    assert a.get("/api/v1/labelling/next/").json()["id"] == photo.id
    assert a.post(f"/api/v1/photos/{photo.id}/labels/", {"label": "monstera"}, format="json").status_code == 201

    other = a.post(f"/api/v1/photos/{photo.id}/labels/", {"unusable": True}, format="json")

    assert other.status_code == 409 and other.json()["detail"] == "You have already labelled this photo."
    assert list(LabelVote.objects.filter(photo=photo).values_list("label__name", flat=True)) == ["monstera"]


def test_a_vote_over_the_api_is_checked(labels, ann, cid, api_for):
    photo = uncertain(0.1)
    client = api_for(ann)
    client.get("/api/v1/labelling/next/")

    assert client.post(f"/api/v1/photos/{photo.id}/labels/", {}, format="json").status_code == 400
    assert client.post(f"/api/v1/photos/{photo.id}/labels/", {"label": "monstera", "unusable": True},
                       format="json").status_code == 400
    unknown = client.post(f"/api/v1/photos/{photo.id}/labels/", {"label": "cactus"}, format="json")
    assert unknown.status_code == 400 and "Unknown label" in unknown.json()["label"][0]
    # A photo never served to (nor owned by) a member is not found.
    assert api_for(cid).post(f"/api/v1/photos/{photo.id}/labels/", {"label": "monstera"},
                             format="json").status_code == 404
    assert client.post("/api/v1/photos/999999/labels/", {"label": "monstera"}, format="json").status_code == 404


def test_a_third_vote_over_the_api_is_a_409(labels, ann, bob, cid, api_for):
    photo = uncertain(0.1)
    for user in (ann, bob, cid):
        LabellingAssignment.objects.create(photo=photo, user=user, expires_at=timezone.now() + timedelta(minutes=5))
    api_for(ann).post(f"/api/v1/photos/{photo.id}/labels/", {"label": "monstera"}, format="json")
    api_for(bob).post(f"/api/v1/photos/{photo.id}/labels/", {"label": "monstera"}, format="json")

    third = api_for(cid).post(f"/api/v1/photos/{photo.id}/labels/", {"label": "monstera"}, format="json")

    assert third.status_code == 409
    assert third.json()["detail"] == "This photo already has its 2 labels."


def test_skip_over_the_api(labels, ann, api_for):
    a, b = uncertain(0.1), uncertain(0.2)
    client = api_for(ann)
    assert client.get("/api/v1/labelling/next/").json()["id"] == a.id

    response = client.post("/api/v1/labelling/skip/", {"photo": a.id}, format="json")

    assert response.status_code == 200 and response.json()["id"] == b.id
    assert client.post("/api/v1/labelling/skip/", {"photo": b.id}, format="json").status_code == 200
    assert client.post("/api/v1/labelling/skip/", {}, format="json").status_code == 400


def test_skipping_the_only_photo_on_the_page_does_not_show_it_again_at_once(labels, ann, client):
    photo = uncertain(0.1)
    client.force_login(ann)
    assert f'data-photo-id="{photo.id}"' in client.get("/label/").content.decode()

    response = client.post("/label/", {"photo": photo.id, "skip": "1"})

    assert response.url == f"/label/?skipped={photo.id}"
    page = client.get(response.url).content.decode()
    assert 'id="nothing-to-label"' in page and "Back to the photo you skipped" in page
    assert f'data-photo-id="{photo.id}"' not in page
    assert f'data-photo-id="{photo.id}"' in client.get("/label/").content.decode()  # later, it comes back


def test_the_skipped_photo_of_the_page_is_read_from_plain_ascii_digits_only(labels, ann, client):
    photo = uncertain(0.1)
    client.force_login(ann)
    labelling_next(ann)
    labelling_skip(ann, photo.id, serve_next=False)
    arabic_indic = str(photo.id).translate(str.maketrans("0123456789", "٠١٢٣٤٥٦٧٨٩"))  # int() reads these

    for value in (f" {photo.id}", f"{photo.id}\n", f"+{photo.id}", f"0x{photo.id:x}", arabic_indic, "-1",
                  f"{photo.id}.0", "9" * 40, ""):
        response = client.get("/label/", {"skipped": value})
        assert response.status_code == 200, value
        assert f'data-photo-id="{photo.id}"' in response.content.decode(), value


@pytest.mark.parametrize("value", ["9" * 40, "²", "-1", ""])
def test_a_photo_id_the_page_posts_that_is_no_photo_id_says_no_photo_was_given(labels, ann, client, value):
    client.force_login(ann)

    for action in ({"skip": "1"}, {"label": "monstera"}):
        response = client.post("/label/", {"photo": value, **action}, follow=True)
        assert response.status_code == 200 and "No photo given." in response.content.decode(), (value, action)


def test_a_labeller_blind_to_the_model_is_not_served_their_own_upload_whose_guess_they_saw(labels, ann, bob,
                                                                                          settings):
    own, others = uncertain(0.1, owner=ann), uncertain(0.3, owner=bob)

    assert labelling_next(ann) == others
    assert labelling_next(bob) == own
    settings.LABELLING_SHOW_MODEL_GUESS = True  # everyone sees the guess: nothing to be blind to
    assert [p.id for p in selectors.labelling_candidates(ann, now=timezone.now())] == [own.id, others.id]


def test_a_labeller_sees_the_photo_served_to_them_and_nothing_else(labels, ann, bob, client):
    a, b = uncertain(0.1, owner=bob), uncertain(0.2, owner=bob)
    labelling_next(ann)
    client.force_login(ann)

    assert client.get(f"/label/photos/{a.id}/image").status_code == 200
    assert client.get(f"/label/photos/{b.id}/image").status_code == 404
    assert client.get(f"/media/{a.image.name}").status_code == 404  # the owner's view stays private


def test_label_examples_are_visible_to_every_labeller(labels, ann, bob, client):
    example = PhotoFactory(owner=bob, status=Photo.Status.FINAL, final_label=labels["monstera"],
                           label_source=Photo.LabelSource.EXPERT)
    labels["monstera"].examples.add(example)
    client.force_login(ann)

    assert client.get(f"/label/photos/{example.id}/image").status_code == 200
    labels["monstera"].retired = True
    labels["monstera"].save()
    assert client.get(f"/label/photos/{example.id}/image").status_code == 404


# --- the page ------------------------------------------------------------------------------------


def test_the_labelling_page_is_blind_with_a_key_per_active_label(labels, ann, client, settings):
    settings.LABELLING_SHOW_MODEL_GUESS = False
    labels["dieffenbachia"].retired = True
    labels["dieffenbachia"].save()
    example = PhotoFactory(status=Photo.Status.FINAL, final_label=labels["monstera"],
                           label_source=Photo.LabelSource.EXPERT)
    labels["monstera"].examples.add(example)
    photo = uncertain(0.1, label="spider_plant")
    LabelVote.objects.create(photo=photo, user=UserFactory(), label=labels["monstera"])
    client.force_login(ann)

    page = client.get("/label/").content.decode()

    assert f'data-photo-id="{photo.id}"' in page
    assert 'data-key="1"' in page and 'value="monstera"' in page
    assert 'data-key="2"' in page and 'value="spider_plant"' in page
    assert "dieffenbachia" not in page  # retired: no button
    assert 'data-key="x"' in page and 'data-key="s"' in page
    assert f'src="/label/photos/{example.id}/image"' in page
    assert "model-guess" not in page and "0.55" not in page and photo.reason not in page


def test_the_labelling_page_shows_the_guess_when_the_setting_says_so(labels, ann, client, settings):
    settings.LABELLING_SHOW_MODEL_GUESS = True
    uncertain(0.1, label="spider_plant")
    client.force_login(ann)

    page = client.get("/label/").content.decode()

    assert 'data-role="model-guess"' in page and "spider_plant" in page


def test_labelling_with_the_page(labels, ann, bob, client):
    a, b = uncertain(0.1), uncertain(0.2)
    client.force_login(ann)
    client.get("/label/")

    response = client.post("/label/", {"photo": a.id, "label": "monstera"}, follow=True)
    assert f"Saved: monstera for photo {a.id}." in response.content.decode()
    assert f'data-photo-id="{b.id}"' in response.content.decode()

    response = client.post("/label/", {"photo": b.id, "skip": "1"}, follow=True)
    assert f"Skipped photo {b.id}." in response.content.decode()
    assert 'id="nothing-to-label"' in response.content.decode()  # never the same photo at once
    assert f'data-photo-id="{b.id}"' in client.get("/label/").content.decode()  # then b comes back

    response = client.post("/label/", {"photo": b.id, "unusable": "1"}, follow=True)
    assert 'id="nothing-to-label"' in response.content.decode()
    assert list(LabelVote.objects.filter(user=ann).values_list("photo_id", "label__name")) == [
        (a.id, "monstera"), (b.id, None)]

    response = client.post("/label/", {"photo": b.id, "label": "monstera"}, follow=True)
    assert "Not saved: You have already labelled this photo." in response.content.decode()


def test_the_review_page_shows_every_vote_and_who_gave_it(labels, ann, bob, client, expert):
    photo = uncertain(0.1)
    serve_and_vote(ann, photo, "monstera")
    serve_and_vote(bob, photo, None)
    client.force_login(expert)

    page = client.get(f"/review/{photo.id}/").content.decode()

    assert 'id="votes"' in page
    assert 'data-labeller="ann"' in page and 'data-labeller="bob"' in page
    assert "not a plant / unusable" in page
    assert "(they disagreed)" in page


def test_an_expert_adjudicates_and_the_photo_is_final(labels, ann, bob, expert):
    from labeling.review import review_decide

    photo = uncertain(0.1)
    serve_and_vote(ann, photo, "monstera")
    serve_and_vote(bob, photo, "spider_plant")

    review_decide(photo_id=photo.id, expert=expert, label_name="spider_plant")

    photo.refresh_from_db()
    assert (photo.status, photo.final_label.name, photo.label_source, photo.reviewed_by) == (
        "final", "spider_plant", "expert", expert)
    assert photo.decisions.get().kind == Photo.ReviewKind.ADJUDICATION


def test_a_consensus_shows_on_the_owners_photo(labels, ann, bob, member, client):
    photo = uncertain(0.1, owner=member)
    serve_and_vote(ann, photo, "monstera")
    serve_and_vote(bob, photo, "monstera")
    client.force_login(member)

    page = client.get(f"/photos/{photo.id}/").content.decode()

    assert "(consensus)" in page

