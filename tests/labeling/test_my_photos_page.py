"""The home page lists all of one's photos, fifty a page, newest first, and can show only the
photos in one state (the failed ones to retry, say)."""

import re
from datetime import timedelta

import pytest
from django.test import Client
from django.utils import timezone

from labeling.models import Photo
from tests.factories import PhotoFactory


def _page(user, query=""):
    client = Client()
    client.force_login(user)
    response = client.get(f"/{query}")
    assert response.status_code == 200
    return response.content.decode()


def _ids(html):
    return [int(i) for i in re.findall(r'class="photo-card" data-photo-id="(\d+)"', html)]


@pytest.fixture
def many_photos(member):
    """120 photos of the member's, uploaded a minute apart; every tenth failed."""
    start = timezone.now() - timedelta(days=1)
    photos = [PhotoFactory(owner=member, status=Photo.Status.FAILED if n % 10 == 0 else Photo.Status.FINAL)
              for n in range(120)]
    for n, photo in enumerate(photos):
        Photo.objects.filter(id=photo.id).update(uploaded_at=start + timedelta(minutes=n))
    return photos


def test_every_photo_is_reachable_fifty_a_page_newest_first(member, many_photos):
    first, second, third = _page(member), _page(member, "?page=2"), _page(member, "?page=3")

    newest_first = [p.id for p in reversed(many_photos)]
    assert _ids(first) + _ids(second) + _ids(third) == newest_first
    assert len(_ids(first)) == 50 and len(_ids(third)) == 20
    assert "120 photos, page 1 of 3" in first
    assert 'href="?page=2" rel="next">Older photos' in first and 'rel="prev"' not in first
    assert 'href="?page=1" rel="prev">Newer photos' in second and 'href="?page=3" rel="next"' in second


def test_the_page_shows_only_the_photos_in_the_state_asked_for(member, many_photos, other_member):
    PhotoFactory(owner=other_member, status=Photo.Status.FAILED)

    failed = _page(member, "?status=failed")

    assert _ids(failed) == [p.id for p in reversed(many_photos) if p.status == Photo.Status.FAILED]
    assert "12 photos" in failed
    assert '<option value="failed" selected>failed</option>' in failed
    assert "No photos in this state." in _page(member, "?status=rejected")


def test_a_page_out_of_range_or_a_state_that_does_not_exist_shows_a_page_not_an_error(member, many_photos):
    assert _ids(_page(member, "?page=99")) == _ids(_page(member, "?page=3"))
    assert _ids(_page(member, "?page=x")) == _ids(_page(member))
    assert _ids(_page(member, "?status=lost")) == _ids(_page(member))


def test_the_pages_of_a_state_keep_it_in_their_links(member):
    for _ in range(51):
        PhotoFactory(owner=member, status=Photo.Status.FAILED)

    assert 'href="?status=failed&amp;page=2" rel="next"' in _page(member, "?status=failed")


def test_an_expert_sees_only_their_own_photos_on_their_home_page(expert, member):
    PhotoFactory(owner=member)
    mine = PhotoFactory(owner=expert)

    assert _ids(_page(expert)) == [mine.id]
