"""Where the model looked: Grad-CAM (the book's chapter 18) of a photo's prediction, drawn over
the image as the model saw it, on the photo and review pages (/photos/<id>/explain.png)."""
import io
from unittest import mock

import numpy as np
import pytest
import torch
from django.test import Client
from PIL import Image

from classifier import explain
from classifier.explain import CannotExplain, grad_cam, overlay_png
from classifier.inference import model_cache
from labeling.models import Label, Photo
from tests.factories import PhotoFactory, PredictionFactory


def _two_feature_model():
    """A body that passes the image's channels on as its feature maps, and a head that scores
    label 0 by the mean of channel 0 and label 1 by the mean of channel 1 (label 2: against 0)."""
    head = torch.nn.Sequential(torch.nn.AdaptiveAvgPool2d(1), torch.nn.Flatten(), torch.nn.Linear(3, 3, bias=False))
    with torch.no_grad():
        head[2].weight.copy_(torch.tensor([[1.0, 0, 0], [0, 1.0, 0], [-1.0, 0, 0]]))
    return torch.nn.Sequential(torch.nn.Identity(), head).eval()


def _left_and_right():
    """Channel 0 lit on the left half, channel 1 on the right."""
    x = torch.zeros(1, 3, 8, 8)
    x[0, 0, :, :4] = 1.0
    x[0, 1, :, 4:] = 1.0
    return x


def test_the_map_lights_the_region_that_argued_for_the_label():
    model, x = _two_feature_model(), _left_and_right()

    left, right = grad_cam(model, x, 0), grad_cam(model, x, 1)

    assert left.shape == (8, 8)
    assert (left[:, :4] == 1.0).all() and (left[:, 4:] == 0.0).all()
    assert (right[:, 4:] == 1.0).all() and (right[:, :4] == 0.0).all()


def test_a_label_nothing_argues_for_gets_an_empty_map():
    assert (grad_cam(_two_feature_model(), _left_and_right(), 2) == 0.0).all()


def test_the_model_is_left_as_it_was():
    model = _two_feature_model()

    grad_cam(model, _left_and_right(), 0)

    assert all(p.grad is None for p in model.parameters())
    assert not any(m._forward_hooks or m._backward_hooks for m in model.modules())


def test_a_model_that_is_not_a_body_and_a_head_cannot_be_explained():
    with pytest.raises(CannotExplain, match="not a body and a head"):
        grad_cam(torch.nn.Sequential(torch.nn.Flatten()), _left_and_right(), 0)


def test_the_overlay_is_drawn_at_least_224_pixels_and_bright_where_the_map_is():
    grey = Image.new("RGB", (32, 32), (128, 128, 128))
    cam = np.zeros((4, 4))
    cam[:, :2] = 1.0

    picture = Image.open(io.BytesIO(overlay_png(grey, cam)))

    assert picture.format == "PNG" and picture.size == (224, 224)
    pixels = np.asarray(picture.convert("L"), dtype=float)
    assert pixels[:, :80].mean() > pixels[:, -80:].mean() + 40


# --- the page and the picture, with a real exported learner ------------------------


def _predicted_by(version, owner):
    monstera = Label.objects.get(name="monstera")
    probabilities = {"dieffenbachia": 0.2, "monstera": 0.5, "spider_plant": 0.3}
    photo = PhotoFactory(owner=owner, status=Photo.Status.NEEDS_REVIEW)
    PredictionFactory(photo=photo, model_version=version, label=monstera, confidence=0.5, margin=0.2,
                      probabilities=probabilities)
    return photo


@pytest.fixture
def predicted(explainable_model, member):
    """A photo the 96 px model predicted: a 3 x 3 feature grid."""
    return _predicted_by(explainable_model, member)


def _client(user):
    client = Client()
    client.force_login(user)
    return client


def test_the_uploader_and_an_expert_get_the_map_of_the_models_answer(predicted, member, expert):
    for user in (member, expert):
        response = _client(user).get(f"/photos/{predicted.id}/explain.png")

        assert response.status_code == 200
        assert response["Content-Type"] == "image/png" and response["X-Content-Type-Options"] == "nosniff"
        assert Image.open(io.BytesIO(response.content)).size == (288, 288)  # the 96 px input, drawn 3 times larger


def test_the_map_is_made_once_per_photo_version_and_label(predicted, member):
    client = _client(member)

    with mock.patch.object(explain, "grad_cam", wraps=grad_cam) as spy:
        first = client.get(f"/photos/{predicted.id}/explain.png").content
        again = client.get(f"/photos/{predicted.id}/explain.png").content
        client.get(f"/photos/{predicted.id}/explain.png?label=spider_plant")

    assert first == again
    assert [call.args[2] for call in spy.call_args_list] == [1, 2]  # monstera, then spider_plant


def test_without_the_fast_path_fastai_gives_the_same_input_and_picture(predicted, explainable_model):
    loaded = model_cache.get(explainable_model.id, explainable_model.path, explainable_model.sha256)
    fast_x, fast_picture = explain.model_input(loaded, predicted.model_input_path)
    predictor, loaded.predictor = loaded.predictor, None
    try:
        slow_x, slow_picture = explain.model_input(loaded, predicted.model_input_path)
    finally:
        loaded.predictor = predictor

    assert predictor is not None
    assert torch.allclose(fast_x, slow_x, atol=1e-4)
    assert fast_picture.size == slow_picture.size
    assert np.abs(np.asarray(fast_picture, dtype=int) - np.asarray(slow_picture, dtype=int)).max() <= 1


def test_a_label_the_version_does_not_have_is_a_400_in_plain_text(predicted, member):
    response = _client(member).get(f"/photos/{predicted.id}/explain.png?label=<b>fern</b>")

    assert response.status_code == 400
    assert response["Content-Type"].startswith("text/plain")


def test_nobody_gets_a_map_while_the_audit_hides_the_prediction(predicted, member, expert):
    predicted.review_kind = Photo.ReviewKind.AUDIT
    predicted.save()

    for user in (member, expert):
        assert _client(user).get(f"/photos/{predicted.id}/explain.png").status_code == 404
        assert 'data-role="explain"' not in _client(user).get(f"/photos/{predicted.id}/").content.decode()


def test_another_member_a_photo_without_prediction_and_a_missing_file_get_404(predicted, other_member, member):
    unpredicted = PhotoFactory(owner=member)

    assert _client(other_member).get(f"/photos/{predicted.id}/explain.png").status_code == 404
    assert _client(member).get(f"/photos/{unpredicted.id}/explain.png").status_code == 404
    predicted.image.storage.delete(predicted.image.name)
    assert _client(member).get(f"/photos/{predicted.id}/explain.png").status_code == 404


def test_the_photo_and_review_pages_offer_the_map_behind_a_closed_section(predicted, member, expert):
    photo_page = _client(member).get(f"/photos/{predicted.id}/").content.decode()
    review_page = _client(expert).get(f"/review/{predicted.id}/").content.decode()

    for page in (photo_page, review_page):
        section = page.split('<details class="explain" data-role="explain">')[1].split("</details>")[0]
        assert f'<img src="/photos/{predicted.id}/explain.png" loading="lazy"' in section
        assert "looked when it answered monstera (Grad-CAM)" in section
        assert f'href="/photos/{predicted.id}/explain.png?label=spider_plant"' in section
        assert "?label=monstera" not in section  # its own answer is the picture itself


def test_a_model_that_sees_the_image_as_one_cell_offers_no_map(active_model, member, api_for):
    photo = _predicted_by(active_model, member)  # 32 px: a 1 x 1 feature grid

    page = _client(member).get(f"/photos/{photo.id}/").content.decode()

    assert "Where the model looked cannot be shown: at 32 px" in page and "<details class=\"explain\"" not in page
    assert api_for(member).get(f"/api/v1/photos/{photo.id}/").json()["prediction"]["explain_url"] is None
    assert _client(member).get(f"/photos/{photo.id}/explain.png").status_code == 404
    loaded = model_cache.get(active_model.id, active_model.path, active_model.sha256)
    x, _ = explain.model_input(loaded, photo.model_input_path)
    with pytest.raises(CannotExplain, match="single cell"):  # what the check on the version stands for
        grad_cam(loaded.learner.model, x, 0)


def test_the_api_gives_the_maps_address_with_the_prediction(predicted, member, api_for):
    prediction = api_for(member).get(f"/api/v1/photos/{predicted.id}/").json()["prediction"]

    assert prediction["explain_url"] == f"/photos/{predicted.id}/explain.png"


# --- the cleaner: where one version looked, for a label, on a photo it trained or validated on


def test_the_cleaner_links_where_the_version_looked_for_its_answer_and_for_the_label(explainable_model, expert,
                                                                                    member):
    from classifier.models import PhotoLoss

    monstera = Label.objects.get(name="monstera")
    photo = PhotoFactory(owner=member, status=Photo.Status.FINAL, final_label=monstera)
    PhotoLoss.objects.create(model_version=explainable_model, photo=photo, split="valid", label="monstera", loss=2.0,
                             probabilities={"dieffenbachia": 0.7, "monstera": 0.1, "spider_plant": 0.2})
    client = _client(expert)

    page = client.get(f"/models/{explainable_model.id}/cleaner/").content.decode()
    picture = client.get(f"/models/{explainable_model.id}/explain/{photo.id}.png?label=dieffenbachia")

    base = f"/models/{explainable_model.id}/explain/{photo.id}.png"
    assert f'<a href="{base}?label=dieffenbachia"' in page and "Where it looked for dieffenbachia" in page
    assert f'<a href="{base}?label=monstera"' in page
    assert picture.status_code == 200 and picture["Content-Type"] == "image/png"
    assert client.get(base).status_code == 400  # which label, then?
    assert _client(member).get(f"{base}?label=monstera").status_code == 403


def test_the_cleaners_map_is_not_given_for_a_photo_whose_audit_is_pending(predicted, explainable_model, expert):
    predicted.review_kind = Photo.ReviewKind.AUDIT
    predicted.save()

    response = _client(expert).get(f"/models/{explainable_model.id}/explain/{predicted.id}.png?label=monstera")

    assert response.status_code == 404


def test_without_the_cache_the_work_is_done_every_time_and_still_answers(caplog):
    from redis.exceptions import ConnectionError as RedisConnectionError

    from classifier.caching import cached

    calls = []
    down = mock.Mock(side_effect=RedisConnectionError("Redis is down"))
    with mock.patch("classifier.caching.cache.get", down), mock.patch("classifier.caching.cache.set", down):
        first = cached("k", lambda: calls.append(1) or "made", 60, "explaining")
        again = cached("k", lambda: calls.append(1) or "made", 60, "explaining")

    assert (first, again, len(calls)) == ("made", "made", 2)
    assert "The cache is unavailable: explaining without it." in caplog.text
