"""An unfamiliar photo, in headless Chromium: a photo's page open while its prediction is stored
says why an expert decides and how unlike the training photos the photo was, without a reload."""
from __future__ import annotations

import io

import numpy as np
import pytest
from django.core.files.base import ContentFile
from PIL import Image
from playwright.sync_api import expect

from labeling import services
from labeling.models import Photo
from tests.factories import PhotoFactory

from .test_browser import logged_in_page

pytestmark = [pytest.mark.integration, pytest.mark.browser]


def test_the_page_says_the_photo_is_unlike_the_training_photos_when_the_result_arrives(
        trained_here_model, live_server, browser, member):
    version = trained_here_model
    version.metrics["familiarity"] = {"photos": 100, "bins": [[1000, 100]]}  # cut-off 1.0: every photo unfamiliar
    version.save(update_fields=["metrics"])
    noise = io.BytesIO()
    Image.fromarray(np.random.default_rng(0).integers(0, 256, (64, 64, 3), dtype=np.uint8)).save(noise, "PNG")
    photo = PhotoFactory(owner=member, status=Photo.Status.QUEUED, image=ContentFile(noise.getvalue(), name="n.png"))
    problems = []
    page = logged_in_page(browser, problems, live_server.url, "member", f"/photos/{photo.id}/")
    expect(page.locator("[data-role=status]")).to_have_text("Predicting…")

    services.photo_predict(photo.id)  # what the worker does

    expect(page.locator("[data-role=status]")).to_have_text("Awaiting expert", timeout=15_000)
    expect(page.locator("[data-role=reason]")).to_contain_text("The photo looks unlike the photos the model learned from")
    said = page.locator("[data-role=familiarity]")
    expect(said.locator("strong")).to_have_text(f"Unlike the photos version {version.id} learned from")
    similarity = Photo.objects.get(id=photo.id).prediction.familiarity
    expect(said).to_contain_text(f"similarity {similarity:.3f} with the nearest, below the cut-off of 1.000.")
    page.reload()  # the server's page says the same
    expect(page.locator("[data-role=familiarity] strong")).to_have_text(
        f"Unlike the photos version {version.id} learned from")
    assert problems == []
