"""Where people changed a version's answers on this site: of its predictions people decided,
how many ended with another label or rejected, and the most frequent pairs, on its card."""
import pytest
from django.test import Client

from labeling import services
from labeling.models import Photo
from labeling.review import REJECTED, overturned
from tests.factories import LabelFactory, ModelVersionFactory, PhotoFactory, PredictionFactory


@pytest.fixture
def version(db, member, expert):
    labels = {name: LabelFactory(name=name) for name in ("monstera", "spider_plant", "fern")}
    version = ModelVersionFactory()

    def decided(said, *, kind=Photo.ReviewKind.UNCERTAIN, for_version=version, **decision):
        photo = PhotoFactory(owner=member, status=Photo.Status.NEEDS_REVIEW, review_kind=kind)
        PredictionFactory(photo=photo, model_version=for_version, label=labels[said])
        if decision:
            services.review_decide(photo_id=photo.id, expert=expert, **decision)

    decided("monstera", label_name="spider_plant")
    decided("monstera", label_name="spider_plant")
    decided("monstera", reject=True, reason="a plastic plant")
    decided("monstera", label_name="monstera")                          # confirmed
    decided("fern", kind=Photo.ReviewKind.AUDIT, label_name="monstera")  # an audit that found a mistake
    decided("monstera")                                                 # still waiting
    decided("monstera", for_version=ModelVersionFactory(), label_name="fern")  # another version's
    PredictionFactory(model_version=version, label=labels["monstera"], photo=PhotoFactory(
        owner=member, status=Photo.Status.FINAL, final_label=labels["monstera"], decided_by=Photo.DecidedBy.MODEL))
    return version


def test_only_the_predictions_people_decided_count_and_the_changed_pairs_come_most_first(version):
    result = overturned(version.id)

    assert (result.decided, result.changed, result.share) == (5, 4, 0.8)
    assert result.pairs == [("monstera", "spider_plant", 2), ("fern", "monstera", 1), ("monstera", REJECTED, 1)]


def test_the_pairs_are_cut_at_the_limit_but_the_counts_are_not(version):
    result = overturned(version.id, limit=1)

    assert result.pairs == [("monstera", "spider_plant", 2)] and result.changed == 4


def test_a_version_nobody_decided_for_has_nothing_to_show(db):
    assert overturned(ModelVersionFactory().id).decided == 0


def test_the_versions_card_says_where_people_changed_its_answers(version, member):
    client = Client()
    client.force_login(member)

    card = client.get(f"/models/{version.id}/").content.decode()

    line = card.split('data-role="overturned">')[1].split("</p>")[0]
    assert "people decided 5 of its predictions" in line and "changed 4 (80%)" in line
    assert "monstera → spider_plant 2 · fern → monstera 1 · monstera → rejected 1" in line
    other = ModelVersionFactory()
    assert 'data-role="overturned"' not in client.get(f"/models/{other.id}/").content.decode()


def test_the_review_page_says_how_often_people_changed_this_answer_of_this_version(version, expert, member):
    from labeling.models import Label

    photo = PhotoFactory(owner=member, status=Photo.Status.NEEDS_REVIEW, review_kind=Photo.ReviewKind.UNCERTAIN)
    PredictionFactory(photo=photo, model_version=version, label=Label.objects.get(name="monstera"))
    audit = PhotoFactory(owner=member, status=Photo.Status.NEEDS_REVIEW, review_kind=Photo.ReviewKind.AUDIT)
    PredictionFactory(photo=audit, model_version=version, label=Label.objects.get(name="monstera"))
    client = Client()
    client.force_login(expert)

    page = client.get(f"/review/{photo.id}/").content.decode()

    record = page.split('data-role="answer-record">')[1].split("</p>")[0]
    # monstera: two changed to spider_plant, one rejected, one confirmed; fern's audit is another answer
    assert "People changed 3 of the\n      4 answers \"monstera\" of version" in record and "(75%)" in record
    assert 'data-role="answer-record"' not in client.get(f"/review/{audit.id}/").content.decode()  # blind
