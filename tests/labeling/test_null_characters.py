"""A NUL character, which PostgreSQL text cannot hold, is a 400 wherever a request carries it,
never a 500 from the database's DataError."""

import io

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile
from django.urls import reverse

from labeling import services
from labeling.models import Label, LabelVote
from tests.factories import jpeg_bytes


@pytest.fixture
def member_client(client, member):
    client.force_login(member)
    return client


@pytest.mark.django_db
def test_a_media_file_name_with_a_nul_character_is_a_400(member_client):
    response = member_client.get("/media/photos/a%00b.jpg")

    assert response.status_code == 400
    assert b"NUL character" in response.content


@pytest.mark.django_db
def test_a_labelling_form_whose_label_has_a_nul_character_is_a_400_and_records_nothing(member_client, member):
    photo = services.photo_upload(owner=member, fileobj=io.BytesIO(jpeg_bytes()))
    Label.objects.create(name="rose")

    response = member_client.post(reverse("labelling"), {"photo": photo.id, "label": "ro\x00se"})

    assert response.status_code == 400
    assert not LabelVote.objects.filter(photo=photo).exists()


@pytest.mark.django_db
def test_a_cleaning_relabel_with_a_nul_character_is_a_400(client, expert, active_model):
    client.force_login(expert)

    response = client.post(reverse("model-version-clean-photo", args=[active_model.id, 1]),
                           {"action": "relabel", "label": "a\x00b"})

    assert response.status_code == 400


@pytest.mark.django_db
def test_an_api_query_parameter_with_a_nul_character_is_a_json_400(api_for, member):
    response = api_for(member).get("/api/v1/photos/", {"label": "a\x00b"})

    assert response.status_code == 400
    assert "NUL character" in response.json()["detail"]


@pytest.mark.django_db
def test_an_api_body_is_left_to_its_serializer_which_refuses_the_nul_character_itself(api_for, staff):
    response = api_for(staff).post("/api/v1/labels/", {"name": "a\x00b"}, format="json")

    assert response.status_code == 400
    assert "name" in response.json()
    assert not Label.objects.exists()


@pytest.mark.django_db
def test_an_upload_through_the_api_is_untouched(api_for, member):
    upload = SimpleUploadedFile("snap.jpg", jpeg_bytes(), content_type="image/jpeg")

    response = api_for(member).post("/api/v1/photos/", {"image": upload}, format="multipart")

    assert response.status_code == 201
