"""The site's bulk upload: one request per file, each with its own result; the same service as
`manage.py import_photos`."""

import io
from unittest import mock

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile
from django.core.management import call_command

from labeling import labelling, services
from labeling.models import Photo
from tests.factories import LabelFactory, jpeg_bytes


pytestmark = pytest.mark.usefixtures("sent_predictions")


@pytest.fixture
def labels(db):
    return {name: LabelFactory(name=name) for name in ("monstera", "spider_plant")}


def upload(data, name="plant.jpg", label=None):
    body = {"image": SimpleUploadedFile(name, data, content_type="image/jpeg")}
    if label is not None:
        body["label"] = label
    return body


def test_a_labelled_file_is_accepted_as_an_import(labels, staff, api_for):
    response = api_for(staff).post("/api/v1/imports/", upload(jpeg_bytes(), label="monstera"), format="multipart")

    assert response.status_code == 201, response.content
    body = response.json()
    assert (body["result"], body["reason"]) == ("accepted", "")
    photo = Photo.objects.get(id=body["photo"]["id"])
    assert (photo.status, photo.final_label.name, photo.label_source, photo.owner) == (
        "final", "monstera", "import", staff)
    assert body["photo"]["final_label"] == "monstera"


def test_the_same_file_again_is_a_duplicate_of_the_first(labels, staff, api_for):
    data = jpeg_bytes(colour=(1, 2, 3))
    first = api_for(staff).post("/api/v1/imports/", upload(data, label="monstera"), format="multipart").json()

    again = api_for(staff).post("/api/v1/imports/", upload(data, name="copy.jpg", label="spider_plant"),
                                format="multipart")

    assert again.status_code == 200
    assert again.json()["result"] == "duplicate"
    assert again.json()["reason"] == "duplicate of a photo already stored"
    assert again.json()["photo"]["id"] == first["photo"]["id"]
    assert Photo.objects.count() == 1


def test_a_bad_file_is_refused_with_its_reason(labels, staff, api_for, settings):
    client = api_for(staff)

    not_an_image = client.post("/api/v1/imports/", upload(b"<html>hello</html>", name="x.jpg", label="monstera"),
                               format="multipart")
    settings.UPLOAD_MAX_BYTES = 1000
    too_big = client.post("/api/v1/imports/", upload(jpeg_bytes(size=(400, 400)) + b"\0" * 2000, label="monstera"),
                          format="multipart")

    assert not_an_image.status_code == 400
    assert not_an_image.json() == {"result": "refused", "photo": None, "reason":
                                   "Unsupported file type: only JPEG, PNG and WebP images are accepted."}
    assert too_big.status_code == 400 and too_big.json()["result"] == "refused"
    assert too_big.json()["reason"].startswith("File too large (max ")
    assert not Photo.objects.exists()


def test_without_a_label_the_model_predicts_the_photo(labels, staff, api_for, sent_predictions,
                                                      django_capture_on_commit_callbacks):
    with django_capture_on_commit_callbacks(execute=True):
        response = api_for(staff).post("/api/v1/imports/", upload(jpeg_bytes()), format="multipart")

    assert response.status_code == 201
    photo = Photo.objects.get()
    assert (photo.status, photo.final_label) == ("queued", None)
    sent_predictions.assert_called_once_with(photo.id)
    # Still checked for duplicates.
    again = api_for(staff).post("/api/v1/imports/", upload(jpeg_bytes(), label=""), format="multipart")
    assert again.json()["result"] == "duplicate"


def test_a_retired_or_unknown_label_is_a_400(labels, staff, api_for):
    labels["monstera"].retired = True
    labels["monstera"].save()

    for name in ("monstera", "cactus"):
        response = api_for(staff).post("/api/v1/imports/", upload(jpeg_bytes(), label=name), format="multipart")
        assert response.status_code == 400
        assert "Unknown or retired label" in response.json()["label"][0]
    assert not Photo.objects.exists()


def test_one_bad_file_does_not_stop_the_others(labels, staff, api_for):
    client = api_for(staff)
    files = [jpeg_bytes(colour=(10, 10, 10)), b"garbage", jpeg_bytes(colour=(10, 10, 10)), jpeg_bytes(colour=(9, 9, 9))]

    results = [client.post("/api/v1/imports/", upload(data, label="monstera"), format="multipart").json()["result"]
               for data in files]

    assert results == ["accepted", "refused", "duplicate", "accepted"]
    assert Photo.objects.count() == 2


def test_the_site_and_the_command_share_one_service(labels, staff, api_for, tmp_path):
    assert labelling.photo_import_one is services.photo_import_one
    folder = tmp_path / "import" / "spider_plant"
    folder.mkdir(parents=True)
    (folder / "a.jpg").write_bytes(jpeg_bytes(colour=(50, 60, 70)))

    with mock.patch("labeling.services.photo_import_one", wraps=services.photo_import_one) as command_spy:
        call_command("import_photos", str(tmp_path / "import"), owner="staff", stdout=io.StringIO())
    with mock.patch("labeling.labelling.photo_import_one", wraps=services.photo_import_one) as site_spy:
        response = api_for(staff).post("/api/v1/imports/", upload(jpeg_bytes(colour=(50, 60, 70)), label="monstera"),
                                       format="multipart")

    assert command_spy.call_count == 1 and site_spy.call_count == 1
    assert response.json()["result"] == "duplicate"  # the command's photo, found by the site's upload


def test_the_bulk_upload_page(labels, staff, client):
    labels["spider_plant"].retired = True
    labels["spider_plant"].save()
    client.force_login(staff)

    page = client.get("/import/").content.decode()

    assert 'id="bulk-files"' in page and "multiple" in page
    assert 'data-api="/api/v1/imports/"' in page
    assert "Let the model predict" in page
    assert '<option value="monstera">' in page and "spider_plant" not in page
