"""Training runs through the service layer: the frozen data, the registry, the one-run slot,
cancellation, redelivery and the API that starts them.

Every training here is tiny (32 px, one epoch, no pretrained weights, a dozen generated
photos): it goes through the real fastai training and export in about a second.
"""

import json
import math
import shutil
from types import SimpleNamespace
from unittest import mock

import pytest
from django.db import transaction
from django.test import override_settings

from classifier import services
from classifier.inference import file_sha256
from classifier.models import ModelActivation, ModelVersion, TrainingRun
from classifier.services import (TrainingRunConflict, training_rows, training_run_cancel,
                                 training_run_execute, training_run_start)
from classifier.training import TrainingOptions, _make_callback, data_hash, is_validation, train
from classifier.demo_images import generate_dataset
from labeling.models import Label, Photo
from labeling.services import photos_import_folder
from tests.factories import LabelFactory, ModelVersionFactory, PhotoFactory, TrainingRunFactory, UserFactory

TINY = {"architecture": "resnet18", "image_size": 32, "epochs": 1, "batch_size": 4, "pretrained": False}
LABELS = ["dieffenbachia", "monstera", "spider_plant"]


def every_fourth_id_is_validation(key, percent=20):
    """A split that is never empty for a dozen consecutive ids (the real one hashes the id,
    and with a dozen photos it leaves the validation split empty about one time in fifteen)."""
    return int(key) % 4 == 0


@pytest.fixture(scope="module")
def plant_folder(tmp_path_factory):
    """DIR/<label>/<file>: four generated photos of each of the three demo plants."""
    directory = tmp_path_factory.mktemp("plants")
    generate_dataset(directory, per_label=4, size=64, seed=2)
    return directory


@pytest.fixture
def fixed_split():
    with mock.patch.object(services, "is_validation", every_fourth_id_is_validation):
        yield


@pytest.fixture
def labelled_photos(staff, plant_folder, fixed_split):
    report = photos_import_folder(directory=plant_folder, owner=staff)
    assert len(report.imported) == 12
    return report


@pytest.fixture(scope="module")
def finished_run(django_db_setup, django_db_blocker, tmp_path_factory, plant_folder):
    """One real run, trained once for the module, inside a transaction that is rolled back.

    It records what the tests read (rows as plain model instances, paths, counts) before the
    rollback, so the tests share the training without sharing database rows.
    """
    media = tmp_path_factory.mktemp("finished-run") / "media"
    media.mkdir()
    with (django_db_blocker.unblock(), override_settings(MEDIA_ROOT=media, MODEL_ROOT=media / "models"),
          mock.patch.object(services, "is_validation", every_fourth_id_is_validation),
          transaction.atomic()):
        staff = UserFactory(username="trainer", is_staff=True)
        photos_import_folder(directory=plant_folder, owner=staff)
        monstera = Label.objects.get(name="monstera")
        by_expert = PhotoFactory(owner=staff, status=Photo.Status.FINAL, final_label=monstera,
                                 label_source=Photo.LabelSource.EXPERT, decided_by=Photo.DecidedBy.EXPERT)
        by_model = PhotoFactory(owner=staff, status=Photo.Status.FINAL, final_label=monstera,
                                label_source=Photo.LabelSource.MODEL, decided_by=Photo.DecidedBy.MODEL)
        PhotoFactory(owner=staff, status=Photo.Status.NEEDS_REVIEW)
        PhotoFactory(owner=staff, status=Photo.Status.REJECTED, label_source="", decided_by=Photo.DecidedBy.EXPERT)
        previous = ModelVersionFactory(is_active=True)

        run = training_run_start(user=staff, options=TINY, activate=True, enqueue=False)
        training_run_execute(run.id)
        run.refresh_from_db()
        version = ModelVersion.objects.get(training_run=run)
        human_verified = [
            [p.id, p.final_label.name, every_fourth_id_is_validation(p.id)]
            for p in Photo.objects.filter(label_source__in=["import", "expert"], status="final").order_by("id")
        ]
        with mock.patch.object(services, "train", wraps=train) as spy:
            again = training_run_execute(run.id)
        result = SimpleNamespace(
            run=run, version=version, model_path=media / "models" / version.file,
            confusion_png=media / "models" / version.metrics["confusion_png"],
            human_verified=human_verified, by_expert_id=by_expert.id, by_model_id=by_model.id,
            active_ids=list(ModelVersion.objects.filter(is_active=True).values_list("id", flat=True)),
            previous_active=ModelVersion.objects.get(id=previous.id).is_active,
            trained_again=spy.call_count, again_status=again.status,
            versions_after_again=ModelVersion.objects.filter(training_run=run).count(),
            activations=list(ModelActivation.objects.filter(version=version).values_list("run_id", "user_id")),
        )
        transaction.set_rollback(True)
    return result


# --- a run that succeeds -------------------------------------------------------------


def test_a_successful_run_ends_succeeded_with_its_version_and_progress_complete(finished_run):
    run = finished_run.run

    assert run.status == TrainingRun.Status.SUCCEEDED, run.error
    assert run.error == ""
    assert run.holds_slot is None
    assert run.progress == 1.0
    assert run.model_version_id == finished_run.version.id
    assert run.finished_at is not None and run.started_at is not None


def test_the_registered_version_records_the_sha256_and_size_of_the_exported_file(finished_run):
    version = finished_run.version

    assert finished_run.model_path.is_file()
    assert version.sha256 == file_sha256(finished_run.model_path)
    assert version.size == finished_run.model_path.stat().st_size
    assert version.labels == LABELS
    assert version.architecture == "resnet18"
    assert version.image_size == 32


def test_the_metrics_give_error_rate_and_precision_recall_f1_for_every_label(finished_run):
    metrics = finished_run.version.metrics

    assert 0.0 <= metrics["error_rate"] <= 1.0
    assert metrics["accuracy"] == pytest.approx(1.0 - metrics["error_rate"])
    assert set(metrics["per_label"]) == set(LABELS)
    for scores in metrics["per_label"].values():
        for name in ("precision", "recall", "f1"):
            assert 0.0 <= scores[name] <= 1.0
    assert finished_run.run.metrics["error_rate"] == metrics["error_rate"]


def test_the_confusion_matrix_is_labels_by_labels_and_counts_every_validation_photo(finished_run):
    metrics = finished_run.version.metrics
    matrix = metrics["confusion_matrix"]
    validation_rows = [row for row in finished_run.run.data if row[2]]

    assert len(matrix) == len(LABELS) and all(len(row) == len(LABELS) for row in matrix)
    assert sum(map(sum, matrix)) == metrics["valid_count"] == len(validation_rows)
    correct = sum(matrix[i][i] for i in range(len(LABELS)))
    assert metrics["error_rate"] == pytest.approx(1 - correct / metrics["valid_count"])


def test_the_calibration_counts_every_validation_photo_and_as_many_right_as_the_confusion_matrix(finished_run):
    metrics = finished_run.version.metrics
    calibration = finished_run.version.calibration()

    assert calibration.photos == metrics["valid_count"]
    assert calibration.accepted(0.0) == (metrics["valid_count"],
                                         sum(metrics["confusion_matrix"][i][i] for i in range(len(LABELS))))
    assert 0.0 <= metrics["calibration"]["ece"] <= 1.0


def test_the_confusion_matrix_picture_is_written_next_to_the_model(finished_run):
    assert finished_run.confusion_png.is_file()
    assert finished_run.confusion_png.read_bytes().startswith(b"\x89PNG")


def test_the_run_freezes_exactly_the_human_verified_photos_as_its_training_data(finished_run):
    run = finished_run.run

    assert run.data == finished_run.human_verified
    assert len(run.data) == 13  # twelve imports and one expert decision
    assert any(row[2] for row in run.data) and not all(row[2] for row in run.data)
    assert run.data_hash == data_hash(run.data)


def test_photos_the_model_labelled_itself_are_left_out_of_the_training_data(finished_run):
    ids = [row[0] for row in finished_run.run.data]

    assert finished_run.by_expert_id in ids
    assert finished_run.by_model_id not in ids


def test_a_run_started_with_activate_makes_its_version_the_only_active_model(finished_run):
    assert finished_run.active_ids == [finished_run.version.id]
    assert finished_run.previous_active is False


def test_executing_a_finished_run_again_does_not_train_again(finished_run):
    assert finished_run.trained_again == 0
    assert finished_run.again_status == TrainingRun.Status.SUCCEEDED
    assert finished_run.versions_after_again == 1


def test_the_training_data_uses_the_stable_hash_split_of_each_photo_id(db, staff):
    label = LabelFactory(name="monstera")
    photos = [PhotoFactory(owner=staff, status=Photo.Status.FINAL, final_label=label,
                           label_source=Photo.LabelSource.IMPORT) for _ in range(5)]

    assert training_rows() == [[p.id, "monstera", is_validation(p.id)] for p in photos]


# --- train() on small data ------------------------------------------------------------


def test_a_training_split_smaller_than_the_batch_size_still_trains_on_one_batch(plant_folder, tmp_path):
    rows = [(str(path), path.parent.name, i % 4 == 0) for i, path in enumerate(sorted(plant_folder.glob("*/*.jpg")))]

    result = train(rows, TrainingOptions(**{**TINY, "batch_size": 32}), tmp_path / "model.pkl")

    assert "Batch size lowered from 32 to 9: the training split has only 9 photos." in result.log
    [epoch] = result.history
    assert isinstance(epoch["train_loss"], float) and math.isfinite(epoch["train_loss"])


def test_the_learning_rate_finder_leaves_nothing_in_the_directory_the_worker_started_in(
        plant_folder, tmp_path, monkeypatch):
    started_in = tmp_path / "cwd"
    started_in.mkdir()
    monkeypatch.chdir(started_in)
    from functools import partialmethod

    from fastai.vision.all import Learner  # with lr_find, which fastai.callback.schedule adds

    # Fewer steps than the finder's 100 (a minute and a half here); it saves its weights all the same.
    monkeypatch.setattr(Learner, "lr_find", partialmethod(Learner.lr_find, num_it=20))
    rows = [(str(path), path.parent.name, i % 4 == 0) for i, path in enumerate(sorted(plant_folder.glob("*/*.jpg")))]

    result = train(rows, TrainingOptions(**{**TINY, "learning_rate": None}), tmp_path / "model.pkl")

    assert any(line.startswith("Learning-rate finder suggests") for line in result.log)
    assert list(started_in.iterdir()) == []


def test_a_diverged_loss_is_recorded_as_null_so_the_history_stays_valid_json():
    reports = []
    callback = _make_callback(lambda **kw: reports.append(kw), lambda: False)
    callback.learn = SimpleNamespace(n_iter=3, recorder=SimpleNamespace(
        metric_names=["epoch", "train_loss", "valid_loss", "error_rate", "time"],
        values=[[float("nan"), float("inf"), 0.5]]))

    callback.after_epoch()

    assert callback.history == [{"epoch": 1, "train_loss": None, "valid_loss": None, "error_rate": 0.5}]
    json.dumps(reports[-1]["history"], allow_nan=False)


# --- one run at a time ---------------------------------------------------------------


def test_a_second_start_while_a_run_is_queued_is_refused_with_a_conflict(db, staff):
    first = training_run_start(user=staff, options=TINY, enqueue=False)

    with pytest.raises(TrainingRunConflict, match=f"Training run {first.id} is still queued"):
        training_run_start(user=staff, options=TINY, enqueue=False)
    assert TrainingRun.objects.count() == 1


def test_the_api_accepts_a_run_with_202_and_queues_it_after_the_commit(db, staff, api_for,
                                                                      django_capture_on_commit_callbacks):
    with mock.patch.object(services, "_enqueue_training") as enqueue, \
            django_capture_on_commit_callbacks(execute=True):
        response = api_for(staff).post("/api/v1/training-runs/", {**TINY, "activate": True}, format="json")

    assert response.status_code == 202, response.data
    run = TrainingRun.objects.get(id=response.data["id"])
    assert response.data["status"] == "queued"
    assert run.options == {**TINY, "learning_rate": 2e-3, "seed": 42, "cleaning_folds": 0, "activate": True,
                           "include_model_labels": False}
    enqueue.assert_called_once_with(run.id)


def test_the_api_answers_409_with_a_message_while_a_run_is_active(db, staff, api_for):
    client = api_for(staff)
    with mock.patch.object(services, "_enqueue_training"):
        first = client.post("/api/v1/training-runs/", TINY, format="json")
        second = client.post("/api/v1/training-runs/", TINY, format="json")

    assert first.status_code == 202
    assert second.status_code == 409
    assert f"Training run {first.data['id']} is still queued" in second.data["detail"]
    assert TrainingRun.objects.count() == 1


@pytest.mark.parametrize("options", [{"architecture": "vgg"}, {"epochs": 0}, {"image_size": 8}])
def test_the_api_refuses_bad_options_with_400_and_records_no_run(db, staff, api_for, options):
    with mock.patch.object(services, "_enqueue_training") as enqueue:
        response = api_for(staff).post("/api/v1/training-runs/", options, format="json")

    assert response.status_code == 400
    assert set(options) <= set(response.data)
    assert not TrainingRun.objects.exists()
    enqueue.assert_not_called()


def test_the_service_refuses_unknown_architectures_and_options(db, staff):
    with pytest.raises(ValueError, match="vgg"):
        training_run_start(user=staff, options={"architecture": "vgg"}, enqueue=False)
    with pytest.raises(ValueError, match="colour"):
        training_run_start(user=staff, options={"colour": "green"}, enqueue=False)
    assert not TrainingRun.objects.exists()


def test_members_may_not_start_training_runs(db, member, api_for):
    response = api_for(member).post("/api/v1/training-runs/", TINY, format="json")

    assert response.status_code == 403
    assert not TrainingRun.objects.exists()


# --- cancelling, redelivery and bad data --------------------------------------------


def test_cancelling_a_queued_run_ends_it_frees_the_slot_and_keeps_the_active_model(db, staff):
    active = ModelVersionFactory(is_active=True)
    run = training_run_start(user=staff, options=TINY, enqueue=False)

    assert training_run_cancel(run_id=run.id) is True

    run.refresh_from_db()
    assert run.status == TrainingRun.Status.CANCELLED
    assert run.holds_slot is None
    assert "active model is unchanged" in run.error
    assert list(ModelVersion.objects.filter(is_active=True)) == [active]
    # The slot is free: the next run may start, and executing the cancelled one does nothing.
    assert training_run_start(user=staff, options=TINY, enqueue=False).status == TrainingRun.Status.QUEUED
    assert training_run_execute(run.id).status == TrainingRun.Status.CANCELLED


def test_cancelling_a_running_run_stops_the_training_and_registers_no_version(db, staff, labelled_photos):
    active = ModelVersionFactory(is_active=True)
    run = training_run_start(user=staff, options=TINY, activate=True, enqueue=False)
    real_training_rows = services.training_rows

    def rows_then_cancel(**kwargs):
        # Called once the run is claimed (running): an admin presses cancel at that moment.
        assert training_run_cancel(run_id=run.id) is True
        return real_training_rows(**kwargs)

    with mock.patch.object(services, "training_rows", rows_then_cancel), \
            mock.patch.object(services, "train", wraps=train) as spy:
        training_run_execute(run.id)

    run.refresh_from_db()
    assert spy.call_count == 1
    assert run.status == TrainingRun.Status.CANCELLED, run.error
    assert run.history == []  # stopped at its first batch, before an epoch completed
    assert run.cancel_requested is True
    assert run.holds_slot is None
    assert run.model_version is None
    assert list(ModelVersion.objects.all()) == [active]
    assert ModelVersion.objects.get(id=active.id).is_active


def test_a_redelivered_run_still_marked_running_is_failed_because_its_worker_stopped(db, staff):
    run = TrainingRunFactory(status=TrainingRun.Status.RUNNING, holds_slot=True, options={**TINY, "activate": False})

    with mock.patch.object(services, "train") as spy:
        training_run_execute(run.id)

    run.refresh_from_db()
    spy.assert_not_called()
    assert run.status == TrainingRun.Status.FAILED
    assert run.error == "The worker running this training stopped before it finished."
    assert run.holds_slot is None
    assert run.finished_at is not None
    assert training_run_start(user=staff, options=TINY, enqueue=False).status == TrainingRun.Status.QUEUED


def test_a_run_over_photos_of_a_single_label_fails_with_a_clear_error(db, staff, plant_folder, fixed_split, tmp_path):
    shutil.copytree(plant_folder / "monstera", tmp_path / "single" / "monstera")
    assert len(photos_import_folder(directory=tmp_path / "single", owner=staff).imported) == 4
    run = training_run_start(user=staff, options=TINY, enqueue=False)

    training_run_execute(run.id)

    run.refresh_from_db()
    assert run.status == TrainingRun.Status.FAILED
    assert "at least two labels" in run.error
    assert run.holds_slot is None
    assert not ModelVersion.objects.exists()



# --- a run that ends otherwise while its training is finishing ------------------------


def _model_files(settings, run):
    return sorted(p.name for p in settings.MODEL_ROOT.glob(f"model-{run.id}-*")) if settings.MODEL_ROOT.exists() else []


def test_a_run_the_sweeper_failed_while_it_trained_stays_failed_and_keeps_no_model(db, staff, labelled_photos,
                                                                                    settings):
    from datetime import timedelta

    active = ModelVersionFactory(is_active=True)
    run = training_run_start(user=staff, options=TINY, activate=True, enqueue=False)

    def train_while_the_sweeper_gives_up(*args, **kwargs):
        result = train(*args, **kwargs)
        # The heartbeat looked stale: the sweeper fails the run and frees the slot meanwhile.
        assert services.training_runs_fail_stale(older_than=timedelta(0)) == 1
        return result

    with mock.patch.object(services, "train", train_while_the_sweeper_gives_up):
        training_run_execute(run.id)

    run.refresh_from_db()
    assert run.status == TrainingRun.Status.FAILED
    assert run.error == services.WORKER_LOST
    assert run.model_version is None
    assert list(ModelVersion.objects.all()) == [active] and ModelVersion.objects.get(id=active.id).is_active
    assert _model_files(settings, run) == []


def test_a_cancel_that_comes_after_the_last_batch_still_cancels_the_run(db, staff, labelled_photos, settings):
    active = ModelVersionFactory(is_active=True)
    run = training_run_start(user=staff, options=TINY, activate=True, enqueue=False)

    def train_then_cancel(*args, **kwargs):
        result = train(*args, **kwargs)
        assert training_run_cancel(run_id=run.id) is True  # pressed during the export, say
        return result

    with mock.patch.object(services, "train", train_then_cancel):
        training_run_execute(run.id)

    run.refresh_from_db()
    assert run.status == TrainingRun.Status.CANCELLED
    assert run.model_version is None and run.holds_slot is None
    assert list(ModelVersion.objects.all()) == [active] and ModelVersion.objects.get(id=active.id).is_active
    assert _model_files(settings, run) == []


@pytest.mark.django_db(transaction=True)
def test_the_heartbeat_goes_on_through_steps_without_training_batches(monkeypatch):
    """The learning-rate finder, evaluation and export report no batches; the run must not look dead then."""
    import time

    monkeypatch.setattr(services, "HEARTBEAT_SECONDS", 0.05)
    staff = UserFactory(is_staff=True)
    run = training_run_start(user=staff, options=TINY, enqueue=False)
    seen = []

    def a_long_step_without_batches(*args, **kwargs):
        seen.append(TrainingRun.objects.get(id=run.id).heartbeat_at)
        time.sleep(0.5)
        seen.append(TrainingRun.objects.get(id=run.id).heartbeat_at)
        raise RuntimeError("stopped here")

    with mock.patch.object(services, "train", a_long_step_without_batches):
        training_run_execute(run.id)

    assert seen[1] > seen[0]
    run.refresh_from_db()
    assert run.status == TrainingRun.Status.FAILED and run.error == "RuntimeError: stopped here"


def test_a_photo_whose_file_is_missing_is_left_out_and_named_and_the_run_still_succeeds(db, staff, labelled_photos):
    lost = Photo.objects.order_by("id")[1]
    lost.image.storage.delete(lost.image.name)
    run = training_run_start(user=staff, options=TINY, enqueue=False)

    run = training_run_execute(run.id)

    assert run.status == TrainingRun.Status.SUCCEEDED, run.error
    assert lost.id not in [pid for pid, _, _ in run.data] and len(run.data) == 11
    assert run.metrics["missing_files"] == [lost.id]
    assert run.log.startswith(f"Left out 1 photo(s) whose file is missing: [{lost.id}].")


def test_a_run_interrupted_by_ctrl_c_ends_cancelled_and_frees_the_slot(db, staff, labelled_photos, monkeypatch):
    def pressed_ctrl_c(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(services, "train", pressed_ctrl_c)
    run = training_run_start(user=staff, options=TINY, enqueue=False)

    with pytest.raises(KeyboardInterrupt):
        training_run_execute(run.id)

    run.refresh_from_db()
    assert (run.status, run.holds_slot, run.error) == (TrainingRun.Status.CANCELLED, None, services.INTERRUPTED)
    assert training_run_start(user=staff, options=TINY, enqueue=False).status == TrainingRun.Status.QUEUED


def test_a_run_the_queue_could_not_take_ends_failed_and_frees_the_slot(db, staff, api_for,
                                                                      django_capture_on_commit_callbacks):
    from kombu.exceptions import OperationalError

    with mock.patch("classifier.tasks.training_run_execute.apply_async", side_effect=OperationalError("refused")), \
            django_capture_on_commit_callbacks(execute=True):
        response = api_for(staff).post("/api/v1/training-runs/", TINY, format="json")

    run = TrainingRun.objects.get(id=response.json()["id"])
    assert (run.status, run.holds_slot, run.error) == (TrainingRun.Status.FAILED, None, services.UNSENT)
    with mock.patch("classifier.tasks.training_run_execute.apply_async"), django_capture_on_commit_callbacks(execute=True):
        assert api_for(staff).post("/api/v1/training-runs/", TINY, format="json").status_code == 202


def test_a_run_started_with_activate_leaves_a_version_someone_activated_while_it_trained(db, staff, labelled_photos):
    # An admin rolled back to `chosen` while the run trained: the run's starter never saw that
    # choice, so the run does not overwrite it; its version is kept, ready to be activated.
    ModelVersionFactory(is_active=True)
    chosen = ModelVersionFactory()
    run = training_run_start(user=staff, options=TINY, activate=True, enqueue=False)

    def train_while_an_admin_activates_another(*args, **kwargs):
        services.model_version_activate(version_id=chosen.id)
        return train(*args, **kwargs)

    with mock.patch.object(services, "train", train_while_an_admin_activates_another):
        training_run_execute(run.id)

    run.refresh_from_db()
    assert run.status == TrainingRun.Status.SUCCEEDED
    assert list(ModelVersion.objects.filter(is_active=True).values_list("id", flat=True)) == [chosen.id]
    assert f"Not activated: version {chosen.id} was activated while this run trained" in run.log
    assert run.model_version.is_active is False


def test_a_run_started_with_activate_is_named_in_the_activation_history(finished_run):
    assert finished_run.activations == [(finished_run.run.id, None)]
