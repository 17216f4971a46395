"""Data cleaning as in the book's ImageClassifierCleaner: losses from models that did not
train on the photo, actions recorded in the history, and the next run using the cleaned data."""

import pytest
from django.test import Client

from classifier import services
from classifier.models import PhotoLoss, TrainingRun
from classifier.demo_images import generate_dataset
from labeling import services as labeling_services
from labeling.models import Label, Photo, PhotoEvent

TINY = {"image_size": 32, "epochs": 1, "batch_size": 8, "pretrained": False}


@pytest.fixture
def labelled_photos(db, staff, tmp_path, monkeypatch):
    # A fixed split (every 4th photo validates) so that tiny sets never have an empty split.
    monkeypatch.setattr("classifier.services.is_validation", lambda key: int(key) % 4 == 0)
    generate_dataset(tmp_path / "data", per_label=6, size=64, seed=3)
    labeling_services.photos_import_folder(directory=tmp_path / "data", owner=staff)
    return list(Photo.objects.order_by("id"))


def _train(staff, **options):
    run = services.training_run_start(user=staff, options={**TINY, **options}, enqueue=False)
    run = services.training_run_execute(run.id)
    run.refresh_from_db()
    assert run.status == TrainingRun.Status.SUCCEEDED, run.error
    return run


def test_a_run_stores_validation_losses_from_the_model_itself(labelled_photos, staff):
    run = _train(staff)

    losses = PhotoLoss.objects.filter(model_version=run.model_version)
    valid_ids = {pid for pid, _, valid in run.data if valid}
    assert {loss.photo_id for loss in losses} == valid_ids
    assert all(loss.split == "valid" and loss.loss is not None for loss in losses)
    assert all(abs(sum(loss.probabilities.values()) - 1) < 1e-4 for loss in losses)


def test_a_k_fold_cleaning_pass_gives_every_training_photo_an_out_of_sample_loss(labelled_photos, staff):
    run = _train(staff, cleaning_folds=2)

    splits = dict(PhotoLoss.objects.filter(model_version=run.model_version).values_list("photo_id", "split"))
    assert set(splits) == {pid for pid, _, _ in run.data}
    assert {pid for pid, s in splits.items() if s == "train"} == {pid for pid, _, valid in run.data if not valid}
    assert "2-fold" in run.log


def test_a_photo_whose_label_no_other_training_photo_has_is_left_out_of_the_k_fold_losses(labelled_photos, staff):
    # Its fold's model never saw the label, so its loss would be high whatever the label's
    # truth: it would top the cleaner's list of likely mistakes.
    lone = next(p for p in labelled_photos if p.id % 4)
    Photo.objects.filter(id=lone.id).update(final_label=Label.objects.create(name="rare"))

    run = _train(staff, cleaning_folds=2)

    scored = set(PhotoLoss.objects.filter(model_version=run.model_version, split="train")
                 .values_list("photo_id", flat=True))
    training = {pid for pid, _, valid in run.data if not valid}
    assert lone.id in training
    assert scored == training - {lone.id}
    assert "1 photo(s) not scored: no other training photo has their label" in run.log


def test_the_epoch_count_includes_the_cleaning_folds_and_never_passes_the_total(labelled_photos, staff):
    run = _train(staff, cleaning_folds=2)

    assert (run.epoch, run.total_epochs) == (3, 3)  # the main fit and two folds of one epoch each


def test_excluding_a_photo_keeps_it_but_leaves_it_out_of_the_next_run(labelled_photos, staff):
    first = _train(staff)
    photo = labelled_photos[1]

    labeling_services.photo_clean(photo_id=photo.id, user=staff, action="exclude", model_version=first.model_version)
    second = _train(staff)

    assert photo.id in {pid for pid, _, _ in first.data}
    assert photo.id not in {pid for pid, _, _ in second.data}
    assert Photo.objects.filter(id=photo.id).exists()
    labeling_services.photo_clean(photo_id=photo.id, user=staff, action="restore")
    assert photo.id in {row[0] for row in services.training_rows()}


def test_relabelling_changes_the_label_the_next_run_trains_with(labelled_photos, staff):
    photo = labelled_photos[0]
    new_label = "spider_plant" if photo.final_label.name != "spider_plant" else "monstera"

    labeling_services.photo_clean(photo_id=photo.id, user=staff, action="relabel", label_name=new_label)
    run = _train(staff)

    assert [pid_label for pid_label in run.data if pid_label[0] == photo.id][0][1] == new_label
    photo.refresh_from_db()
    assert photo.label_source == "expert" and photo.reviewed_by == staff


def test_every_cleaning_action_is_in_the_photo_history(labelled_photos, staff):
    photo = labelled_photos[2]
    old = photo.final_label.name
    new = "spider_plant" if old != "spider_plant" else "monstera"
    for action, label in (("keep", None), ("exclude", None), ("restore", None), ("relabel", new)):
        labeling_services.photo_clean(photo_id=photo.id, user=staff, action=action, label_name=label)

    assert list(PhotoEvent.objects.filter(photo=photo).values_list("action", flat=True)) == [
        "keep", "exclude", "restore", "relabel"]
    client = Client()
    client.force_login(staff)
    page = client.get(f"/photos/{photo.id}/history/").content.decode()
    assert "exclude" in page and "restore" in page and f"{old} → {new}" in page


def test_an_unknown_cleaning_action_is_refused(labelled_photos, staff):
    with pytest.raises(labeling_services.CleaningError):
        labeling_services.photo_clean(photo_id=labelled_photos[0].id, user=staff, action="delete")
    assert not PhotoEvent.objects.exists()


def test_the_cleaner_page_lists_photos_by_loss_and_records_actions(labelled_photos, staff, member):
    run = _train(staff)
    version = run.model_version
    client = Client()
    client.force_login(staff)

    page = client.get(f"/models/{version.id}/cleaner/?split=valid")
    assert page.status_code == 200
    losses = [item.loss for item in page.context["losses"]]
    assert losses == sorted(losses, reverse=True) and losses
    target = page.context["losses"][0].photo_id
    response = client.post(f"/models/{version.id}/cleaner/{target}/", {"action": "exclude"})
    assert response.status_code == 302
    assert Photo.objects.get(id=target).excluded_from_training
    assert PhotoEvent.objects.get(photo_id=target).model_version == version

    member_client = Client()
    member_client.force_login(member)
    assert member_client.get(f"/models/{version.id}/cleaner/").status_code == 403
    assert client.get(f"/models/{version.id}/top-losses.png").status_code == 200


@pytest.mark.django_db
def test_a_cleaning_action_on_a_photo_that_does_not_exist_is_a_404(expert, active_model):
    client = Client()
    client.force_login(expert)

    response = client.post(f"/models/{active_model.id}/cleaner/987654/", {"action": "keep"})

    assert response.status_code == 404
    assert not PhotoEvent.objects.exists()


@pytest.mark.django_db
def test_a_relabel_from_a_cleaner_page_loaded_before_an_experts_correction_is_refused(expert, member, active_model):
    import re

    from django.utils import timezone

    from labeling import review
    from tests.factories import LabelFactory, PhotoFactory, UserFactory

    monstera, spider, dieff = (LabelFactory(name=n) for n in ("monstera", "spider_plant", "dieffenbachia"))
    photo = PhotoFactory(owner=member, status=Photo.Status.FINAL, final_label=monstera, decided_at=timezone.now())
    PhotoLoss.objects.create(model_version=active_model, photo=photo, label="monstera", split=PhotoLoss.Split.VALID,
                             loss=2.5, probabilities={"monstera": 0.1, "spider_plant": 0.9})
    client = Client()
    client.force_login(expert)
    page = client.get(f"/models/{active_model.id}/cleaner/").content.decode()
    seen = re.search(r'name="decided_at" value="([^"]+)"', page).group(1)
    review.review_correct(photo_id=photo.id, expert=UserFactory(expert=True), label_name="spider_plant")

    response = client.post(f"/models/{active_model.id}/cleaner/{photo.id}/",
                           {"action": "relabel", "label": "dieffenbachia", "decided_at": seen}, follow=True)

    assert f"Photo {photo.id} was decided again after this page was loaded: it is now spider_plant." \
        in response.content.decode()
    photo.refresh_from_db()
    assert photo.final_label == spider
    assert not PhotoEvent.objects.filter(photo=photo).exists()


@pytest.mark.django_db
def test_the_cleaners_label_choice_starts_on_the_photos_label_now_not_the_one_it_was_trained_with(
        expert, member, active_model):
    import re

    from tests.factories import LabelFactory, PhotoFactory

    monstera, spider = LabelFactory(name="monstera"), LabelFactory(name="spider_plant")
    photo = PhotoFactory(owner=member, status=Photo.Status.FINAL, final_label=spider)  # relabelled since
    PhotoLoss.objects.create(model_version=active_model, photo=photo, label="monstera", split=PhotoLoss.Split.VALID,
                             loss=2.5, probabilities={"monstera": 0.1, "spider_plant": 0.9})
    client = Client()
    client.force_login(expert)

    page = client.get(f"/models/{active_model.id}/cleaner/").content.decode()

    # A careless "Change label" must not put back the label an earlier relabel replaced.
    assert re.findall(r'<option value="(\w+)" selected>', page) == ["spider_plant"]


@pytest.mark.django_db
def test_members_are_not_shown_the_top_losses_picture_of_other_members_photos(member, expert, active_model):
    active_model.metrics = {**active_model.metrics, "top_losses_png": "top-losses.png"}
    active_model.save()
    (active_model.path.parent / "top-losses.png").write_bytes(b"\x89PNG")
    member_client, expert_client = Client(), Client()
    member_client.force_login(member)
    expert_client.force_login(expert)

    assert member_client.get(f"/models/{active_model.id}/top-losses.png").status_code == 403
    assert "top-losses.png" not in member_client.get("/models/").content.decode()
    assert expert_client.get(f"/models/{active_model.id}/top-losses.png").status_code == 200
    assert "top-losses.png" in expert_client.get("/models/").content.decode()


@pytest.mark.django_db
@pytest.mark.parametrize("next_url, expected", [
    ("cleaner", None), ("logout", None), ("//evil.example/x", None), ("https://evil.example/", None),
    ("/models/?page=2", "/models/?page=2"),
])
def test_a_cleaning_action_goes_back_only_to_a_path_on_this_site(expert, member, active_model, next_url, expected):
    from tests.factories import PhotoFactory

    photo = PhotoFactory(owner=member)
    client = Client()
    client.force_login(expert)

    response = client.post(f"/models/{active_model.id}/cleaner/{photo.id}/", {"action": "exclude", "next": next_url})

    assert response.status_code == 302
    assert response["Location"] == (expected or f"/models/{active_model.id}/cleaner/")


def test_keeping_the_models_own_label_makes_it_a_label_the_expert_vouched_for(db, expert):
    from tests.factories import LabelFactory, PhotoFactory

    by_model = PhotoFactory(status=Photo.Status.FINAL, final_label=LabelFactory(name="rose"),
                            label_source=Photo.LabelSource.MODEL, decided_by=Photo.DecidedBy.MODEL)
    by_import = PhotoFactory(status=Photo.Status.FINAL, final_label=by_model.final_label,
                             label_source=Photo.LabelSource.IMPORT, decided_by=Photo.DecidedBy.IMPORT)

    for photo in (by_model, by_import):
        labeling_services.photo_clean(photo_id=photo.id, user=expert, action="keep")

    by_model.refresh_from_db()
    assert (by_model.final_label.name, by_model.label_source, by_model.reviewed_by) == ("rose", "expert", expert)
    assert by_model.label_source in Photo.HUMAN_VERIFIED_SOURCES
    by_import.refresh_from_db()
    assert (by_import.label_source, by_import.reviewed_by) == ("import", None)  # a person's label stays theirs
    assert list(PhotoEvent.objects.values_list("action", flat=True)) == ["keep", "keep"]
