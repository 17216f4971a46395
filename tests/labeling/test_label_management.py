"""Admins manage labels: create, describe, pick examples, retire; delete only what nothing uses."""

from unittest import mock

import pytest

from labeling import labelling, selectors
from labeling.models import Label, LabelVote, Photo
from tests.factories import LabelFactory, ModelVersionFactory, PhotoFactory, PredictionFactory, UserFactory


@pytest.fixture(autouse=True)
def no_broker():
    with mock.patch("labeling.tasks.photo_predict_task.delay"):
        yield


@pytest.fixture
def monstera(db):
    return LabelFactory(name="monstera", description="Split leaves.")


def labelled_photo(label):
    return PhotoFactory(status=Photo.Status.FINAL, final_label=label, label_source=Photo.LabelSource.EXPERT)


# --- the API ----------------------------------------------------------------------------------


def test_everyone_logged_in_lists_the_labels_with_retired_ones_flagged(monstera, member, api_for):
    LabelFactory(name="old_fern", retired=True)

    response = api_for(member).get("/api/v1/labels/")

    assert response.status_code == 200
    assert [(row["name"], row["retired"]) for row in response.json()] == [("monstera", False), ("old_fern", True)]
    assert response.json()[0]["description"] == "Split leaves."


def test_staff_create_a_label_then_pick_examples_among_its_photos(monstera, staff, api_for):
    response = api_for(staff).post("/api/v1/labels/", {"name": "aloe_vera", "description": "Spiky.",
                                                      "examples": []}, format="json")

    assert response.status_code == 201, response.content
    label = Label.objects.get(name="aloe_vera")
    assert response.json()["id"] == label.id
    example = labelled_photo(label)  # only a photo with the label shows what it looks like
    assert api_for(staff).patch(f"/api/v1/labels/{label.id}/", {"examples": [example.id]},
                                format="json").status_code == 200
    assert (label.description, list(label.examples.all())) == ("Spiky.", [example])


@pytest.mark.parametrize(("body", "field"), [
    ({"name": "Aloe Vera"}, "name"),
    ({"name": "aloe-vera"}, "name"),
    ({"name": ""}, "name"),
    ({"name": "x" * 65}, "name"),
    ({"name": "aloe", "examples": [999999]}, "detail"),
    ({"name": "aloe", "examples": list(range(1, 9))}, "examples"),
])
def test_a_bad_label_is_refused_with_a_reason(monstera, staff, api_for, body, field):
    response = api_for(staff).post("/api/v1/labels/", body, format="json")

    assert response.status_code == 400
    assert field in response.json()
    assert Label.objects.count() == 1


def test_a_label_whose_name_is_taken_is_a_409_whether_it_existed_or_won_a_race(monstera, staff, api_for):
    taken = api_for(staff).post("/api/v1/labels/", {"name": "monstera"}, format="json")
    with mock.patch.object(Label.objects, "filter", return_value=Label.objects.none()):  # the check saw none
        raced = api_for(staff).post("/api/v1/labels/", {"name": "monstera"}, format="json")

    for response in (taken, raced):
        assert response.status_code == 409
        assert response.json() == {"detail": "A label named 'monstera' exists already."}
    assert Label.objects.count() == 1


def test_staff_edit_description_examples_and_retire(monstera, staff, api_for):
    one, two = labelled_photo(monstera), labelled_photo(monstera)

    response = api_for(staff).patch(f"/api/v1/labels/{monstera.id}/", {
        "description": "Holes in the leaves.", "examples": [two.id, one.id], "retired": True}, format="json")

    assert response.status_code == 200, response.content
    assert response.json()["retired"] is True
    assert sorted(response.json()["examples"]) == sorted([one.id, two.id])
    monstera.refresh_from_db()
    assert monstera.description == "Holes in the leaves." and monstera.retired is True
    assert api_for(staff).get(f"/api/v1/labels/{monstera.id}/").json()["description"] == "Holes in the leaves."


def test_a_label_cannot_be_renamed(monstera, staff, api_for):
    response = api_for(staff).patch(f"/api/v1/labels/{monstera.id}/", {"name": "monstera_deliciosa"}, format="json")

    assert response.status_code == 400
    assert "cannot be renamed" in response.json()["name"][0]
    # The same name is not a rename.
    assert api_for(staff).patch(f"/api/v1/labels/{monstera.id}/", {"name": "monstera"},
                                format="json").status_code == 200


def test_a_rejected_photo_is_not_an_example(monstera, staff, api_for):
    rejected = PhotoFactory(status=Photo.Status.REJECTED)

    response = api_for(staff).patch(f"/api/v1/labels/{monstera.id}/", {"examples": [rejected.id]}, format="json")

    assert response.status_code == 400
    assert "not a good example" in response.json()["detail"]


def test_an_unused_label_is_deleted(staff, api_for):
    label = LabelFactory(name="typo_label")
    label.examples.add(PhotoFactory())

    response = api_for(staff).delete(f"/api/v1/labels/{label.id}/")

    assert response.status_code == 204
    assert not Label.objects.filter(name="typo_label").exists()
    assert api_for(staff).delete(f"/api/v1/labels/{label.id}/").status_code == 404


@pytest.mark.parametrize("use", ["photo", "prediction", "vote", "model"])
def test_a_label_in_use_is_not_deleted_409(monstera, staff, api_for, use):
    if use == "photo":
        labelled_photo(monstera)
    elif use == "prediction":
        PredictionFactory(label=monstera)
    elif use == "vote":
        LabelVote.objects.create(photo=PhotoFactory(), user=UserFactory(), label=monstera)
    else:
        ModelVersionFactory(labels=["monstera", "spider_plant"])

    response = api_for(staff).delete(f"/api/v1/labels/{monstera.id}/")

    assert response.status_code == 409
    assert "retire it instead" in response.json()["detail"]
    assert Label.objects.filter(id=monstera.id).exists()


def test_members_and_experts_cannot_manage_labels(monstera, member, expert, api_for):
    for user in (member, expert):
        client = api_for(user)
        assert client.post("/api/v1/labels/", {"name": "fern"}, format="json").status_code == 403
        assert client.patch(f"/api/v1/labels/{monstera.id}/", {"retired": True}, format="json").status_code == 403
        assert client.delete(f"/api/v1/labels/{monstera.id}/").status_code == 403
    monstera.refresh_from_db()
    assert monstera.retired is False and not Label.objects.filter(name="fern").exists()


# --- retired labels --------------------------------------------------------------------------


def test_a_retired_label_leaves_the_buttons_but_stays_on_its_photos(monstera, expert, client):
    spider = LabelFactory(name="spider_plant")
    photo = labelled_photo(monstera)
    waiting = PredictionFactory(label=spider).photo
    labelling.label_update(label_id=monstera.id, retired=True)

    assert list(selectors.labels_all()) == [spider]
    photo.refresh_from_db()
    assert photo.final_label == monstera
    client.force_login(expert)
    review = client.get(f"/review/{waiting.id}/").content.decode()
    assert 'value="spider_plant"' in review and 'value="monstera"' not in review
    assert "monstera" in client.get(f"/photos/{photo.id}/").content.decode()


# --- the pages -------------------------------------------------------------------------------


def test_the_labels_page_lists_and_creates(monstera, staff, client):
    labelled_photo(monstera)
    client.force_login(staff)

    page = client.get("/labels/").content.decode()
    assert 'data-label="monstera"' in page

    response = client.post("/labels/", {"name": "aloe_vera", "description": "Spiky."})
    label = Label.objects.get(name="aloe_vera")
    assert response.status_code == 302 and response["Location"] == f"/labels/{label.id}/"

    bad = client.post("/labels/", {"name": "Aloe Vera!"})
    assert bad.status_code == 400
    assert "lowercase letters" in bad.content.decode()


def test_the_edit_page_picks_examples_from_the_labels_photos_and_by_id(monstera, staff, client):
    own = [labelled_photo(monstera) for _ in range(2)]
    elsewhere = labelled_photo(monstera)  # typed in by id (a photo older than the page lists)
    client.force_login(staff)

    page = client.get(f"/labels/{monstera.id}/").content.decode()
    assert all(f'name="example" value="{p.id}"' in page for p in own)

    response = client.post(f"/labels/{monstera.id}/", {"description": "Big leaves.", "example": [own[1].id],
                                                        "example_ids": f"{elsewhere.id}"})

    assert response.status_code == 302
    monstera.refresh_from_db()
    assert monstera.description == "Big leaves."
    assert sorted(p.id for p in monstera.examples.all()) == sorted([own[1].id, elsewhere.id])
    # Unticking removes an example.
    client.post(f"/labels/{monstera.id}/", {"description": "Big leaves.", "example": [elsewhere.id]})
    assert [p.id for p in monstera.examples.all()] == [elsewhere.id]
    bad = client.post(f"/labels/{monstera.id}/", {"description": "", "example_ids": "12abc"})
    assert bad.status_code == 400 and "is not a photo id" in bad.content.decode()


def test_the_edit_page_retires_and_deletes(staff, client):
    used, unused = LabelFactory(name="used"), LabelFactory(name="unused")
    labelled_photo(used)
    client.force_login(staff)

    assert "can be retired but not deleted" in client.get(f"/labels/{used.id}/").content.decode()
    client.post(f"/labels/{used.id}/", {"action": "retire"})
    used.refresh_from_db()
    assert used.retired is True
    client.post(f"/labels/{used.id}/", {"action": "unretire"})
    used.refresh_from_db()
    assert used.retired is False

    refused = client.post(f"/labels/{used.id}/", {"action": "delete"}, follow=True)
    assert "retire it instead" in refused.content.decode()
    assert Label.objects.filter(id=used.id).exists()

    deleted = client.post(f"/labels/{unused.id}/", {"action": "delete"})
    assert deleted.status_code == 302 and deleted["Location"] == "/labels/"
    assert not Label.objects.filter(id=unused.id).exists()
