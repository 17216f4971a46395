"""The labelled data set as a zip: one folder per label and a manifest.csv.

The layout is the one fastai's ImageDataLoaders.from_folder and parent_label read, and the one
`manage.py import_photos` imports:

    <label>/photo-<id>.<ext>    the stored (cleaned) photo file, byte for byte
    manifest.csv                file, label, source, who, when, agreement, synthetic
    missing.csv                 only when photos were left out: photo, file, why

By default only labels a person vouched for (imports, consensus, a single labeller's, expert
decisions and audits) are exported; include_model adds the model's own auto-accepted labels.
Photos excluded from training by data cleaning, and the photos of retired labels, are left out,
as training leaves them out. Importing the folder into an empty site gives back the same labelled set, and the
manifest's source, who and when are restored (see restore_provenance).
"""

from __future__ import annotations

import csv
import io
import logging
import os
import tempfile
import zipfile
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath

from django.contrib.auth import get_user_model
from django.utils import timezone
from django.utils.dateparse import parse_datetime
from django.utils.text import slugify

from . import selectors
from .models import LabelVote, Photo

logger = logging.getLogger(__name__)

MANIFEST = "manifest.csv"
# synthetic: "1" for a generated demo image (Photo.synthetic), so that it never passes for a
# real photo in another site or in a model trained from the folder.
MANIFEST_FIELDS = ["file", "label", "source", "who", "when", "agreement", "synthetic"]
MISSING = "missing.csv"
MISSING_FIELDS = ["photo", "file", "why"]
_DECIDED_BY_FOR_SOURCE = {
    Photo.LabelSource.IMPORT: Photo.DecidedBy.IMPORT,
    Photo.LabelSource.CONSENSUS: Photo.DecidedBy.CONSENSUS,
    Photo.LabelSource.LABELLER: Photo.DecidedBy.LABELLER,
    Photo.LabelSource.EXPERT: Photo.DecidedBy.EXPERT,
    Photo.LabelSource.AUDIT: Photo.DecidedBy.EXPERT,
    Photo.LabelSource.MODEL: Photo.DecidedBy.MODEL,
}


@dataclass
class ExportSummary:
    counts: Counter = field(default_factory=Counter)  # label -> photos written
    missing: list = field(default_factory=list)       # photo ids whose file is gone
    left_out: list = field(default_factory=list)      # {photo, file, why} of each, for missing.csv

    @property
    def total(self):
        return sum(self.counts.values())

    def describe(self):
        labels = ", ".join(f"{name} {n}" for name, n in sorted(self.counts.items())) or "none"
        text = f"Exported {self.total} photos ({labels})."
        if self.missing:
            text += (f" {len(self.missing)} photos were left out because their file is missing "
                     f"(listed in {MISSING}): {self.missing[:20]}.")
        return text


def _who(photo, votes) -> str:
    source = photo.label_source
    if source in (Photo.LabelSource.CONSENSUS, Photo.LabelSource.LABELLER):
        return ";".join(v.user.username for v in votes)
    if source in (Photo.LabelSource.EXPERT, Photo.LabelSource.AUDIT):
        return photo.reviewed_by.username if photo.reviewed_by_id else ""
    if source == Photo.LabelSource.MODEL:
        prediction = getattr(photo, "prediction", None)
        return f"model v{prediction.model_version_id}" if prediction else "model"
    return photo.owner.username


def _agreement(photo, votes) -> str:
    if not votes:
        return ""
    agreeing = sum(1 for v in votes if v.label_id == photo.final_label_id)
    return f"{agreeing}/{len(votes)}"


def _votes_by_photo(photo_ids):
    votes = {}
    for vote in LabelVote.objects.filter(photo_id__in=photo_ids).select_related("user").order_by("created_at", "id"):
        votes.setdefault(vote.photo_id, []).append(vote)
    return votes


def export_dataset(fileobj, *, include_model=False) -> ExportSummary:
    """Write the zip into `fileobj` (a file opened for binary writing)."""
    summary = ExportSummary()
    manifest = io.StringIO()
    writer = csv.DictWriter(manifest, fieldnames=MANIFEST_FIELDS, lineterminator="\n")
    writer.writeheader()
    photos = selectors.dataset_photos(include_model=include_model)
    with zipfile.ZipFile(fileobj, "w", compression=zipfile.ZIP_STORED, allowZip64=True) as archive:
        chunk = []
        for photo in photos.iterator(chunk_size=500):
            chunk.append(photo)
            if len(chunk) == 500:
                _write_chunk(archive, writer, chunk, summary)
                chunk = []
        _write_chunk(archive, writer, chunk, summary)
        # Photos are compressed already; the manifest is text.
        archive.writestr(MANIFEST, manifest.getvalue(), compress_type=zipfile.ZIP_DEFLATED)
        if summary.left_out:  # whoever has only the zip sees that it is not the whole set, and why
            archive.writestr(MISSING, _missing_csv(summary.left_out), compress_type=zipfile.ZIP_DEFLATED)
    if summary.missing:  # a lost file is the operator's to fix, not only the downloader's to notice
        logger.warning("The export left out %d photos whose file is missing: %s", len(summary.missing),
                       summary.missing[:20])
    return summary


def _missing_csv(rows) -> str:
    text = io.StringIO()
    writer = csv.DictWriter(text, fieldnames=MISSING_FIELDS, lineterminator="\n")
    writer.writeheader()
    writer.writerows(rows)
    return text.getvalue()


def _write_chunk(archive, writer, photos, summary):
    votes = _votes_by_photo([p.id for p in photos])
    for photo in photos:
        label = photo.final_label.name
        extension = PurePosixPath(photo.image.name).suffix.lower() or ".jpg"
        # A label stored by an import before manifests were checked may not be a folder name.
        folder = label if is_folder_name(label) else (_label_slug(label) or "unnamed")
        name = f"{folder}/photo-{photo.id}{extension}"
        try:
            with photo.image.open("rb") as source, archive.open(name, "w", force_zip64=True) as target:
                while block := source.read(1024 * 1024):
                    target.write(block)
        except FileNotFoundError:
            summary.missing.append(photo.id)
            summary.left_out.append({"photo": photo.id, "file": photo.image.name,
                                     "why": "its file is missing from the media storage"})
            continue
        photo_votes = votes.get(photo.id, [])
        writer.writerow({
            "file": name, "label": label, "source": photo.label_source, "who": _who(photo, photo_votes),
            "when": photo.decided_at.isoformat() if photo.decided_at else "",
            "agreement": _agreement(photo, photo_votes), "synthetic": "1" if photo.synthetic else "",
        })
        summary.counts[label] += 1


def export_dataset_to_path(path, *, include_model=False) -> ExportSummary:
    """Write the zip to `path`, whole or not at all."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    handle, partial = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".partial", dir=path.parent)
    try:
        with os.fdopen(handle, "wb") as fh:
            summary = export_dataset(fh, include_model=include_model)
        os.replace(partial, path)
    except BaseException:
        Path(partial).unlink(missing_ok=True)
        raise
    return summary


def export_dataset_tempfile(*, include_model=False):
    """The zip in an anonymous temporary file (gone once closed), rewound, and its summary."""
    fh = tempfile.TemporaryFile()
    try:
        summary = export_dataset(fh, include_model=include_model)
        fh.seek(0)
    except BaseException:
        fh.close()
        raise
    return fh, summary


def export_file_name():
    return f"plantsite-dataset-{timezone.now():%Y%m%d-%H%M%S}.zip"


# --- reading an export back -----------------------------------------------------------------


def read_manifest(directory) -> dict:
    """{relative file path: manifest row} from DIR/manifest.csv, or {} when there is none.

    A manifest that cannot be read is ignored: the folders alone still give the labels.
    """
    path = Path(directory) / MANIFEST
    if not path.is_file():
        return {}
    try:
        with open(path, newline="", encoding="utf-8") as fh:
            rows = list(csv.DictReader(fh))
    except (OSError, UnicodeDecodeError, csv.Error):
        return {}
    return {row["file"]: row for row in rows if isinstance(row.get("file"), str) and row["file"]}


def _label_slug(name) -> str:
    return slugify(name or "").replace("-", "_")


def manifest_label_name(row, folder_label_name) -> str:
    """The label's exact name from the manifest when it is the folder's (a name the folder name
    spells differently, such as one with a hyphen, comes back as it was); else the folder's.
    A manifest name that could not itself be a folder of an export ("../../etc/x" slugs to
    "etcx") is not taken: every later export would write outside its folder."""
    label = row.get("label") if row else None
    if label and _label_slug(label) == folder_label_name and is_folder_name(label):
        return label
    return folder_label_name


def is_folder_name(name: str) -> bool:
    """One plain path component of at most 64 printable characters: safe as an export's folder."""
    return (0 < len(name) <= 64 and name.isprintable() and name not in (".", "..")
            and not any(c in name for c in '/\\:'))


def restore_provenance(photo, row) -> Photo:
    """Give an imported photo back the source, decider and time its manifest row records, and
    its mark as a generated image."""
    if (row.get("synthetic") or "").strip() == "1" and not photo.synthetic:
        photo.synthetic = True
        photo.save(update_fields=["synthetic"])
    source = row.get("source") or ""
    if source not in _DECIDED_BY_FOR_SOURCE:
        return photo
    photo.label_source = source
    photo.decided_by = _DECIDED_BY_FOR_SOURCE[source]
    when = _parse_when(row.get("when"))
    if when is not None:
        photo.decided_at = when
    who = (row.get("who") or "").strip()
    if source in (Photo.LabelSource.EXPERT, Photo.LabelSource.AUDIT) and who:
        photo.reviewed_by = get_user_model().objects.filter(username=who).first()
    details = [f"{source}"]
    if who:
        details.append(f"by {who}")
    if row.get("agreement"):
        details.append(f"agreement {row['agreement']}")
    photo.reason = ("Imported from an export: " + " ".join(details) + ".") if source != Photo.LabelSource.IMPORT else ""
    photo.save(update_fields=["label_source", "decided_by", "decided_at", "reviewed_by", "reason"])
    return photo


def _parse_when(text):
    if not text:
        return None
    try:
        when = parse_datetime(text)
    except ValueError:
        return None
    if when is None:
        return None
    if timezone.is_naive(when):
        when = timezone.make_aware(when, timezone.get_default_timezone())
    return when


def safe_extract(zip_path, target, *, max_member_bytes: int) -> list[tuple[str, str]]:
    """Unzip an export into `target`, refusing the whole archive when a member would land outside
    it. A member larger than max_member_bytes (the upload limit: the import would refuse it anyway)
    is not written, whatever size the archive declares for it: a few kilobytes of zip can inflate
    to gigabytes. Encrypted members and unknown compression methods are not written either.
    Returns (member, why) for each member left out."""
    target = Path(target).resolve()
    left_out = []
    with zipfile.ZipFile(zip_path) as archive:
        for member in archive.infolist():
            destination = (target / member.filename).resolve()
            if destination != target and target not in destination.parents:
                raise ValueError(f"{member.filename!r} would be written outside the folder.")
            if member.is_dir():
                destination.mkdir(parents=True, exist_ok=True)
                continue
            destination.parent.mkdir(parents=True, exist_ok=True)
            why = _extract_member(archive, member, destination, max_member_bytes)
            if why:
                destination.unlink(missing_ok=True)
                left_out.append((member.filename, why))
    return left_out


def _extract_member(archive, member, destination, limit) -> str:
    """Copy one member, stopping at limit + 1 bytes; "" when it was written whole, else why not."""
    too_large = f"larger than the {limit / (1024 * 1024):g} MB upload limit"
    if member.file_size > limit:
        return too_large
    written = 0
    try:
        with archive.open(member) as source, open(destination, "wb") as out:
            while block := source.read(min(1024 * 1024, limit + 1 - written)):
                written += len(block)
                if written > limit:
                    return too_large
                out.write(block)
    except RuntimeError:  # zipfile: "... is encrypted, password required for extraction"
        return "encrypted"
    except NotImplementedError:  # zipfile: "That compression method is not supported"
        return "compressed with a method this site cannot read"
    return ""


# --- every prediction, as CSV ------------------------------------------------------------------

PREDICTION_FIELDS = ["photo", "uploaded_at", "model_version", "answer", "confidence", "margin", "familiarity",
                     "familiarity_cutoff", "unfamiliar", "status", "review_kind", "decided_by", "final_label",
                     "reviewed_by", "decided_at", "people_changed"]


def predictions_csv_lines(chunk_size=2000):
    """Every stored prediction, oldest first, and what became of its photo, as CSV lines (for a
    streaming download): what the model said, how sure, how familiar the photo looked, and who
    decided what. A pending audit's answer is left blank, as on every page until it is decided
    (labeling.review.prediction_hidden_from). people_changed: a person decided the photo and
    gave another label, or rejected it."""
    from .review import prediction_hidden_from

    class Line:
        def write(self, text):
            return text

    writer = csv.DictWriter(Line(), fieldnames=PREDICTION_FIELDS, lineterminator="\n")
    yield writer.writeheader()
    photos = (Photo.objects.filter(prediction__isnull=False)
              .select_related("prediction__label", "final_label", "reviewed_by").order_by("prediction__id"))
    for photo in photos.iterator(chunk_size=chunk_size):
        yield writer.writerow(_prediction_row(photo, hidden=prediction_hidden_from(photo)))


def _prediction_row(photo, *, hidden) -> dict:
    p = photo.prediction
    by_people = photo.decided_by not in ("", Photo.DecidedBy.MODEL) and photo.review_kind != ""
    decided = photo.status in (Photo.Status.FINAL, Photo.Status.REJECTED)
    row = {"photo": photo.id, "uploaded_at": photo.uploaded_at.isoformat(), "model_version": p.model_version_id,
           "status": photo.status, "review_kind": photo.review_kind, "decided_by": photo.decided_by,
           "final_label": photo.final_label.name if photo.final_label_id else "",
           "reviewed_by": _text_cell(photo.reviewed_by.username) if photo.reviewed_by_id else "",
           "decided_at": photo.decided_at.isoformat() if photo.decided_at else ""}
    if not hidden:
        row.update(answer=p.label.name, confidence=p.confidence, margin=p.margin,
                   familiarity="" if p.familiarity is None else p.familiarity,
                   familiarity_cutoff="" if p.familiarity_cutoff is None else p.familiarity_cutoff,
                   unfamiliar=int(p.unfamiliar),
                   people_changed=int(decided and by_people and photo.final_label_id != p.label_id))
    return row


def _text_cell(text: str) -> str:
    """A name a spreadsheet would read as a formula (+, -, @ may start a username) kept as text."""
    return f"'{text}" if text[:1] in ("=", "+", "-", "@") else text
