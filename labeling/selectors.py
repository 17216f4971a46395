"""Reads for photos, labels and the review queue."""

from django.db.models import F

from .models import Label, Photo, is_expert


def photos_visible_to(user):
    """Members see their own photos; experts and staff see everyone's."""
    qs = Photo.objects.select_related("prediction__label", "prediction__model_version", "final_label", "reviewed_by", "owner")
    return qs if is_expert(user) else qs.filter(owner=user)


def review_queue():
    """Photos awaiting an expert, most uncertain (smallest top-2 margin) first, then oldest."""
    return (
        Photo.objects.filter(status=Photo.Status.NEEDS_REVIEW)
        .select_related("prediction__label", "prediction__model_version", "owner")
        .order_by(F("prediction__margin").asc(nulls_first=True), "uploaded_at", "id")
    )


def labels_all():
    return Label.objects.all()
