import hashlib
import io
import uuid

import factory
from django.contrib.auth.models import Group, User
from django.core.files.base import ContentFile
from PIL import Image

from classifier.models import ModelVersion, TrainingRun
from labeling.models import EXPERTS_GROUP, Label, Photo, Prediction


def jpeg_bytes(size=(64, 48), colour=(40, 140, 60)):
    buffer = io.BytesIO()
    Image.new("RGB", size, colour).save(buffer, "JPEG")
    return buffer.getvalue()


class UserFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = User
        skip_postgeneration_save = True

    username = factory.Sequence(lambda n: f"user{n}")
    password = factory.PostGenerationMethodCall("set_password", "pw-for-tests-1")

    @factory.post_generation
    def expert(self, create, extracted, **kwargs):
        if extracted:
            self.groups.add(Group.objects.get_or_create(name=EXPERTS_GROUP)[0])
        if create:
            self.save()


class LabelFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = Label
        django_get_or_create = ("name",)

    name = factory.Sequence(lambda n: f"label_{n}")


class PhotoFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = Photo

    owner = factory.SubFactory(UserFactory)
    image = factory.LazyFunction(lambda: ContentFile(jpeg_bytes(), name="photo.jpg"))
    width = 64
    height = 48
    sha256 = factory.Sequence(lambda n: f"{n:064x}")


class TrainingRunFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = TrainingRun

    status = TrainingRun.Status.SUCCEEDED
    holds_slot = None


# A registry entry's file: it exists and matches its sha256, so the version may be activated,
# but it is no model (a test that predicts uses the tiny_model_file fixture).
MODEL_FILE_BYTES = b"not a model"


def _model_file():
    from django.conf import settings

    settings.MODEL_ROOT.mkdir(parents=True, exist_ok=True)
    name = f"factory-{uuid.uuid4().hex[:8]}.pkl"
    (settings.MODEL_ROOT / name).write_bytes(MODEL_FILE_BYTES)
    return name


class ModelVersionFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = ModelVersion

    file = factory.LazyFunction(_model_file)
    sha256 = hashlib.sha256(MODEL_FILE_BYTES).hexdigest()
    size = len(MODEL_FILE_BYTES)
    labels = ["monstera", "spider_plant"]
    architecture = "resnet18"
    image_size = 64
    metrics = factory.LazyFunction(lambda: {"error_rate": 0.1, "per_label": {}, "confusion_matrix": []})


class PredictionFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = Prediction

    photo = factory.SubFactory(PhotoFactory, status=Photo.Status.NEEDS_REVIEW)
    model_version = factory.SubFactory(ModelVersionFactory)
    label = factory.SubFactory(LabelFactory, name="monstera")
    confidence = 0.6
    margin = 0.2
    probabilities = factory.LazyFunction(lambda: {"monstera": 0.6, "spider_plant": 0.4})


def import_photos_on_both_sides_of_the_split(directory, owner, *, per_label, seed, size=64):
    """Generated photos of the demo plants, imported as labelled, with one more per label until
    the training split and the validation split both have photos.

    The split is the hash of each photo's id, as the training worker computes it: a test that
    trains in a worker process cannot patch it there, and a dozen or two photos leave the
    validation split empty about once in fifty runs.
    """
    from classifier.demo_images import generate_dataset
    from classifier.services import training_rows
    from labeling.services import photos_import_folder

    imported = []
    for extra in range(21):
        folder = directory / (f"extra-{extra}" if extra else "data")
        generate_dataset(folder, per_label=per_label if not extra else 1, size=size, seed=seed + extra)
        report = photos_import_folder(directory=folder, owner=owner, synthetic=True)
        assert not report.refused, report.summary()
        imported += report.imported
        if {valid for _, _, valid in training_rows()} == {True, False}:
            return imported
    raise AssertionError("20 more photos per label left one side of the split empty")


def start_photo_ids_where(ok, count):
    """Start the photo ids at the first value, from the sequence's next one, where `ok` holds for
    the next `count` ids. The validation split is a hash of the photo id
    (classifier.training.is_validation), so a handful of photos can put a label, or a whole run,
    on one side of it: a test that needs both sides says so here instead of failing now and then."""
    from django.db import connection

    with connection.cursor() as cursor:
        cursor.execute("SELECT nextval(pg_get_serial_sequence('labeling_photo', 'id'))")
        start = cursor.fetchone()[0]
        while not ok(list(range(start, start + count))):
            start += 1
        cursor.execute("SELECT setval(pg_get_serial_sequence('labeling_photo', 'id'), %s, false)", [start])
