"""Reads for photos, labels and the review queue."""

from django.db.models import F

from .models import Label, Photo, is_expert


def photos_visible_to(user):
    """Members see their own photos; experts and staff see everyone's."""
    qs = Photo.objects.select_related("prediction__label", "prediction__model_version", "final_label", "reviewed_by", "owner")
    return qs if is_expert(user) else qs.filter(owner=user)


# The orderings a client may ask for, by name. Only these keys are accepted from a request;
# the ORM expressions they stand for are ours, so no client text ever reaches order_by().
PHOTO_ORDERINGS = {
    "-uploaded_at": ("-uploaded_at", "-id"),
    "uploaded_at": ("uploaded_at", "id"),
}
PHOTO_DEFAULT_ORDERING = "-uploaded_at"
REVIEW_ORDERINGS = {
    # Most uncertain first: photos without a prediction, then the smallest top-2 margin.
    "margin": (F("prediction__margin").asc(nulls_first=True), "uploaded_at", "id"),
    "uploaded_at": ("uploaded_at", "id"),
    "-uploaded_at": ("-uploaded_at", "-id"),
}
REVIEW_DEFAULT_ORDERING = "margin"


def photos_list(user, *, status=None, ordering=PHOTO_DEFAULT_ORDERING):
    """The photos `user` may see, optionally of one status, in one of PHOTO_ORDERINGS."""
    qs = photos_visible_to(user)
    if status is not None:
        qs = qs.filter(status=Photo.Status(status))
    return qs.order_by(*PHOTO_ORDERINGS[ordering])


def review_queue(*, ordering=REVIEW_DEFAULT_ORDERING):
    """Photos awaiting an expert, by default most uncertain (smallest top-2 margin) first, then oldest."""
    return (
        Photo.objects.filter(status=Photo.Status.NEEDS_REVIEW)
        .select_related("prediction__label", "prediction__model_version", "owner")
        .order_by(*REVIEW_ORDERINGS[ordering])
    )


def labels_all():
    return Label.objects.all()


def photo_history(photo):
    """Everything that happened to a photo, oldest first: upload, prediction, decisions, cleaning."""
    events = [{"at": photo.uploaded_at, "what": "uploaded", "who": photo.owner.username, "detail": ""}]
    prediction = getattr(photo, "prediction", None)
    if prediction:
        events.append({"at": prediction.created_at, "what": "predicted", "who": f"model v{prediction.model_version_id}",
                       "detail": f"{prediction.label.name} ({prediction.confidence:.0%})"})
    for d in photo.decisions.select_related("expert", "label"):
        what = "rejected" if d.rejected else f"decided {d.label.name}"
        events.append({"at": d.created_at, "what": what, "who": d.expert.username,
                       "detail": f"{d.status_before} → {d.status_after}" + (f"; {d.reason}" if d.reason else "")})
    for e in photo.events.select_related("user", "label_before", "label_after"):
        detail = ""
        if e.action == "relabel":
            detail = f"{e.label_before.name if e.label_before else '—'} → {e.label_after.name}"
        if e.model_version_id:
            detail += f" (from model v{e.model_version_id}'s losses)"
        events.append({"at": e.created_at, "what": e.action, "who": e.user.username, "detail": detail.strip()})
    return sorted(events, key=lambda ev: ev["at"])
