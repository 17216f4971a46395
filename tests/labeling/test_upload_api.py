"""Uploading photos: POST /api/v1/photos/ and the site's no-JavaScript upload form."""

import hashlib
import io
import re
from unittest import mock

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile
from django.db import transaction
from PIL import Image

from labeling import services
from labeling.image_checks import UNDECODABLE, UNSUPPORTED_TYPE
from labeling.models import Photo
from tests.factories import jpeg_bytes

URL = "/api/v1/photos/"
MB = 1024 * 1024
GENERATED_NAME = re.compile(r"^photos/[0-9a-f]{32}\.jpg$")


def files_under(root):
    return sorted(p for p in root.rglob("*") if p.is_file())


def upload(data, name="my-holiday-snap.jpg", content_type="image/jpeg"):
    return SimpleUploadedFile(name, data, content_type=content_type)


def encode(img, fmt, **options):
    out = io.BytesIO()
    img.save(out, fmt, **options)
    return out.getvalue()



# --- a good upload ------------------------------------------------------------


def test_a_valid_jpeg_is_stored_and_returned_as_a_queued_photo(api_for, member, media_root, sent_predictions):
    original = jpeg_bytes(size=(120, 80))

    response = api_for(member).post(URL, {"image": upload(original)}, format="multipart")

    assert response.status_code == 201
    body = response.json()
    photo = Photo.objects.get()
    assert body["id"] == photo.id
    assert body["status"] == "queued"
    assert body["prediction"] is None
    assert body["final_label"] is None
    assert body["decided_by"] is None
    assert body["reviewed_by"] is None
    assert body["decided_at"] is None
    assert body["reason"] == ""
    assert body["synthetic"] is False
    assert body["uploaded_at"]
    assert body["image_url"] == f"http://testserver/media/{photo.image.name}"
    assert photo.owner == member
    assert (photo.width, photo.height) == (120, 80)
    assert photo.sha256 == hashlib.sha256(original).hexdigest()


def test_the_file_is_stored_under_a_generated_name_that_ignores_the_client_filename(
        api_for, member, media_root, sent_predictions):
    api_for(member).post(URL, {"image": upload(jpeg_bytes(), name="../../etc/my-holiday-snap.jpg")},
                         format="multipart")

    photo = Photo.objects.get()
    assert GENERATED_NAME.match(photo.image.name)
    assert "holiday" not in photo.image.name
    stored = files_under(media_root)
    assert stored == [media_root / photo.image.name]
    assert stored[0].parent == media_root / "photos"
    with Image.open(stored[0]) as img:
        assert img.format == "JPEG"
        assert img.size == (64, 48)


def test_the_stored_name_follows_the_content_not_the_client_extension(api_for, member, media_root, sent_predictions):
    png = encode(Image.new("RGB", (10, 10), (1, 2, 3)), "PNG")

    api_for(member).post(URL, {"image": upload(png, name="plant.jpg", content_type="image/jpeg")},
                         format="multipart")

    assert re.match(r"^photos/[0-9a-f]{32}\.png$", Photo.objects.get().image.name)


def test_the_prediction_is_enqueued_only_when_the_upload_commits(
        api_for, member, sent_predictions, django_capture_on_commit_callbacks):
    with django_capture_on_commit_callbacks(execute=False) as callbacks:
        response = api_for(member).post(URL, {"image": upload(jpeg_bytes())}, format="multipart")
        assert response.status_code == 201
    assert len(callbacks) == 1
    sent_predictions.assert_not_called()  # nothing is sent before the commit

    callbacks[0]()  # what the commit runs

    sent_predictions.assert_called_once_with(response.json()["id"])


def test_a_committed_upload_enqueues_its_prediction_exactly_once(
        api_for, member, sent_predictions, django_capture_on_commit_callbacks):
    with django_capture_on_commit_callbacks(execute=True):
        response = api_for(member).post(URL, {"image": upload(jpeg_bytes())}, format="multipart")

    sent_predictions.assert_called_once_with(response.json()["id"])


def test_a_rolled_back_upload_enqueues_nothing(member, sent_predictions, django_capture_on_commit_callbacks):
    with django_capture_on_commit_callbacks(execute=True) as callbacks:
        with pytest.raises(RuntimeError):
            with transaction.atomic():
                services.photo_upload(owner=member, fileobj=io.BytesIO(jpeg_bytes()))
                raise RuntimeError("the request failed after the upload")

    assert callbacks == []
    sent_predictions.assert_not_called()
    assert not Photo.objects.exists()


def test_an_upload_whose_row_cannot_be_saved_leaves_no_file(member, media_root, sent_predictions,
                                                            django_capture_on_commit_callbacks):
    with django_capture_on_commit_callbacks(execute=True):  # what a commit would send
        with mock.patch.object(Photo, "save", side_effect=RuntimeError("database went away")):
            with pytest.raises(RuntimeError):
                services.photo_upload(owner=member, fileobj=io.BytesIO(jpeg_bytes()))

    assert files_under(media_root) == []
    sent_predictions.assert_not_called()


# --- bad uploads --------------------------------------------------------------

HTML = b"<!DOCTYPE html><html><body><script>alert(document.cookie)</script></body></html>"


def _truncated_jpeg():
    noisy = Image.effect_noise((256, 256), 64).convert("RGB")
    data = encode(noisy, "JPEG", quality=90)
    return data[: len(data) // 2]


def _too_many_bytes():
    header = jpeg_bytes()
    return header + b"\0" * (21 * MB - len(header))


def _too_many_pixels(side=10000):
    # 100 (or 400) megapixels of one bit each: a few kilobytes of PNG, a decompression bomb.
    return encode(Image.new("1", (side, side)), "PNG")


BAD_UPLOADS = {
    "html named .jpg": (lambda: HTML, "index.jpg", "image/jpeg", UNSUPPORTED_TYPE),
    "svg": (lambda: b'<svg xmlns="http://www.w3.org/2000/svg" onload="alert(1)"><rect/></svg>',
            "drawing.svg", "image/svg+xml", UNSUPPORTED_TYPE),
    "png header + html": (lambda: b"\x89PNG\r\n\x1a\n" + HTML, "fake.png", "image/png", UNDECODABLE),
    "gif": (lambda: encode(Image.new("RGB", (8, 8), (9, 9, 9)), "GIF"), "anim.gif", "image/gif",
            UNSUPPORTED_TYPE),
    "pdf": (lambda: b"%PDF-1.4\n1 0 obj << /Type /Catalog >> endobj\ntrailer\n%%EOF\n", "scan.pdf",
            "application/pdf", UNSUPPORTED_TYPE),
    "empty file": (lambda: b"", "empty.jpg", "image/jpeg", "The submitted file is empty."),
    "truncated jpeg": (_truncated_jpeg, "cut.jpg", "image/jpeg", UNDECODABLE),
    "21 MB file": (_too_many_bytes, "huge.jpg", "image/jpeg", "File too large (max 20 MB)."),
    "10000x10000 png": (_too_many_pixels, "bomb.png", "image/png", "Image too large (max 40 megapixels)."),
    "20000x20000 png": (lambda: _too_many_pixels(20000), "bomb2.png", "image/png",
                        "Image too large (max 40 megapixels)."),
    "eps": (lambda: b"%!PS-Adobe-3.0 EPSF-3.0\n%%BoundingBox: 0 0 10 10\nshowpage\n", "leaf.jpg", "image/jpeg",
            UNSUPPORTED_TYPE),
    "psd": (lambda: b"8BPS\x00\x01" + b"\x00" * 64, "layers.psd", "image/vnd.adobe.photoshop", UNSUPPORTED_TYPE),
    "fits": (lambda: b"SIMPLE  =                    T" + b" " * 2850, "sky.fits", "image/fits", UNSUPPORTED_TYPE),
}


@pytest.mark.parametrize("case", list(BAD_UPLOADS))
def test_a_bad_upload_is_400_with_the_reason_and_stores_nothing(api_for, member, media_root, sent_predictions,
                                                               django_capture_on_commit_callbacks, case):
    make, name, content_type, message = BAD_UPLOADS[case]

    with django_capture_on_commit_callbacks(execute=True):  # what a commit would send
        response = api_for(member).post(URL, {"image": upload(make(), name, content_type)}, format="multipart")

    assert response.status_code == 400
    assert response.json() == {"image": [message]}
    assert not Photo.objects.exists()
    assert files_under(media_root) == []
    sent_predictions.assert_not_called()


def test_a_request_without_the_image_field_is_400(api_for, member, media_root, sent_predictions):
    response = api_for(member).post(URL, {"picture": upload(jpeg_bytes())}, format="multipart")

    assert response.status_code == 400
    assert response.json() == {"image": ["No file was submitted."]}
    assert not Photo.objects.exists()
    assert files_under(media_root) == []


def test_an_upload_without_credentials_is_refused(api_for, db, media_root, sent_predictions):
    response = api_for(None).post(URL, {"image": upload(jpeg_bytes())}, format="multipart")

    assert response.status_code == 401
    assert response.json() == {"detail": "Authentication credentials were not provided."}
    assert not Photo.objects.exists()
    assert files_under(media_root) == []


# --- the site's upload form (no JavaScript) -----------------------------------


def test_the_upload_form_stores_the_photo_and_redirects_to_it(client, member, media_root, sent_predictions):
    client.force_login(member)

    response = client.post("/", {"image": upload(jpeg_bytes())})

    photo = Photo.objects.get()
    assert response.status_code == 302
    assert response["Location"] == f"/photos/{photo.id}/"
    assert photo.owner == member
    assert photo.status == Photo.Status.QUEUED
    assert files_under(media_root) == [media_root / photo.image.name]


def test_the_upload_form_rerenders_with_the_message_for_a_bad_file(client, member, media_root, sent_predictions):
    client.force_login(member)

    response = client.post("/", {"image": upload(HTML, "index.jpg")})

    assert response.status_code == 200
    assert response.templates[0].name == "labeling/home.html"
    assert UNSUPPORTED_TYPE in response.content.decode()
    assert 'data-role="upload-error"' in response.content.decode()
    assert not Photo.objects.exists()
    assert files_under(media_root) == []


def test_the_upload_form_without_a_file_rerenders_with_the_form_error(client, member, media_root):
    client.force_login(member)

    response = client.post("/", {})

    assert response.status_code == 200
    assert "This field is required." in response.content.decode()
    assert not Photo.objects.exists()
