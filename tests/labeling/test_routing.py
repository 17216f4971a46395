"""The routing rule (Photo.route) and the prediction step (services.photo_predict)."""

import io
from unittest import mock

import pytest

from labeling import services
from labeling.models import Label, Photo, Prediction
from tests.factories import LabelFactory, PhotoFactory, UserFactory, jpeg_bytes

THRESHOLD = 0.8


def _prediction(label, confidence, margin=None, **familiarity):
    # Unsaved: Photo.route reads only the prediction's own fields and its label.
    return Prediction(label=label, confidence=confidence, margin=confidence if margin is None else margin,
                      **familiarity)


# --- Photo.route --------------------------------------------------------------


@pytest.mark.django_db
@pytest.mark.parametrize("confidence", [0.8, 0.81, 0.95, 1.0])
def test_a_prediction_at_or_above_the_threshold_is_final_by_the_model(confidence):
    monstera = LabelFactory(name="monstera")
    photo = PhotoFactory()

    photo.route(_prediction(monstera, confidence), THRESHOLD)

    assert photo.status == Photo.Status.FINAL
    assert photo.final_label == monstera
    assert photo.decided_by == Photo.DecidedBy.MODEL
    assert photo.label_source == Photo.LabelSource.MODEL
    assert photo.decided_at is not None
    assert photo.reason == ""
    assert photo.reviewed_by is None


@pytest.mark.django_db
@pytest.mark.parametrize("confidence", [0.0, 0.5, 0.79, 0.7999999])
def test_a_prediction_below_the_threshold_needs_review_with_a_reason(confidence):
    monstera = LabelFactory(name="monstera")
    photo = PhotoFactory()

    photo.route(_prediction(monstera, confidence), THRESHOLD)

    assert photo.status == Photo.Status.NEEDS_REVIEW
    assert photo.final_label is None
    assert photo.decided_by == ""
    assert photo.decided_at is None
    assert "below the 80% threshold" in photo.reason
    assert "an expert will decide" in photo.reason


@pytest.mark.django_db
def test_a_routed_photo_can_be_saved_and_read_back():
    monstera = LabelFactory(name="monstera")
    photo = PhotoFactory()

    photo.route(_prediction(monstera, 0.8), THRESHOLD)
    photo.save()

    photo.refresh_from_db()
    assert (photo.status, photo.final_label.name, photo.decided_by) == ("final", "monstera", "model")


# --- services.photo_predict ---------------------------------------------------


@pytest.mark.django_db
def test_predicting_with_no_active_model_sends_the_photo_to_review_with_a_reason():
    photo = PhotoFactory()

    services.photo_predict(photo.id)

    photo.refresh_from_db()
    assert photo.status == Photo.Status.NEEDS_REVIEW
    assert photo.reason == "No model is active yet: an expert will decide."
    assert not Prediction.objects.filter(photo=photo).exists()


@pytest.mark.django_db
def test_predicting_a_missing_photo_does_nothing():
    assert services.photo_predict(987654) is None
    assert Prediction.objects.count() == 0


@pytest.mark.django_db
def test_predicting_stores_one_prediction_with_every_labels_probability_and_the_model_version(active_model,
                                                                                             settings):
    settings.CONFIDENCE_THRESHOLD = THRESHOLD  # whatever the developer's environment says
    photo = PhotoFactory()

    returned = services.photo_predict(photo.id)

    prediction = Prediction.objects.get(photo=photo)
    assert prediction.model_version == active_model
    assert set(prediction.probabilities) == set(active_model.labels)
    assert sum(prediction.probabilities.values()) == pytest.approx(1.0, abs=1e-4)
    top_label, top_p = max(prediction.probabilities.items(), key=lambda kv: kv[1])
    second_p = sorted(prediction.probabilities.values(), reverse=True)[1]
    assert prediction.label.name == top_label
    assert prediction.confidence == pytest.approx(top_p)
    assert prediction.margin == pytest.approx(top_p - second_p)
    # The photo left the queue and was routed by the rule above.
    photo.refresh_from_db()
    assert returned.id == photo.id
    if prediction.confidence >= THRESHOLD:
        assert (photo.status, photo.final_label, photo.decided_by) == ("final", prediction.label, "model")
    else:
        assert photo.status == Photo.Status.NEEDS_REVIEW
        assert "threshold" in photo.reason


@pytest.mark.django_db
def test_predicting_the_same_photo_twice_stores_exactly_one_prediction(active_model):
    photo = PhotoFactory()

    services.photo_predict(photo.id)
    photo.refresh_from_db()
    first = (photo.status, photo.decided_at, photo.reason)
    services.photo_predict(photo.id)

    assert Prediction.objects.filter(photo=photo).count() == 1
    photo.refresh_from_db()
    assert (photo.status, photo.decided_at, photo.reason) == first


@pytest.mark.django_db
def test_the_store_step_of_a_duplicated_task_leaves_the_first_prediction_alone(active_model):
    # Two deliveries of the task can both compute probabilities before either stores them;
    # the second store finds the photo no longer queued and changes nothing.
    photo = PhotoFactory()
    services._store_prediction(photo.id, active_model, {"monstera": 0.9, "spider_plant": 0.1})

    services._store_prediction(photo.id, active_model, {"monstera": 0.1, "spider_plant": 0.9})

    prediction = Prediction.objects.get(photo=photo)
    assert prediction.label.name == "monstera"
    assert prediction.confidence == pytest.approx(0.9)


@pytest.mark.django_db
@pytest.mark.parametrize("status", [Photo.Status.FINAL, Photo.Status.NEEDS_REVIEW, Photo.Status.REJECTED,
                                    Photo.Status.FAILED])
def test_a_photo_that_is_not_queued_is_left_alone(active_model, status):
    photo = PhotoFactory(status=status, reason="as it was")

    services.photo_predict(photo.id)

    photo.refresh_from_db()
    assert photo.status == status
    assert photo.reason == "as it was"
    assert not Prediction.objects.filter(photo=photo).exists()


@pytest.mark.django_db
def test_a_threshold_of_zero_makes_every_prediction_final_by_the_model(active_model, settings):
    settings.CONFIDENCE_THRESHOLD = 0.0
    photo = PhotoFactory()

    services.photo_predict(photo.id)

    photo.refresh_from_db()
    assert photo.status == Photo.Status.FINAL
    assert photo.decided_by == Photo.DecidedBy.MODEL
    assert photo.final_label == photo.prediction.label


@pytest.mark.django_db
def test_a_threshold_of_one_sends_every_uncertain_prediction_to_review(active_model, settings):
    settings.CONFIDENCE_THRESHOLD = 1.0
    photo = PhotoFactory()

    services.photo_predict(photo.id)

    photo.refresh_from_db()
    assert photo.prediction.confidence < 1.0  # an untrained tiny model is never certain
    assert photo.status == Photo.Status.NEEDS_REVIEW
    assert "below the 100% threshold" in photo.reason
    assert photo.final_label is None


@pytest.mark.django_db
def test_a_predicted_label_the_site_did_not_know_yet_is_created(active_model):
    photo = PhotoFactory()
    Label.objects.filter(name__in=active_model.labels).delete()

    services.photo_predict(photo.id)

    photo.refresh_from_db()
    assert Label.objects.filter(name=photo.prediction.label.name).exists()


@pytest.mark.django_db
def test_a_tie_at_the_top_goes_to_review_whatever_the_threshold():
    photo = PhotoFactory()

    photo.route(_prediction(LabelFactory(name="monstera"), 0.5, margin=0.0), 0.5)

    assert photo.status == Photo.Status.NEEDS_REVIEW
    assert photo.reason == "The model is as sure of another label as of its first: an expert will decide."


@pytest.mark.django_db
def test_a_confident_answer_with_a_retired_label_goes_to_review_with_a_reason(active_model, settings):
    settings.CONFIDENCE_THRESHOLD = 0.0
    photo = services.photo_upload(owner=UserFactory(), fileobj=io.BytesIO(jpeg_bytes()))
    Label.objects.filter(name__in=active_model.labels).update(retired=True)
    for name in active_model.labels:
        Label.objects.get_or_create(name=name, defaults={"retired": True})

    photo = services.photo_predict(photo.id)

    assert photo.status == Photo.Status.NEEDS_REVIEW and photo.final_label is None
    assert "is a retired label: an expert will decide." in photo.reason


@pytest.mark.django_db
def test_probabilities_that_are_not_numbers_are_stored_as_null_and_an_expert_decides(active_model, settings,
                                                                                     monkeypatch):
    from classifier.inference import LoadedModel

    settings.CONFIDENCE_THRESHOLD = 0.0
    photo = services.photo_upload(owner=UserFactory(), fileobj=io.BytesIO(jpeg_bytes()))
    monkeypatch.setattr(LoadedModel, "predict_paths_with_features",
                        lambda self, paths: ([{"monstera": float("nan"), "spider_plant": 0.2} for _ in paths], None))

    photo = services.photo_predict(photo.id)

    assert photo.status == Photo.Status.NEEDS_REVIEW
    assert "no usable probabilities" in photo.reason
    assert Prediction.objects.get(photo=photo).probabilities == {"monstera": None, "spider_plant": 0.2}
    assert Prediction.objects.get(photo=photo).ranked == [("spider_plant", 0.2), ("monstera", None)]


@pytest.mark.django_db
def test_an_answer_of_a_version_deactivated_while_it_predicted_is_not_stored_and_the_photo_is_sent_again(
        active_model, settings, monkeypatch, django_capture_on_commit_callbacks):
    from classifier.inference import LoadedModel
    from classifier.services import model_version_activate
    from tests.factories import ModelVersionFactory

    settings.CONFIDENCE_THRESHOLD = 0.0
    photo = services.photo_upload(owner=UserFactory(), fileobj=io.BytesIO(jpeg_bytes()))
    other = ModelVersionFactory()
    predict = LoadedModel.predict_paths_with_features

    def predict_then_an_admin_rolls_back(self, paths):
        answers = predict(self, paths)
        model_version_activate(version_id=other.id)
        return answers

    monkeypatch.setattr(LoadedModel, "predict_paths_with_features", predict_then_an_admin_rolls_back)
    with mock.patch("labeling.tasks.photo_predict_task.delay") as send, \
            django_capture_on_commit_callbacks(execute=True):
        services.photo_predict(photo.id)

    photo.refresh_from_db()
    assert photo.status == Photo.Status.QUEUED and not Prediction.objects.filter(photo=photo).exists()
    send.assert_called_once_with(photo.id)
