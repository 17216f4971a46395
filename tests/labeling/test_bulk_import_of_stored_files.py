"""The site's bulk upload of a file the site itself stored (an export, a photo it served)."""


import pytest
from django.core.files.uploadedfile import SimpleUploadedFile

from labeling.models import Photo
from tests.factories import LabelFactory, jpeg_bytes


pytestmark = pytest.mark.usefixtures("sent_predictions")


def test_uploading_the_sites_own_stored_file_is_a_duplicate_of_its_photo(db, staff, api_for):
    LabelFactory(name="monstera")
    api = api_for(staff)
    first = api.post("/api/v1/imports/", {"image": SimpleUploadedFile("a.jpg", jpeg_bytes(colour=(9, 99, 199))),
                                          "label": "monstera"}, format="multipart").json()
    photo = Photo.objects.get(id=first["photo"]["id"])
    with photo.image.open("rb") as fh:
        stored = fh.read()
    assert photo.stored_sha256 != photo.sha256  # re-encoded: the stored bytes are not the uploaded ones

    again = api.post("/api/v1/imports/", {"image": SimpleUploadedFile("b.jpg", stored), "label": "monstera"},
                     format="multipart")

    assert again.status_code == 200
    assert (again.json()["result"], again.json()["photo"]["id"]) == ("duplicate", photo.id)
    assert Photo.objects.count() == 1
