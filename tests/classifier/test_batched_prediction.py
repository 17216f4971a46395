"""The inference worker predicts photos that have been waiting in one batch with the photo its
task is for; a lone photo is predicted alone and at once; every photo is stored exactly once."""

from datetime import timedelta

import pytest
from django.core.files.base import ContentFile
from django.utils import timezone

from classifier.inference import LoadedModel
from labeling.models import Photo, Prediction
from labeling.services import photo_predict
from tests.factories import PhotoFactory


@pytest.fixture
def predict_calls(monkeypatch):
    """Records the paths of every prediction the worker makes, predicting as usual."""
    calls = []
    original = LoadedModel.predict_paths_with_features

    def spy(self, paths):
        calls.append(list(paths))
        return original(self, paths)

    monkeypatch.setattr(LoadedModel, "predict_paths_with_features", spy)
    return calls


def _waiting(n, seconds=5, **kwargs):
    """Queued photos uploaded `seconds` ago, oldest first."""
    now = timezone.now()
    return [PhotoFactory(uploaded_at=now - timedelta(seconds=seconds + n - i), **kwargs) for i in range(n)]


@pytest.mark.django_db
def test_a_lone_photo_is_predicted_alone(active_model, predict_calls):
    photo = PhotoFactory()

    photo_predict(photo.id)

    assert predict_calls == [[photo.image.path]]
    assert Prediction.objects.filter(photo=photo).count() == 1


@pytest.mark.django_db
def test_photos_that_have_waited_are_predicted_in_the_same_batch_and_stored_once(active_model, predict_calls):
    waiting = _waiting(3)
    photo = PhotoFactory()

    returned = photo_predict(photo.id)

    assert predict_calls == [[photo.image.path] + [p.image.path for p in waiting]]
    assert returned.id == photo.id and returned.status != Photo.Status.QUEUED
    for p in [photo, *waiting]:
        p.refresh_from_db()
        assert p.status in (Photo.Status.FINAL, Photo.Status.NEEDS_REVIEW)
        assert Prediction.objects.filter(photo=p).count() == 1
        assert Prediction.objects.get(photo=p).model_version == active_model

    # Their own tasks come later and find nothing to do.
    before = {p.id: (p.status, p.decided_at, p.reason) for p in waiting}
    for p in waiting:
        photo_predict(p.id)
    assert len(predict_calls) == 1
    for p in waiting:
        p.refresh_from_db()
        assert (p.status, p.decided_at, p.reason) == before[p.id]
        assert Prediction.objects.filter(photo=p).count() == 1


@pytest.mark.django_db
def test_a_batched_photo_gets_the_probabilities_it_would_get_alone(active_model):
    from classifier.inference import model_cache

    waiting = _waiting(2)
    photo = PhotoFactory()
    model = model_cache.get(active_model.id, active_model.path, active_model.sha256)
    alone = {p.id: model.predict_paths([p.image.path])[0] for p in [photo, *waiting]}

    photo_predict(photo.id)

    for p in [photo, *waiting]:
        stored = Prediction.objects.get(photo=p).probabilities
        assert stored.keys() == alone[p.id].keys()
        assert max(abs(stored[k] - alone[p.id][k]) for k in stored) <= 1e-4


@pytest.mark.django_db
def test_photos_uploaded_a_moment_ago_are_left_to_their_own_task(active_model, predict_calls, settings):
    settings.INFERENCE_BATCH_WAIT = 30
    recent = _waiting(2, seconds=1)
    photo = PhotoFactory()

    photo_predict(photo.id)

    assert predict_calls == [[photo.image.path]]
    assert all(Photo.objects.get(id=p.id).status == Photo.Status.QUEUED for p in recent)


@pytest.mark.django_db
def test_a_batch_holds_at_most_inference_batch_size_photos_oldest_first(active_model, predict_calls, settings):
    settings.INFERENCE_BATCH_SIZE = 3
    waiting = _waiting(5)
    photo = PhotoFactory()

    photo_predict(photo.id)

    assert predict_calls == [[photo.image.path, waiting[0].image.path, waiting[1].image.path]]
    assert [Photo.objects.get(id=p.id).status == Photo.Status.QUEUED for p in waiting] == [False, False] + [True] * 3


@pytest.mark.django_db
def test_a_batch_size_of_one_turns_batching_off(active_model, predict_calls, settings):
    settings.INFERENCE_BATCH_SIZE = 1
    _waiting(2)
    photo = PhotoFactory()

    photo_predict(photo.id)

    assert predict_calls == [[photo.image.path]]


@pytest.mark.django_db
def test_a_batch_mate_with_a_broken_file_does_not_fail_the_photo(active_model, predict_calls, monkeypatch,
                                                                 django_capture_on_commit_callbacks):
    from labeling.tasks import photo_predict_task

    (broken,) = _waiting(1, image=ContentFile(b"not an image at all", name="broken.jpg"))
    photo = PhotoFactory()
    sent = []
    monkeypatch.setattr(photo_predict_task, "delay", sent.append)

    with django_capture_on_commit_callbacks(execute=True):
        photo_predict(photo.id)

    assert predict_calls == [[photo.image.path, broken.image.path], [photo.image.path]]
    assert Prediction.objects.filter(photo=photo).count() == 1
    broken.refresh_from_db()
    assert broken.status == Photo.Status.QUEUED  # its own task reports its own failure:
    assert broken.batch_claimed_until is None and sent == [broken.id]  # released and sent again
    with pytest.raises(Exception):
        photo_predict(broken.id)
    assert not Prediction.objects.filter(photo=broken).exists()


@pytest.mark.django_db
def test_photos_another_worker_has_claimed_are_not_taken_into_a_second_batch(active_model, predict_calls):
    claimed, free = _waiting(2), _waiting(2, seconds=3)
    Photo.objects.filter(id__in=[p.id for p in claimed]).update(
        batch_claimed_until=timezone.now() + timedelta(seconds=30))
    photo = PhotoFactory()

    photo_predict(photo.id)

    assert predict_calls == [[photo.image.path] + [p.image.path for p in free]]
    assert all(Photo.objects.get(id=p.id).status == Photo.Status.QUEUED for p in claimed)


@pytest.mark.django_db
def test_a_lapsed_claim_no_longer_keeps_a_photo_out_of_batches(active_model, predict_calls):
    (lapsed,) = _waiting(1)
    Photo.objects.filter(id=lapsed.id).update(batch_claimed_until=timezone.now() - timedelta(seconds=1))
    photo = PhotoFactory()

    photo_predict(photo.id)

    assert predict_calls == [[photo.image.path, lapsed.image.path]]


@pytest.mark.django_db
def test_a_photo_in_another_tasks_batch_is_left_to_that_batch(active_model, predict_calls):
    # Predicting it here too was most of the worker's extra CPU with 16 uploads in flight.
    photo = PhotoFactory(uploaded_at=timezone.now() - timedelta(seconds=5))
    Photo.objects.filter(id=photo.id).update(batch_claimed_until=timezone.now() + timedelta(seconds=30),
                                             batch_claimed_by="another-task")

    returned = photo_predict(photo.id, claimant="this-task")

    assert predict_calls == []
    assert returned.status == Photo.Status.QUEUED and not Prediction.objects.filter(photo=photo).exists()


@pytest.mark.django_db
def test_a_task_run_again_takes_back_the_batch_it_had_claimed(active_model, predict_calls):
    # A retry, or the redelivery of a task whose worker process was killed: same task id.
    mates = _waiting(2)
    photo = PhotoFactory()
    Photo.objects.filter(id__in=[photo.id] + _ids(mates)).update(
        batch_claimed_until=timezone.now() + timedelta(seconds=30), batch_claimed_by="task-1")

    photo_predict(photo.id, claimant="task-1")

    assert predict_calls == [[photo.image.path] + [p.image.path for p in mates]]
    assert Prediction.objects.filter(photo_id__in=[photo.id] + _ids(mates)).count() == 3


@pytest.mark.django_db
def test_a_task_that_failed_between_storing_its_photo_and_its_mates_sends_the_mates_again_when_retried(
        active_model, predict_calls, monkeypatch, django_capture_on_commit_callbacks):
    from django.db import OperationalError

    from labeling import services
    from labeling.tasks import photo_predict_task

    mates = _waiting(2)
    photo = PhotoFactory()
    store = services._store_prediction
    calls = []

    def database_gone_after_the_first(photo_id, *args):
        calls.append(photo_id)
        if len(calls) > 1:
            raise OperationalError("the database went away")
        return store(photo_id, *args)

    monkeypatch.setattr(services, "_store_prediction", database_gone_after_the_first)
    with pytest.raises(OperationalError):
        photo_predict(photo.id, claimant="task-1")
    monkeypatch.setattr(services, "_store_prediction", store)
    assert Photo.objects.get(id=photo.id).status != Photo.Status.QUEUED
    assert all(Photo.objects.get(id=m.id).status == Photo.Status.QUEUED for m in mates)
    # Their own tasks leave them to the failed task's batch, whose claim is still live.
    assert photo_predict(mates[0].id, claimant="mate-task").status == Photo.Status.QUEUED
    sent = []
    monkeypatch.setattr(photo_predict_task, "delay", sent.append)

    with django_capture_on_commit_callbacks(execute=True):
        photo_predict(photo.id, claimant="task-1")  # the retry

    assert sorted(sent) == sorted(_ids(mates))
    for mate in mates:
        mate.refresh_from_db()
        assert mate.status == Photo.Status.QUEUED
        assert mate.batch_claimed_until is None and mate.batch_claimed_by == ""
    for mate_id in sent:  # the tasks sent again
        photo_predict(mate_id, claimant=f"sent-again-{mate_id}")
    assert [Prediction.objects.filter(photo_id=p.id).count() for p in [photo, *mates]] == [1, 1, 1]


@pytest.mark.django_db
def test_a_task_whose_photo_another_batch_stored_sends_nothing_again(active_model, predict_calls, monkeypatch,
                                                                     django_capture_on_commit_callbacks):
    from labeling.tasks import photo_predict_task

    (mate,), photo = _waiting(1), PhotoFactory()
    others = _waiting(1, seconds=3)
    Photo.objects.filter(id=others[0].id).update(batch_claimed_until=timezone.now() + timedelta(seconds=30),
                                                 batch_claimed_by="another-task")
    photo_predict(photo.id, claimant="task-1")
    sent = []
    monkeypatch.setattr(photo_predict_task, "delay", sent.append)

    with django_capture_on_commit_callbacks(execute=True):
        photo_predict(mate.id, claimant="the-mates-own-task")

    assert sent == []
    assert Photo.objects.get(id=others[0].id).batch_claimed_by == "another-task"


@pytest.mark.django_db
def test_a_photo_whose_claim_lapsed_is_predicted_by_the_next_task_for_it(active_model, predict_calls):
    # The claiming worker died: the sweeper's task for the photo comes after the claim lapsed.
    photo = PhotoFactory(uploaded_at=timezone.now() - timedelta(minutes=3))
    Photo.objects.filter(id=photo.id).update(batch_claimed_until=timezone.now() - timedelta(seconds=1),
                                             batch_claimed_by="a-dead-task")

    photo_predict(photo.id, claimant="the-sweepers-task")

    assert predict_calls == [[photo.image.path]]
    assert Prediction.objects.filter(photo=photo).count() == 1


@pytest.mark.django_db
def test_the_prediction_task_claims_in_its_own_name(active_model):
    from labeling.tasks import photo_predict_task

    mate = _waiting(1)[0]
    photo = PhotoFactory()

    photo_predict_task.apply(args=[photo.id], task_id="the-task-id", throw=True)

    for p in (photo, mate):
        p.refresh_from_db()
        assert p.status != Photo.Status.QUEUED and p.batch_claimed_by == "the-task-id"


@pytest.mark.django_db
def test_a_batch_claims_its_photos_until_a_minute_from_now(active_model):
    waiting = _waiting(2)
    photo = PhotoFactory()
    before = timezone.now()

    photo_predict(photo.id, claimant="task-1")

    for p in [photo, *waiting]:
        p.refresh_from_db()
        assert before + timedelta(seconds=59) <= p.batch_claimed_until <= timezone.now() + timedelta(seconds=60)
        assert p.batch_claimed_by == "task-1"


def _claim_while_another_claim_is_open(held_photo, then):
    """Two worker processes: the first claims batch-mates for `held_photo` in a transaction it
    keeps open (its row locks held) until the second has run `then()`, or for 15 s.
    Returns (the first's mates, what then() returned, whether the first stopped waiting)."""
    import threading

    from django.db import connection, transaction

    from labeling.services import _claim_batch

    first_holds, second_done = threading.Event(), threading.Event()
    out = {}

    def first():
        try:
            with transaction.atomic():
                out["first"] = _claim_batch(held_photo, "first")
                first_holds.set()
                out["gave_up"] = not second_done.wait(15)
        finally:
            connection.close()

    def second():
        try:
            first_holds.wait(10)
            out["second"] = then()
            second_done.set()
        finally:
            connection.close()

    threads = [threading.Thread(target=first), threading.Thread(target=second)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    return out["first"], out["second"], out["gave_up"]


def _ids(photos):
    return [p.id for p in photos]


@pytest.mark.django_db(transaction=True)
def test_two_workers_claiming_at_the_same_moment_get_disjoint_batches(settings):
    # Two worker processes whose tasks start together while a backlog waits: the second skips
    # the rows the first has locked and not yet committed, and then what it claimed itself.
    from labeling.services import _claim_batch

    settings.INFERENCE_BATCH_SIZE = 4
    backlog = _waiting(8)

    first, (second, third), _ = _claim_while_another_claim_is_open(
        backlog[0], lambda: (_claim_batch(backlog[7], "second"), _claim_batch(backlog[6], "third")))

    assert _ids(first) == _ids(backlog[1:4])
    assert _ids(second) == _ids(backlog[4:7])
    assert third is None  # its photo is in the second's batch: left to it


@pytest.mark.django_db(transaction=True)
def test_a_claim_never_waits_for_another_process_claiming_its_photo(settings):
    # Two processes claiming at once, each taking the other's photo as a batch-mate, used to
    # wait for each other in the UPDATE until PostgreSQL broke the deadlock (after a second).
    from labeling.services import _claim_batch

    settings.INFERENCE_BATCH_SIZE = 4
    backlog = _waiting(8)

    _, second, first_gave_up = _claim_while_another_claim_is_open(  # the first locks backlog[0..2]
        backlog[7], lambda: _claim_batch(backlog[0], "second"))

    assert not first_gave_up  # the second did not wait for the first to commit
    assert _ids(second) == _ids(backlog[3:6])
    backlog[0].refresh_from_db()
    assert backlog[0].batch_claimed_until is not None  # the first process's claim on it stands


@pytest.mark.django_db
def test_a_batch_mate_deleted_while_the_batch_is_predicted_leaves_the_others_and_their_shadow_stored(
        active_model, monkeypatch):
    from classifier.models import ModelVersion, ShadowPrediction
    from tests.factories import ModelVersionFactory

    shadow = ModelVersionFactory(file=active_model.file, sha256=active_model.sha256, is_shadow=True)
    waiting = _waiting(3)
    photo = PhotoFactory()
    gone = waiting[1]
    original = LoadedModel.predict_paths_with_features

    def predict_then_the_owner_deletes_a_photo(self, paths):
        answers = original(self, paths)
        Photo.objects.filter(id=gone.id).delete()
        return answers

    monkeypatch.setattr(LoadedModel, "predict_paths_with_features", predict_then_the_owner_deletes_a_photo)
    photo_predict(photo.id)

    left = [photo, waiting[0], waiting[2]]
    assert Photo.objects.filter(id__in=[p.id for p in left], status=Photo.Status.QUEUED).count() == 0
    assert set(ShadowPrediction.objects.filter(model_version=shadow).values_list("photo_id", flat=True)) == {
        p.id for p in left}
    assert ModelVersion.objects.filter(is_active=True).get() == active_model
