"""Who may do what: every URL of plantsite/urls.py for anonymous, member, expert and staff.

Every client logs in with a session (force_login), the way the site's pages and their
fetch() calls do. Tokens and CSRF are covered at the end of the file.
"""

import re
from dataclasses import dataclass
from datetime import datetime
from datetime import timezone as dt_timezone
from unittest import mock

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile
from django.urls import URLPattern, URLResolver, get_resolver
from PIL import Image
from rest_framework.test import APIClient

from classifier.models import TrainingRun
from labeling.models import Photo
from tests.factories import (
    LabelFactory,
    ModelVersionFactory,
    PhotoFactory,
    PredictionFactory,
    TrainingRunFactory,
    jpeg_bytes,
)

ROLES = ("anonymous", "member", "expert", "staff")
PASSWORD = "pw-for-tests-1"

LOGIN = "login"          # 302 to /login/?next=<the url>          (login_required)
ADMIN_LOGIN = "admin"    # 302 to /admin/login/?next=<the url>    (Django's admin)


@dataclass
class World:
    member: object
    other_member: object
    expert: object
    staff: object
    my_photo: Photo           # the member's, awaiting review
    their_photo: Photo        # another member's
    finished_run: TrainingRun
    model_version: object

    def queued_run(self):
        return TrainingRunFactory(status=TrainingRun.Status.QUEUED, holds_slot=True)

    def user(self, role):
        return None if role == "anonymous" else getattr(self, role)


@pytest.fixture
def world(db, member, other_member, expert, staff, settings):
    LabelFactory(name="monstera")
    my_photo = PredictionFactory(photo__owner=member).photo
    their_photo = PhotoFactory(owner=other_member)
    version = ModelVersionFactory(metrics={"error_rate": 0.1, "confusion_png": "confusion.png",
                                           "top_losses_png": "top-losses.png"})
    settings.MODEL_ROOT.mkdir(parents=True, exist_ok=True)
    Image.new("RGB", (4, 4)).save(settings.MODEL_ROOT / "confusion.png")
    Image.new("RGB", (4, 4)).save(settings.MODEL_ROOT / "top-losses.png")
    return World(member=member, other_member=other_member, expert=expert, staff=staff, my_photo=my_photo,
                 their_photo=their_photo, finished_run=TrainingRunFactory(), model_version=version)


@pytest.fixture(autouse=True)
def nothing_leaves_the_process():
    """No task reaches a broker, and the health check does not wait for absent workers."""
    with mock.patch("classifier.services._enqueue_training") as enqueue_training, \
            mock.patch("labeling.tasks.photo_predict_task.delay"), \
            mock.patch("labeling.health._workers", return_value=["celery@test"]):
        yield enqueue_training


def client_for(user):
    client = APIClient()
    if user is not None:
        client.force_login(user)
    return client


def jpeg_upload():
    return {"image": SimpleUploadedFile("plant.jpg", jpeg_bytes(), content_type="image/jpeg")}


TRAINING_FORM = {"architecture": "resnet18", "image_size": 32, "epochs": 1, "batch_size": 8, "learning_rate": "", "cleaning_folds": 0}


@dataclass
class Case:
    name: str            # the URL pattern's name
    method: str
    url: object          # World -> str
    expected: dict       # role -> status, or LOGIN / ADMIN_LOGIN, or (302, location regex)
    data: object = None  # None, or World -> request data
    format: str = None


def everyone(status):
    return dict.fromkeys(ROLES, status)


def logged_in(status, anonymous=LOGIN, **overrides):
    return {"anonymous": anonymous, "member": status, "expert": status, "staff": status, **overrides}


def experts_only(status, member=403, anonymous=LOGIN):
    return {"anonymous": anonymous, "member": member, "expert": status, "staff": status}


def staff_only(status, others=403, anonymous=LOGIN):
    return {"anonymous": anonymous, "member": others, "expert": others, "staff": status}


NO_CREDENTIALS = 401  # TokenAuthentication first: DRF answers with its challenge


def _failed_photo(w):
    """Another member's photo whose prediction failed: the member may not see it, experts may."""
    return PhotoFactory(owner=w.other_member, status=Photo.Status.FAILED)

CASES = [
    # --- pages ---------------------------------------------------------------
    Case("home", "get", lambda w: "/", logged_in(200)),
    Case("home", "post", lambda w: "/", logged_in((302, r"/photos/\d+/")), data=lambda w: jpeg_upload()),
    Case("photo-detail", "get", lambda w: f"/photos/{w.my_photo.id}/", logged_in(200)),
    Case("photo-detail", "get", lambda w: f"/photos/{w.their_photo.id}/", logged_in(200, member=404)),
    Case("photos-browse", "get", lambda w: "/photos/", experts_only(200)),
    # Not predicted: 404 to those who may see it too (tests/classifier/test_explain.py has the 200s).
    Case("photo-explain", "get", lambda w: f"/photos/{w.their_photo.id}/explain.png", logged_in(404)),
    # Not predicted either (tests/classifier/test_similar.py has the 200s with a real model).
    Case("photo-similar", "get", lambda w: f"/photos/{w.their_photo.id}/similar/", experts_only(404)),
    Case("photo-delete", "get", lambda w: f"/photos/{w.my_photo.id}/delete/", logged_in(200, expert=403)),
    Case("photo-delete", "post", lambda w: f"/photos/{w.my_photo.id}/delete/", logged_in((302, "/"), expert=403)),
    Case("photo-delete", "post", lambda w: f"/photos/{w.their_photo.id}/delete/",
         logged_in((302, "/"), member=404, expert=403)),
    Case("photo-retry", "post", lambda w: f"/photos/{_failed_photo(w).id}/retry/",
         logged_in((302, r"/photos/\d+/"), member=404)),
    Case("photo-file", "get", lambda w: f"/media/{w.my_photo.image.name}", logged_in(200)),
    Case("photo-file", "get", lambda w: f"/media/{w.their_photo.image.name}", logged_in(200, member=404)),
    Case("photo-file", "get", lambda w: "/media/photos/0123456789abcdef0123456789abcdef.jpg", logged_in(404)),
    Case("review-queue", "get", lambda w: "/review/", experts_only(200)),
    Case("review-photo", "get", lambda w: f"/review/{w.my_photo.id}/", experts_only(200)),
    Case("review-photo", "post", lambda w: f"/review/{w.my_photo.id}/", experts_only((302, "/review/")),
         data=lambda w: {"label": "monstera"}),
    Case("training-runs", "get", lambda w: "/training/", staff_only(200)),
    Case("training-runs", "post", lambda w: "/training/", staff_only((302, r"/training/\d+/")),
         data=lambda w: TRAINING_FORM),
    Case("training-run", "get", lambda w: f"/training/{w.finished_run.id}/", staff_only(200)),
    Case("training-run-cancel", "post", lambda w: f"/training/{w.queued_run().id}/cancel/",
         staff_only((302, r"/training/\d+/"))),
    Case("training-run-cancel", "get", lambda w: f"/training/{w.finished_run.id}/cancel/", staff_only(405)),
    Case("model-versions", "get", lambda w: "/models/", logged_in(200)),
    Case("model-version", "get", lambda w: f"/models/{w.model_version.id}/", logged_in(200)),
    Case("model-version-activate", "post", lambda w: f"/models/{w.model_version.id}/activate/",
         staff_only((302, "/models/"))),
    Case("model-version-confusion", "get", lambda w: f"/models/{w.model_version.id}/confusion.png", logged_in(200)),
    Case("model-version-download", "get", lambda w: f"/models/{w.model_version.id}/download/", staff_only(200)),
    Case("model-version-shadow", "post", lambda w: f"/models/{w.model_version.id}/shadow/",
         staff_only((302, "/models/")), data=lambda w: {"enabled": "1"}),
    Case("model-versions-compare", "get", lambda w: "/models/compare/", logged_in(200)),
    Case("model-version-top-losses", "get", lambda w: f"/models/{w.model_version.id}/top-losses.png",
         experts_only(200)),  # other members' photos
    Case("model-version-cleaner", "get", lambda w: f"/models/{w.model_version.id}/cleaner/", experts_only(200)),
    # No label asked: 400 (tests/classifier/test_explain.py has the 200s with a real model).
    Case("model-version-explain", "get", lambda w: f"/models/{w.model_version.id}/explain/{w.my_photo.id}.png",
         experts_only(400)),
    Case("model-version-clean-photo", "post", lambda w: f"/models/{w.model_version.id}/cleaner/{w.their_photo.id}/",
         experts_only((302, r"/models/\d+/cleaner/")), data=lambda w: {"action": "keep"}),
    Case("photo-history", "get", lambda w: f"/photos/{w.my_photo.id}/history/", logged_in(200)),
    Case("photo-history", "get", lambda w: f"/photos/{w.their_photo.id}/history/", logged_in(200, member=404)),
    Case("login", "get", lambda w: "/login/", everyone(200)),
    Case("login", "post", lambda w: "/login/", everyone((302, "/")),
         data=lambda w: {"username": "member", "password": PASSWORD}),
    Case("logout", "post", lambda w: "/logout/", everyone((302, "/login/"))),
    Case("logout", "get", lambda w: "/logout/", everyone(405)),
    Case("password-change", "get", lambda w: "/account/password/", logged_in(200)),
    Case("password-change", "post", lambda w: "/account/password/", logged_in(200),  # a wrong old one
         data=lambda w: {"old_password": "wrong", "new_password1": "x-long-new-pw-1", "new_password2": "x-long-new-pw-1"}),
    Case("admin:index", "get", lambda w: "/admin/", staff_only(200, others=ADMIN_LOGIN, anonymous=ADMIN_LOGIN)),
    Case("api-schema", "get", lambda w: "/api/schema/", everyone(200)),
    Case("healthz", "get", lambda w: "/healthz", everyone(200)),
    # --- API -----------------------------------------------------------------
    Case("api-token", "post", lambda w: "/api/v1/auth/token/", everyone(200),
         data=lambda w: {"username": "member", "password": PASSWORD}, format="json"),
    Case("api-photos", "get", lambda w: "/api/v1/photos/", logged_in(200, anonymous=NO_CREDENTIALS)),
    Case("api-photos", "post", lambda w: "/api/v1/photos/", logged_in(201, anonymous=NO_CREDENTIALS),
         data=lambda w: jpeg_upload(), format="multipart"),
    Case("api-photo-updates", "get", lambda w: f"/api/v1/photos/updates/?photos={w.my_photo.id}:queued",
         logged_in(200, anonymous=NO_CREDENTIALS)),
    Case("api-photo-updates", "post", lambda w: f"/api/v1/photos/updates/?photos={w.my_photo.id}:queued",
         logged_in(405, anonymous=NO_CREDENTIALS)),
    Case("api-photo", "get", lambda w: f"/api/v1/photos/{w.my_photo.id}/", logged_in(200, anonymous=NO_CREDENTIALS)),
    Case("api-photo-retry", "post", lambda w: f"/api/v1/photos/{_failed_photo(w).id}/retry/",
         logged_in(200, anonymous=NO_CREDENTIALS, member=404)),
    Case("api-photo", "get", lambda w: f"/api/v1/photos/{w.their_photo.id}/",
         logged_in(200, anonymous=NO_CREDENTIALS, member=404)),
    # Its owner or an admin: an expert sees every photo but may not delete other people's.
    Case("api-photo", "delete", lambda w: f"/api/v1/photos/{w.my_photo.id}/",
         logged_in(204, anonymous=NO_CREDENTIALS, expert=403)),
    Case("api-photo", "delete", lambda w: f"/api/v1/photos/{w.their_photo.id}/",
         logged_in(204, anonymous=NO_CREDENTIALS, member=404, expert=403)),
    Case("api-photo-review", "post", lambda w: f"/api/v1/photos/{w.my_photo.id}/review/",
         experts_only(200, anonymous=NO_CREDENTIALS), data=lambda w: {"label": "monstera"}, format="json"),
    Case("api-review-queue", "get", lambda w: "/api/v1/review-queue/", experts_only(200, anonymous=NO_CREDENTIALS)),
    Case("api-labels", "get", lambda w: "/api/v1/labels/", logged_in(200, anonymous=NO_CREDENTIALS)),
    Case("api-training-runs", "get", lambda w: "/api/v1/training-runs/", staff_only(200, others=403, anonymous=NO_CREDENTIALS)),
    Case("api-training-runs", "post", lambda w: "/api/v1/training-runs/", staff_only(202, others=403, anonymous=NO_CREDENTIALS),
         data=lambda w: {"image_size": 32, "epochs": 1}, format="json"),
    Case("api-training-run", "get", lambda w: f"/api/v1/training-runs/{w.finished_run.id}/",
         staff_only(200, others=403, anonymous=NO_CREDENTIALS)),
    Case("api-training-run-cancel", "post", lambda w: f"/api/v1/training-runs/{w.queued_run().id}/cancel/",
         staff_only(202, others=403, anonymous=NO_CREDENTIALS)),
    Case("api-training-run-cancel", "post", lambda w: f"/api/v1/training-runs/{w.finished_run.id}/cancel/",
         staff_only(409, others=403, anonymous=NO_CREDENTIALS)),
    Case("api-models", "get", lambda w: "/api/v1/models/", logged_in(200, anonymous=NO_CREDENTIALS)),
    Case("api-model-shadow", "post", lambda w: f"/api/v1/models/{w.model_version.id}/shadow/",
         staff_only(200, others=403, anonymous=NO_CREDENTIALS), data=lambda w: {"enabled": True}, format="json"),
    Case("api-models-compare", "get", lambda w: "/api/v1/models/compare/?a=0&b=0",
         logged_in(404, anonymous=NO_CREDENTIALS)),
    Case("api-model-activations", "get", lambda w: "/api/v1/models/activations/",
         logged_in(200, anonymous=NO_CREDENTIALS)),
    Case("api-model-activate", "post", lambda w: f"/api/v1/models/{w.model_version.id}/activate/",
         staff_only(200, others=403, anonymous=NO_CREDENTIALS)),
]


DECIDED_AT = datetime(2026, 1, 1, tzinfo=dt_timezone.utc)


def _decided_photo(w):
    """A member's photo the model auto-accepted as monstera at DECIDED_AT: one an expert may correct."""
    monstera = LabelFactory(name="monstera")
    LabelFactory(name="spider_plant")
    return PhotoFactory(owner=w.member, status=Photo.Status.FINAL, final_label=monstera, decided_at=DECIDED_AT,
                        label_source=Photo.LabelSource.MODEL, decided_by=Photo.DecidedBy.MODEL)


# Review: claims, the queue's "Start reviewing", corrections, history and audits (labeling/review*.py).
CASES += [
    Case("review-claim-next", "post", lambda w: "/review/claim-next/", experts_only((302, r"/review/\d+/"))),
    Case("review-claim-next", "get", lambda w: "/review/claim-next/", experts_only(405)),
    Case("review-audits", "get", lambda w: "/review/audits/", experts_only(200)),
    Case("review-grid", "get", lambda w: "/review/grid/", experts_only(200)),
    Case("review-grid", "post", lambda w: "/review/grid/", experts_only((302, r"/review/grid/\?label=monstera")),
         data=lambda w: {"label": "monstera", "photos": [w.my_photo.id]}),
    Case("photo-correct", "post", lambda w: f"/photos/{_decided_photo(w).id}/correct/",
         experts_only((302, r"/photos/\d+/history/")), data=lambda w: {"label": "spider_plant"}),
    Case("photo-correct", "get", lambda w: f"/photos/{_decided_photo(w).id}/correct/", experts_only(405)),
    Case("api-photo-claim", "post", lambda w: f"/api/v1/photos/{w.my_photo.id}/claim/",
         experts_only(200, anonymous=NO_CREDENTIALS)),
    Case("api-photo-claim", "post", lambda w: f"/api/v1/photos/{w.their_photo.id}/claim/",
         experts_only(409, anonymous=NO_CREDENTIALS)),  # queued: not awaiting review
    Case("api-photo-claim", "delete", lambda w: f"/api/v1/photos/{w.my_photo.id}/claim/",
         experts_only(204, anonymous=NO_CREDENTIALS)),
    Case("api-review-claim-next", "post", lambda w: "/api/v1/review-queue/claim-next/",
         experts_only(200, anonymous=NO_CREDENTIALS)),
    Case("api-photo-correct", "post", lambda w: f"/api/v1/photos/{_decided_photo(w).id}/correct/",
         experts_only(200, anonymous=NO_CREDENTIALS),
         data=lambda w: {"label": "spider_plant", "decided_at": DECIDED_AT.isoformat()}, format="json"),
    Case("api-photo-history", "get", lambda w: f"/api/v1/photos/{w.my_photo.id}/history/",
         logged_in(200, anonymous=NO_CREDENTIALS)),
    Case("api-photo-history", "get", lambda w: f"/api/v1/photos/{w.their_photo.id}/history/",
         logged_in(200, anonymous=NO_CREDENTIALS, member=404)),
    Case("api-audit-stats", "get", lambda w: "/api/v1/audits/stats/", experts_only(200, anonymous=NO_CREDENTIALS)),
    # Not predicted: 404 for experts too (tests/classifier/test_similar.py has the 200s).
    Case("api-photo-similar", "get", lambda w: f"/api/v1/photos/{w.their_photo.id}/similar/",
         experts_only(404, anonymous=NO_CREDENTIALS)),
    Case("api-review-confirm", "post", lambda w: "/api/v1/review-queue/confirm/",
         experts_only(200, anonymous=NO_CREDENTIALS),
         data=lambda w: {"label": "monstera", "photos": [w.my_photo.id]}, format="json"),
]


# --- shared labelling, labels, bulk upload, export, team ----------------------------------------


def _served_photo(w):
    """A photo needing labels, served to every logged-in role (each role's test votes on its own)."""
    from datetime import timedelta

    from django.utils import timezone

    from labeling.models import LabellingAssignment

    photo = PhotoFactory(owner=w.other_member, status=Photo.Status.NEEDS_REVIEW, review_kind="uncertain")
    for user in (w.member, w.other_member, w.expert, w.staff):
        LabellingAssignment.objects.create(photo=photo, user=user, expires_at=timezone.now() + timedelta(minutes=5))
    return photo


def _unused_label(w):
    return LabelFactory(name="unused_label")


def _webhook(w):
    from labeling.models import Webhook

    return Webhook.objects.create(url="https://hooks.example.com/in", events=["photo.decided"])


def _finished_delivery_resend_url(w):
    from labeling.models import WebhookDelivery

    delivery = WebhookDelivery.objects.create(webhook=_webhook(w), event="ping", payload={}, state="failed")
    return f"/api/v1/webhooks/{delivery.webhook_id}/deliveries/{delivery.id}/resend/"


CASES += [
    Case("labelling", "get", lambda w: "/label/", logged_in(200)),
    Case("labelling", "post", lambda w: "/label/", logged_in((302, "/label/")),
         data=lambda w: {"photo": _served_photo(w).id, "label": "monstera"}),
    Case("labelling-photo-file", "get", lambda w: f"/label/photos/{_served_photo(w).id}/image", logged_in(200)),
    Case("labelling-photo-file", "get", lambda w: f"/label/photos/{w.their_photo.id}/image",
         logged_in(200, member=404)),
    Case("labels", "get", lambda w: "/labels/", staff_only(200)),
    Case("labels", "post", lambda w: "/labels/", staff_only((302, r"/labels/\d+/")), data=lambda w: {"name": "fern"}),
    Case("label-edit", "get", lambda w: f"/labels/{_unused_label(w).id}/", staff_only(200)),
    Case("label-edit", "post", lambda w: f"/labels/{_unused_label(w).id}/", staff_only((302, r"/labels/\d+/")),
         data=lambda w: {"action": "retire"}),
    Case("bulk-upload", "get", lambda w: "/import/", staff_only(200)),
    Case("export", "get", lambda w: "/export/", staff_only(200)),
    Case("team", "get", lambda w: "/team/", logged_in(200)),
    Case("webhooks", "get", lambda w: "/webhooks/", staff_only(200)),
    Case("webhooks", "post", lambda w: "/webhooks/", staff_only((302, r"/webhooks/\d+/")),
         data=lambda w: {"url": "https://hooks.example.com/in", "events": ["photo.decided"], "format": "json"}),
    Case("webhook", "get", lambda w: f"/webhooks/{_webhook(w).id}/", staff_only(200)),
    Case("webhook", "post", lambda w: f"/webhooks/{_webhook(w).id}/", staff_only((302, r"/webhooks/\d+/")),
         data=lambda w: {"action": "test"}),
    Case("api-labels", "post", lambda w: "/api/v1/labels/", staff_only(201, others=403, anonymous=NO_CREDENTIALS),
         data=lambda w: {"name": "fern"}, format="json"),
    Case("api-label", "get", lambda w: f"/api/v1/labels/{_unused_label(w).id}/",
         staff_only(200, others=403, anonymous=NO_CREDENTIALS)),
    Case("photos-retry-failed", "post", lambda w: "/photos/retry-failed/",
         staff_only((302, r"/photos/\?status=failed"))),
    Case("api-photos-retry-failed", "post", lambda w: "/api/v1/photos/retry-failed/",
         staff_only(200, others=403, anonymous=NO_CREDENTIALS)),
    Case("api-label-merge", "post", lambda w: f"/api/v1/labels/{_unused_label(w).id}/merge/",
         staff_only(200, others=403, anonymous=NO_CREDENTIALS),
         data=lambda w: {"into": LabelFactory(name="merge_target").name}, format="json"),
    Case("api-review-waits", "get", lambda w: "/api/v1/review-queue/waits/",
         experts_only(200, anonymous=NO_CREDENTIALS)),
    Case("api-webhooks", "get", lambda w: "/api/v1/webhooks/", staff_only(200, others=403, anonymous=NO_CREDENTIALS)),
    Case("api-webhooks", "post", lambda w: "/api/v1/webhooks/", staff_only(201, others=403, anonymous=NO_CREDENTIALS),
         data=lambda w: {"url": "https://hooks.example.com/in", "events": ["photo.decided"]}, format="json"),
    Case("api-webhook", "get", lambda w: f"/api/v1/webhooks/{_webhook(w).id}/",
         staff_only(200, others=403, anonymous=NO_CREDENTIALS)),
    Case("api-webhook", "patch", lambda w: f"/api/v1/webhooks/{_webhook(w).id}/",
         staff_only(200, others=403, anonymous=NO_CREDENTIALS), data=lambda w: {"active": False}, format="json"),
    Case("api-webhook", "delete", lambda w: f"/api/v1/webhooks/{_webhook(w).id}/",
         staff_only(204, others=403, anonymous=NO_CREDENTIALS)),
    Case("api-webhook-ping", "post", lambda w: f"/api/v1/webhooks/{_webhook(w).id}/ping/",
         staff_only(201, others=403, anonymous=NO_CREDENTIALS)),
    Case("api-webhook-secret", "post", lambda w: f"/api/v1/webhooks/{_webhook(w).id}/secret/",
         staff_only(200, others=403, anonymous=NO_CREDENTIALS)),
    Case("api-webhook-deliveries", "get", lambda w: f"/api/v1/webhooks/{_webhook(w).id}/deliveries/",
         staff_only(200, others=403, anonymous=NO_CREDENTIALS)),
    Case("api-webhook-delivery-resend", "post", lambda w: _finished_delivery_resend_url(w),
         staff_only(200, others=403, anonymous=NO_CREDENTIALS)),
    Case("api-label", "patch", lambda w: f"/api/v1/labels/{_unused_label(w).id}/",
         staff_only(200, others=403, anonymous=NO_CREDENTIALS), data=lambda w: {"retired": True}, format="json"),
    Case("api-label", "delete", lambda w: f"/api/v1/labels/{_unused_label(w).id}/",
         staff_only(204, others=403, anonymous=NO_CREDENTIALS)),
    Case("api-label", "delete", lambda w: f"/api/v1/labels/{w.my_photo.prediction.label_id}/",
         staff_only(409, others=403, anonymous=NO_CREDENTIALS)),  # in use: retire it instead
    # Served photos someone else uploaded: nobody is served their own (the world's uncertain one is the member's).
    Case("api-labelling-next", "get", lambda w: _served_photo(w) and "/api/v1/labelling/next/",
         logged_in(200, anonymous=NO_CREDENTIALS)),
    Case("api-labelling-skip", "post", lambda w: _served_photo(w) and "/api/v1/labelling/skip/",
         logged_in(200, anonymous=NO_CREDENTIALS), data=lambda w: {"photo": _served_photo(w).id}, format="json"),
    Case("api-photo-labels", "post", lambda w: f"/api/v1/photos/{_served_photo(w).id}/labels/",
         logged_in(201, anonymous=NO_CREDENTIALS), data=lambda w: {"label": "monstera"}, format="json"),
    Case("api-photo-labels", "post", lambda w: f"/api/v1/photos/{w.their_photo.id}/labels/",
         logged_in(409, anonymous=NO_CREDENTIALS, member=404), data=lambda w: {"label": "monstera"}, format="json"),
    Case("api-imports", "post", lambda w: "/api/v1/imports/", staff_only(201, others=403, anonymous=NO_CREDENTIALS),
         data=lambda w: {**jpeg_upload(), "label": "monstera"}, format="multipart"),
    Case("api-export-dataset", "get", lambda w: "/api/v1/exports/dataset.zip",
         staff_only(200, others=403, anonymous=NO_CREDENTIALS)),
    Case("api-export-predictions", "get", lambda w: "/api/v1/exports/predictions.csv",
         staff_only(200, others=403, anonymous=NO_CREDENTIALS)),
    Case("api-team-stats", "get", lambda w: "/api/v1/team/stats/", logged_in(200, anonymous=NO_CREDENTIALS)),
]

def _params():
    for number, case in enumerate(CASES):
        for role in ROLES:
            yield pytest.param(case, role, id=f"{case.method.upper()} {case.name} #{number} as {role}")


@pytest.mark.parametrize(("case", "role"), list(_params()))
def test_the_permission_matrix(world, case, role):
    url = case.url(world)
    kwargs = {}
    if case.data is not None:
        kwargs["data"] = case.data(world)
    if case.format is not None:
        kwargs["format"] = case.format

    response = getattr(client_for(world.user(role)), case.method)(url, **kwargs)

    expected = case.expected[role]
    if expected == LOGIN:
        assert (response.status_code, response["Location"]) == (302, f"/login/?next={url}")
    elif expected == ADMIN_LOGIN:
        assert (response.status_code, response["Location"]) == (302, f"/admin/login/?next={url}")
    elif isinstance(expected, tuple):
        status, location = expected
        assert response.status_code == status
        assert re.fullmatch(location, response["Location"]), response["Location"]
    else:
        assert response.status_code == expected, getattr(response, "content", b"")[:300]


def _named_patterns(resolver=None, namespace=""):
    for pattern in (resolver or get_resolver()).url_patterns:
        if isinstance(pattern, URLResolver):
            if pattern.namespace == "admin":
                continue  # the admin's own views are Django's; only its index is in the matrix
            yield from _named_patterns(pattern, namespace)
        elif isinstance(pattern, URLPattern) and pattern.name:
            yield pattern.name


def test_the_matrix_covers_every_named_url_of_the_site():
    assert set(_named_patterns()) | {"admin:index"} == {case.name for case in CASES}


# --- the messages behind the statuses -----------------------------------------


def test_an_anonymous_api_request_is_told_that_credentials_are_missing(world):
    response = client_for(None).get("/api/v1/photos/")

    assert response.status_code == 401
    assert response["WWW-Authenticate"] == "Token"
    assert response.json() == {"detail": "Authentication credentials were not provided."}


def test_a_member_is_told_why_the_review_page_is_forbidden(world):
    response = client_for(world.member).get("/review/")

    assert response.status_code == 403
    assert '<p class="message error" data-role="forbidden">Only experts and staff can review photos.</p>' in (
        response.content.decode())


def test_a_forbidden_review_changes_nothing(world):
    client_for(world.member).post(f"/review/{world.my_photo.id}/", {"label": "monstera"})
    client_for(world.member).post(f"/api/v1/photos/{world.my_photo.id}/review/", {"label": "monstera"},
                                  format="json")

    world.my_photo.refresh_from_db()
    assert world.my_photo.status == Photo.Status.NEEDS_REVIEW
    assert world.my_photo.decisions.count() == 0


def test_only_staff_can_activate_a_model(world):
    other = ModelVersionFactory(is_active=True)

    for role in ("member", "expert"):
        assert client_for(world.user(role)).post(f"/api/v1/models/{world.model_version.id}/activate/").status_code == 403
    world.model_version.refresh_from_db()
    assert world.model_version.is_active is False

    response = client_for(world.staff).post(f"/api/v1/models/{world.model_version.id}/activate/")

    assert response.status_code == 200
    assert response.json()["is_active"] is True
    other.refresh_from_db()
    assert other.is_active is False


def test_a_staff_training_run_is_recorded_but_not_sent_before_commit(world, nothing_leaves_the_process,
                                                                     django_capture_on_commit_callbacks):
    with django_capture_on_commit_callbacks(execute=False) as callbacks:
        response = client_for(world.staff).post("/api/v1/training-runs/", {"epochs": 1}, format="json")

    assert response.status_code == 202
    assert response.json()["status"] == "queued"
    assert len(callbacks) == 1
    nothing_leaves_the_process.assert_not_called()
    callbacks[0]()
    nothing_leaves_the_process.assert_called_once_with(response.json()["id"])


def test_a_member_cannot_start_a_training_run(world):
    response = client_for(world.member).post("/api/v1/training-runs/", {"epochs": 1}, format="json")

    assert response.status_code == 403
    assert not TrainingRun.objects.filter(status=TrainingRun.Status.QUEUED).exists()


# --- CSRF ---------------------------------------------------------------------


@pytest.fixture
def csrf_client(member):
    client = APIClient(enforce_csrf_checks=True)
    assert client.login(username="member", password=PASSWORD)
    return client


def test_a_session_api_post_without_a_csrf_token_is_403(csrf_client):
    response = csrf_client.post("/api/v1/photos/", jpeg_upload(), format="multipart")

    assert response.status_code == 403
    assert response.json()["detail"].startswith("CSRF Failed")
    assert not Photo.objects.exists()


def test_a_session_api_post_with_the_csrf_token_is_accepted(csrf_client):
    csrf_client.get("/")  # the page sets the csrftoken cookie its script sends back
    token = csrf_client.cookies["csrftoken"].value

    response = csrf_client.post("/api/v1/photos/", jpeg_upload(), format="multipart", HTTP_X_CSRFTOKEN=token)

    assert response.status_code == 201


def test_a_token_authenticated_api_post_needs_no_csrf_token(member):
    token = APIClient().post("/api/v1/auth/token/", {"username": "member", "password": PASSWORD},
                             format="json").json()["token"]
    client = APIClient(enforce_csrf_checks=True)
    client.credentials(HTTP_AUTHORIZATION=f"Token {token}")

    response = client.post("/api/v1/photos/", jpeg_upload(), format="multipart")

    assert response.status_code == 201
    assert Photo.objects.get().owner == member


def test_a_page_form_post_without_a_csrf_token_is_403(csrf_client):
    response = csrf_client.post("/", jpeg_upload())

    assert response.status_code == 403
    assert not Photo.objects.exists()

