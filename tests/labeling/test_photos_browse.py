"""/photos/: every photo on the site for experts and staff, fifty a page, by state, final label
and uploader; nobody else may open it."""

import re

import pytest
from django.test import Client

from labeling.models import Label, Photo
from tests.factories import LabelFactory, PhotoFactory, UserFactory


def _get(user, query=""):
    client = Client()
    client.force_login(user)
    return client.get(f"/photos/{query}")


def _ids(response):
    return [int(i) for i in re.findall(r'class="photo-card" data-photo-id="(\d+)"', response.content.decode())]


@pytest.fixture
def site_photos(member, other_member):
    monstera, fern = LabelFactory(name="monstera"), LabelFactory(name="fern")
    final = Photo.Status.FINAL
    return {
        "member_monstera": PhotoFactory(owner=member, status=final, final_label=monstera),
        "member_fern": PhotoFactory(owner=member, status=final, final_label=fern),
        "other_monstera": PhotoFactory(owner=other_member, status=final, final_label=monstera),
        "other_waiting": PhotoFactory(owner=other_member, status=Photo.Status.NEEDS_REVIEW),
    }


def test_an_expert_sees_every_photo_newest_first(expert, site_photos):
    response = _get(expert)

    assert response.status_code == 200
    assert _ids(response) == sorted((p.id for p in site_photos.values()), reverse=True)
    assert "4 photos" in response.content.decode()


@pytest.mark.parametrize("query, expected", [
    ("?label=monstera", ["other_monstera", "member_monstera"]),
    ("?status=needs_review", ["other_waiting"]),
    ("?owner=member", ["member_fern", "member_monstera"]),
    ("?owner=member&label=fern&status=final", ["member_fern"]),
    ("?owner=nobody", []),
])
def test_the_filters_narrow_the_list(staff, site_photos, query, expected):
    assert _ids(_get(staff, query)) == [site_photos[name].id for name in expected]


def test_a_retired_labels_photos_can_still_be_found(expert, site_photos):
    Label.objects.filter(name="fern").update(retired=True)

    assert _ids(_get(expert, "?label=fern")) == [site_photos["member_fern"].id]


def test_a_filter_value_that_does_not_exist_is_a_400_that_says_which(expert, site_photos):
    response = _get(expert, "?status=lost&label=cactus")

    assert response.status_code == 400
    page = response.content.decode()
    assert "Select a valid choice. lost is not one of the available choices." in page
    assert "Select a valid choice. cactus is not one of the available choices." in page


def test_the_pages_keep_the_filters_in_their_links(expert):
    owner = UserFactory(username="prolific")
    for _ in range(51):
        PhotoFactory(owner=owner)

    first = _get(expert, "?owner=prolific").content.decode()
    second = _get(expert, "?owner=prolific&page=2")

    assert 'href="?owner=prolific&amp;page=2" rel="next">Older photos' in first
    assert len(_ids(second)) == 1


def test_members_may_not_open_it_and_do_not_see_it_in_the_menu(member, expert):
    assert _get(member).status_code == 403
    as_member, as_expert = Client(), Client()
    as_member.force_login(member)
    as_expert.force_login(expert)
    assert 'href="/photos/"' not in as_member.get("/").content.decode()
    assert 'href="/photos/">All photos' in as_expert.get("/").content.decode()
