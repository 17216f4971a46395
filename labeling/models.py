import secrets
import uuid

from django.conf import settings
from django.db import models, transaction
from django.db.models.signals import post_delete
from django.dispatch import receiver
from django.utils import timezone

EXPERTS_GROUP = "experts"


def is_expert(user):
    """Experts and staff may review; everyone else may only upload and read their own."""
    if not user.is_authenticated:
        return False
    if user.is_staff:
        return True
    return user.groups.filter(name=EXPERTS_GROUP).exists()


class Label(models.Model):
    name = models.SlugField(max_length=64, unique=True)
    description = models.TextField(blank=True)
    created_at = models.DateTimeField(default=timezone.now)
    # A label in use is retired, never deleted: its photos and decisions keep pointing at it.
    retired = models.BooleanField(default=False)
    # A label whose mistakes cost too much (a poisonous look-alike): the model's answer with it
    # always goes to an expert, however sure the model is.
    always_review = models.BooleanField(default=False)
    # A label whose mistakes cost more than most: the model saves this answer on its own only at
    # or above this confidence, when it is higher than CONFIDENCE_THRESHOLD (null: the site's).
    threshold = models.FloatField(null=True, blank=True)
    # A few photos shown to labellers and experts as what this label looks like.
    examples = models.ManyToManyField("Photo", blank=True, related_name="example_of")

    class Meta:
        ordering = ["name"]

    def __str__(self):
        return self.name

    # The labels the model may not save on its own (Photo.why_an_expert_decides) as a filter:
    # nobody may give a retired one, and an always-reviewed one waits for an expert.
    NOT_SAVED_BY_MODEL = models.Q(retired=True) | models.Q(always_review=True)

    def threshold_in_force(self, site_threshold: float) -> float:
        """The confidence the model needs to save this answer on its own: the higher of the
        site's threshold and the label's own. A label's own threshold can only ask for more."""
        return max(float(site_threshold), self.threshold if self.threshold is not None else 0.0)

    def current_examples(self):
        """The examples still decided with this label: one corrected to another label (or
        rejected) since it was chosen no longer shows what this one looks like. Reads
        `examples`, so a prefetch of it serves a list of labels without a query each."""
        return [photo for photo in self.examples.all() if photo.is_example_of(self)]


class LabelChange(models.Model):
    """Who changed a label, and how. Its settings decide what the model may save on its own
    (always checked, retired), so turning one off must leave a trace."""

    label = models.ForeignKey(Label, on_delete=models.CASCADE, related_name="changes")
    user = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL,
                             related_name="+")
    what = models.CharField(max_length=200)
    created_at = models.DateTimeField(default=timezone.now)

    class Meta:
        ordering = ["-created_at", "-id"]


def photo_file_name(extension):
    return f"photos/{uuid.uuid4().hex}.{extension}"


class Photo(models.Model):
    class Status(models.TextChoices):
        QUEUED = "queued"
        FINAL = "final"
        NEEDS_REVIEW = "needs_review"
        REJECTED = "rejected"
        FAILED = "failed"

    class DecidedBy(models.TextChoices):
        MODEL = "model"
        EXPERT = "expert"
        IMPORT = "import"
        CONSENSUS = "consensus"
        LABELLER = "labeller", "one labeller"

    class LabelSource(models.TextChoices):
        IMPORT = "import"        # arrived labelled (import_photos, bulk upload with a label)
        CONSENSUS = "consensus"  # enough labellers agreed
        # The one labeller asked (LABELLING_OVERLAP 1): a person's word, but nobody agreed with it.
        LABELLER = "labeller", "one labeller"
        EXPERT = "expert"        # an expert decided (review, adjudication, cleaning)
        AUDIT = "audit"          # an expert confirmed or corrected an audited auto-accept
        MODEL = "model"          # auto-accepted, never checked by a person

    class ReviewKind(models.TextChoices):
        """Why a photo is in the expert queue."""
        UNCERTAIN = "uncertain"        # the model was not sure enough (or no model is active)
        AUDIT = "audit"                # a random sample of what the model would have auto-accepted
        ADJUDICATION = "adjudication"  # labellers disagreed

    TERMINAL = (Status.FINAL, Status.REJECTED, Status.FAILED)
    # Sources a person vouched for: the only ones retraining uses by default. A single labeller's
    # label is one; a run's data counts it under its own source, apart from consensus.
    HUMAN_VERIFIED_SOURCES = (LabelSource.IMPORT, LabelSource.CONSENSUS, LabelSource.LABELLER, LabelSource.EXPERT,
                              LabelSource.AUDIT)

    owner = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="photos")
    image = models.FileField(upload_to="photos/", max_length=255)
    # A downscaled JPEG (longer side WORKING_COPY_MAX_SIDE) stored at upload when the original is
    # larger, so that inference and training never decode a 12-megapixel file again. The original
    # stays what is served, exported and backed up as the photo.
    working_image = models.FileField(upload_to="photos/", max_length=255, blank=True)
    width = models.PositiveIntegerField(default=0)
    height = models.PositiveIntegerField(default=0)
    sha256 = models.CharField(max_length=64, db_index=True)  # of the bytes uploaded
    # Of the stored file, re-encoded without metadata: what an export holds. Importing the site's
    # own export (or a file it served) is then known as a duplicate too. Migration 0009 read it
    # from the files of photos stored before; blank only where that file was missing.
    stored_sha256 = models.CharField(max_length=64, blank=True, db_index=True)
    synthetic = models.BooleanField(default=False, help_text="Generated demo image, not a real photo.")
    status = models.CharField(max_length=16, choices=Status.choices, default=Status.QUEUED, db_index=True)
    uploaded_at = models.DateTimeField(default=timezone.now, db_index=True)
    final_label = models.ForeignKey(Label, null=True, blank=True, on_delete=models.PROTECT, related_name="+")
    label_source = models.CharField(max_length=16, choices=LabelSource.choices, blank=True)
    decided_by = models.CharField(max_length=16, choices=DecidedBy.choices, blank=True)
    reviewed_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    decided_at = models.DateTimeField(null=True, blank=True)
    reason = models.TextField(blank=True)
    attempts = models.PositiveIntegerField(default=0)
    # When the sweeper last sent the photo again: once per SWEEP_QUEUED_AFTER_SECONDS, not on
    # every sweep (during an outage each stuck photo piled up two messages a minute).
    resent_at = models.DateTimeField(null=True, blank=True)
    # Set by data cleaning: kept, shown, restorable, but left out of training runs.
    excluded_from_training = models.BooleanField(default=False)
    review_kind = models.CharField(max_length=16, choices=ReviewKind.choices, blank=True)
    # The review claim: a lease, so that two experts never work the same photo and a lapsed
    # claim returns the photo to the queue.
    claimed_by = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL,
                                   related_name="+")
    claim_expires_at = models.DateTimeField(null=True, blank=True)
    # While a worker process predicts a queued photo in a batch, until when no other process
    # predicts it, and which task claimed it (labeling.services.photo_predict).
    batch_claimed_until = models.DateTimeField(null=True, blank=True, editable=False)
    batch_claimed_by = models.CharField(max_length=64, blank=True, editable=False)

    class Meta:
        ordering = ["-uploaded_at", "-id"]

    def __str__(self):
        return f"Photo {self.pk} ({self.status})"

    @classmethod
    def from_db(cls, db, field_names, values):
        photo = super().from_db(db, field_names, values)
        photo._remember_result()
        return photo

    def refresh_from_db(self, using=None, fields=None, **kwargs):
        super().refresh_from_db(using=using, fields=fields, **kwargs)
        if fields is None or {"status", "final_label", "final_label_id"} & set(fields):
            self._remember_result()  # what the database now holds is what a save changes

    def _remember_result(self):
        # What save() compares with, to tell webhooks of a change of result (labeling.webhooks);
        # None when a query deferred either field (it was then not read, so not changed).
        known = "status" in self.__dict__ and "final_label_id" in self.__dict__
        self._saved_result = (self.status, self.final_label_id) if known else None

    def save(self, *args, **kwargs):
        created = self._state.adding
        before = getattr(self, "_saved_result", None)
        with transaction.atomic(savepoint=False):  # the change and the webhooks' record of it, or neither
            super().save(*args, **kwargs)
            if not created and before is not None:
                from .webhooks import photo_result_changed

                photo_result_changed(self, before)
        self._remember_result()
        if not created:
            # Pages waiting on this photo (GET /api/v1/photos/updates/) hear of it once it commits.
            from .changes import announce_photo_change

            announce_photo_change(self.pk)

    @property
    def model_input_path(self):
        """The file the model reads: the working copy when there is one, else the original."""
        return self.working_image.path if self.working_image else self.image.path

    @property
    def is_terminal(self):
        return self.status in self.TERMINAL

    def may_be_deleted_by(self, user) -> bool:
        """Its owner (an upload by mistake) or an admin (a privacy request); experts, who see
        every photo, may not delete other people's."""
        return user.is_staff or self.owner_id == user.pk

    def worked_on_by_team(self) -> bool:
        """A labeller voted on it, an expert decided or cleaned it, or an admin chose it as a
        label's example: the team's work, and its label may train the model. Only an admin
        deletes such a photo (labeling.services.photo_delete)."""
        return any(related.exists() for related in (self.votes, self.decisions, self.events, self.example_of))

    def in_batch_of_another_task(self, claimant, now) -> bool:
        """Another task's worker process has claimed this photo for the batch it is predicting
        now, and its claim has not lapsed: that process stores the photo's prediction."""
        return (self.batch_claimed_until is not None and self.batch_claimed_until > now
                and self.batch_claimed_by != claimant)

    @property
    def open_to_labelling(self):
        """No label a person vouched for yet: the shared workspace labels it (auto-accepted by the
        model, or waiting because the model was unsure). Audits and adjudications are for experts.
        selectors.photos_needing_labels is the same rule as a query."""
        if self.excluded_from_training:
            return False
        if self.status == self.Status.FINAL:
            return self.label_source == self.LabelSource.MODEL
        return self.status == self.Status.NEEDS_REVIEW and self.review_kind in (self.ReviewKind.UNCERTAIN, "")

    # --- state changes: the one place where the routing and review rules live ---------

    def label_by_import(self, label):
        """A photo that arrives with a person's label (an import) needs no prediction."""
        self.status = self.Status.FINAL
        self.final_label = label
        self.label_source = self.LabelSource.IMPORT
        self.decided_by = self.DecidedBy.IMPORT
        self.decided_at = timezone.now()

    @staticmethod
    def why_an_expert_decides(prediction, threshold) -> str:
        """Why `prediction` may not be saved at once; "" when it may. threshold: the site's."""
        own = prediction.label.threshold_in_force(threshold)
        if prediction.confidence < own:
            which = f"{own * 100:.3g}% threshold" + (f" for {prediction.label.name}" if own > threshold else "")
            return f"The model is {prediction.confidence:.0%} sure, below the {which}: an expert will decide."
        if prediction.margin <= 0:  # a tie at the top: the label would be whichever came first
            return "The model is as sure of another label as of its first: an expert will decide."
        if prediction.label.retired:  # nobody may give it any more, so the model may not either
            return f"The model's answer, {prediction.label.name}, is a retired label: an expert will decide."
        if prediction.label.always_review:
            return (f"The model's answer, {prediction.label.name}, is always checked by an expert: "
                    "an expert will decide.")
        if prediction.unfamiliar:  # however sure: softmax puts its probability somewhere
            return (f"The photo looks unlike the photos the model learned from (similarity "
                    f"{prediction.familiarity:.3f} with the nearest, below the cut-off of "
                    f"{prediction.familiarity_cutoff:.3f} set from its validation photos): an expert will decide.")
        return ""

    def route(self, prediction, threshold):
        """Confident predictions are saved at once; uncertain ones wait for an expert."""
        why = self.why_an_expert_decides(prediction, threshold)
        if why:
            self.route_to_review(why)
            return
        self.status = self.Status.FINAL
        self.final_label = prediction.label
        self.label_source = self.LabelSource.MODEL
        self.decided_by = self.DecidedBy.MODEL
        self.decided_at = timezone.now()
        self.reason = ""

    def route_to_review(self, reason, kind=ReviewKind.UNCERTAIN):
        self.status = self.Status.NEEDS_REVIEW
        self.review_kind = kind
        self.reason = reason

    def is_example_of(self, label) -> bool:
        """Only a photo decided with a label shows what it looks like (selectors.label_examples
        asks the same of the database)."""
        return self.status == self.Status.FINAL and self.final_label_id == label.id

    def relabel_by(self, user, label):
        """A person corrects the label of a decided photo (data cleaning)."""
        self.final_label = label
        self.label_source = self.LabelSource.EXPERT
        self.decided_by = self.DecidedBy.EXPERT
        self.reviewed_by = user
        self.decided_at = timezone.now()

    def decide_by_expert(self, expert, *, label=None, reason=""):
        """The expert's call is final: a label, or a rejection (not a plant / unusable)."""
        self.status = self.Status.FINAL if label is not None else self.Status.REJECTED
        self.final_label = label
        self.label_source = self.LabelSource.EXPERT if label is not None else ""
        self.decided_by = self.DecidedBy.EXPERT
        self.reviewed_by = expert
        self.decided_at = timezone.now()
        self.reason = reason

    def decide_by_consensus(self, label, *, reason=""):
        """Every labeller gave the same answer: a verified label (or, all saying "not a plant /
        unusable", a rejection). The photo leaves the expert queue if it was there."""
        self._decide_by_votes(label, self.LabelSource.CONSENSUS, self.DecidedBy.CONSENSUS, reason)

    def decide_by_labeller(self, label, *, reason=""):
        """The one labeller asked (LABELLING_OVERLAP 1) answered: decided as by consensus, but
        recorded as one person's word, not as an agreement."""
        self._decide_by_votes(label, self.LabelSource.LABELLER, self.DecidedBy.LABELLER, reason)

    def _decide_by_votes(self, label, source, decided_by, reason):
        self.status = self.Status.FINAL if label is not None else self.Status.REJECTED
        self.final_label = label
        self.label_source = source if label is not None else ""
        self.decided_by = decided_by
        self.reviewed_by = None
        self.decided_at = timezone.now()
        self.reason = reason
        self.review_kind = ""
        self.claimed_by = None
        self.claim_expires_at = None

    def route_to_adjudication(self, reason):
        """The labellers disagreed: an expert adjudicates. Whatever the model had decided is undone."""
        self.final_label = None
        self.label_source = ""
        self.decided_by = ""
        self.reviewed_by = None
        self.decided_at = None
        self.route_to_review(reason, kind=self.ReviewKind.ADJUDICATION)


@receiver(post_delete, sender=Photo)
def _remove_the_files_of_a_deleted_photo(sender, instance, **kwargs):
    """A deleted photo's files go too (the admin's delete, or its owner's account deleted), once
    the delete commits: they stayed on disk, and in every later backup."""
    storage = instance.image.storage
    names = [f.name for f in (instance.image, instance.working_image) if f]
    transaction.on_commit(lambda: [storage.delete(name) for name in names])


@receiver(post_delete, sender=Photo)
def _tell_webhooks_of_a_deleted_photo(sender, instance, **kwargs):
    """However it was deleted (its page, an admin's bulk delete, its owner's account deleted):
    inside the delete's own transaction, like every other event."""
    from .webhooks import photo_deleted

    photo_deleted(instance.pk)


class Prediction(models.Model):
    """What the active model said about a photo. One per photo: a retried task stores one."""

    photo = models.OneToOneField(Photo, on_delete=models.CASCADE, related_name="prediction")
    model_version = models.ForeignKey("classifier.ModelVersion", on_delete=models.PROTECT, related_name="+")
    label = models.ForeignKey(Label, on_delete=models.PROTECT, related_name="+")
    confidence = models.FloatField()
    # Top-1 minus top-2 probability: the queue shows the smallest margins first.
    margin = models.FloatField(db_index=True)
    probabilities = models.JSONField()
    # The cosine similarity of the photo's features with the nearest training photo's
    # (classifier.familiarity), and the cut-off in force when it was predicted: below it the
    # photo is unfamiliar and an expert decides. Null: not measured (a version trained before it
    # was kept), or not checked (UNFAMILIAR_CHECK off).
    familiarity = models.FloatField(null=True, blank=True)
    familiarity_cutoff = models.FloatField(null=True, blank=True)
    created_at = models.DateTimeField(default=timezone.now)

    @staticmethod
    def unfamiliar_q(prefix: str = "") -> models.Q:
        """Predictions whose photo was unfamiliar, as a filter (prefix: "prediction__" from Photo).
        The isnull terms make its negation keep the unmeasured ones: NOT (x < NULL) is not true."""
        return models.Q(**{f"{prefix}familiarity__isnull": False, f"{prefix}familiarity_cutoff__isnull": False,
                           f"{prefix}familiarity__lt": models.F(f"{prefix}familiarity_cutoff")})

    @property
    def unfamiliar(self) -> bool:
        """The photo looked unlike every photo the model learned from (Prediction.unfamiliar_q)."""
        return (self.familiarity is not None and self.familiarity_cutoff is not None
                and self.familiarity < self.familiarity_cutoff)

    @property
    def ranked(self):
        """(label, probability) pairs, most likely first, for display. A probability the model
        gave as NaN or infinity is stored as null (JSON has neither) and listed last."""
        return sorted(self.probabilities.items(), key=lambda kv: -1.0 if kv[1] is None else kv[1], reverse=True)


class ReviewDecision(models.Model):
    """Every expert decision is kept; a correction adds a record, nothing is overwritten."""

    photo = models.ForeignKey(Photo, on_delete=models.CASCADE, related_name="decisions")
    expert = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="+")
    # review / audit / adjudication as the photo's review_kind was, or correction of an earlier decision.
    kind = models.CharField(max_length=16, default="uncertain")
    label_before = models.ForeignKey(Label, null=True, blank=True, on_delete=models.PROTECT, related_name="+")
    label = models.ForeignKey(Label, null=True, blank=True, on_delete=models.PROTECT, related_name="+")
    rejected = models.BooleanField(default=False)
    reason = models.TextField(blank=True)
    status_before = models.CharField(max_length=16)
    status_after = models.CharField(max_length=16)
    created_at = models.DateTimeField(default=timezone.now)

    class Meta:
        ordering = ["created_at", "id"]


class PhotoEvent(models.Model):
    """Data-cleaning actions on a photo (keep, relabel, exclude, restore), kept for its history."""

    class Action(models.TextChoices):
        KEEP = "keep"
        RELABEL = "relabel"
        EXCLUDE = "exclude"
        RESTORE = "restore"

    photo = models.ForeignKey(Photo, on_delete=models.CASCADE, related_name="events")
    user = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="+")
    action = models.CharField(max_length=16, choices=Action.choices)
    label_before = models.ForeignKey(Label, null=True, blank=True, on_delete=models.PROTECT, related_name="+")
    label_after = models.ForeignKey(Label, null=True, blank=True, on_delete=models.PROTECT, related_name="+")
    model_version = models.ForeignKey("classifier.ModelVersion", null=True, blank=True, on_delete=models.SET_NULL,
                                      related_name="+", help_text="The version whose losses the action was made from.")
    note = models.TextField(blank=True)
    created_at = models.DateTimeField(default=timezone.now)

    class Meta:
        ordering = ["created_at", "id"]


class LabelVote(models.Model):
    """One labeller's label for a photo in the shared workspace (label null: not a plant / unusable)."""

    photo = models.ForeignKey(Photo, on_delete=models.CASCADE, related_name="votes")
    user = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="label_votes")
    label = models.ForeignKey(Label, null=True, blank=True, on_delete=models.PROTECT, related_name="+")
    created_at = models.DateTimeField(default=timezone.now)

    class Meta:
        ordering = ["created_at", "id"]
        constraints = [models.UniqueConstraint(fields=["photo", "user"], name="one_vote_per_labeller")]


class LabellingOutcome(models.Model):
    """What a photo's votes decided, kept for its history: a consensus label, a consensus
    rejection (label null, status_after rejected) or a routing to adjudication (status_after
    needs_review); with LABELLING_OVERLAP 1, one labeller's label or rejection. The votes
    themselves stay in LabelVote."""

    photo = models.ForeignKey(Photo, on_delete=models.CASCADE, related_name="labelling_outcomes")
    label = models.ForeignKey(Label, null=True, blank=True, on_delete=models.PROTECT, related_name="+")
    status_before = models.CharField(max_length=16)
    status_after = models.CharField(max_length=16)
    tally = models.TextField(help_text='The answers counted, e.g. "monstera ×1, not a plant / unusable ×1".')
    created_at = models.DateTimeField(default=timezone.now)

    class Meta:
        ordering = ["created_at", "id"]


class LabellingAssignment(models.Model):
    """A photo served to a labeller: a short lease so that two labellers working at once are
    served different photos while others are available."""

    photo = models.ForeignKey(Photo, on_delete=models.CASCADE, related_name="assignments")
    user = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="+")
    expires_at = models.DateTimeField(db_index=True)

    class Meta:
        constraints = [models.UniqueConstraint(fields=["photo", "user"], name="one_assignment_per_labeller")]


def new_webhook_secret():
    return secrets.token_hex(32)


class Webhook(models.Model):
    """An address told of photo results as they happen (labeling.webhooks): each event is a
    signed POST, kept as a WebhookDelivery until the address has taken it."""

    class Event(models.TextChoices):
        DECIDED = "photo.decided", "photo.decided: a result is saved, or a saved one changes"
        NEEDS_REVIEW = "photo.needs_review", "photo.needs_review: an expert will decide"
        FAILED = "photo.failed", "photo.failed: the prediction failed"
        DELETED = "photo.deleted", "photo.deleted: the photo and its files are gone"
        MODEL_ACTIVATED = "model.activated", "model.activated: another model version answers from now on"

    class Format(models.TextChoices):
        JSON = "json", "JSON: the event as it is, for a program"
        CHAT = "chat", ("Chat: one line of text, for a channel (Slack's incoming webhooks, Mattermost, "
                        "Rocket.Chat, Discord's /slack address)")

    url = models.URLField(max_length=500)
    description = models.CharField(max_length=200, blank=True)
    events = models.JSONField(default=list, help_text="The Event values this address is told of.")
    format = models.CharField(max_length=8, choices=Format.choices, default=Format.JSON)
    # The shared key each body is signed with (HMAC-SHA256): the receiver knows the POST is ours.
    secret = models.CharField(max_length=64, default=new_webhook_secret)
    active = models.BooleanField(default=True)
    created_by = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL,
                                   related_name="+")
    created_at = models.DateTimeField(default=timezone.now)

    class Meta:
        ordering = ["id"]

    def __str__(self):
        return self.url


class WebhookDelivery(models.Model):
    """One event for one webhook: written in the transaction that made the change (nothing is
    told that did not commit, nothing committed goes untold), then sent until the address
    answers 2xx or the attempts run out."""

    class State(models.TextChoices):
        PENDING = "pending"        # waiting for its next attempt (next_attempt_at)
        SENDING = "sending"        # a worker process holds it until lease_until
        DELIVERED = "delivered"    # the address answered 2xx
        FAILED = "failed"          # every attempt failed; an admin may send it again

    PING = "ping"  # a test event an admin sends from the webhook's page

    webhook = models.ForeignKey(Webhook, on_delete=models.CASCADE, related_name="deliveries")
    event = models.CharField(max_length=32)
    # The same on every attempt and on a resend: receivers drop a repeat by it.
    event_id = models.UUIDField(default=uuid.uuid4, editable=False)
    photo_id = models.BigIntegerField(null=True, blank=True, db_index=True)  # not a key: outlives the photo
    payload = models.JSONField()
    state = models.CharField(max_length=16, choices=State.choices, default=State.PENDING)
    attempts = models.PositiveIntegerField(default=0)
    next_attempt_at = models.DateTimeField(default=timezone.now)
    lease_until = models.DateTimeField(null=True, blank=True)
    last_status_code = models.PositiveIntegerField(null=True, blank=True)
    last_error = models.TextField(blank=True)
    last_response = models.TextField(blank=True)  # the start of the address's answer, for the page
    created_at = models.DateTimeField(default=timezone.now)
    delivered_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-id"]
        indexes = [models.Index(fields=["state", "next_attempt_at"], name="webhook_delivery_due")]

    def __str__(self):
        return f"{self.event} #{self.pk} to webhook {self.webhook_id} ({self.state})"
