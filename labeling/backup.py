"""Backups: the database and every media file in one .tar.gz, and putting them back.

An archive holds
    db.json         the rows of the accounts (users, groups, API tokens), labeling and
                    classifier, as `dumpdata --natural-foreign` writes them (permissions and
                    groups named, not numbered) but with full-precision timestamps; content
                    types, permissions, sessions and the admin log are left out: `migrate`
                    makes the first two, the others are not worth keeping
    media/...       every file under MEDIA_ROOT (the photos, originals and working copies)
    models/...      every file under MODEL_ROOT (exported learners, confusion matrices)
    manifest.json   written last: format version, when, row counts, and the sha256 and size
                    of db.json and of every file, as archived

Restoring checks the whole archive before it changes anything: only regular files and
folders, no absolute names and no `..`, and every file's sha256 as the manifest records it.
It refuses a database that already holds data unless forced, and then replaces it; the rows
are loaded in one transaction, and the files are put in place before that transaction commits;
if it does not, the site's files are put back as they were (see _Placement).
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import secrets
import shutil
import tarfile
import tempfile
import zlib
from collections import Counter
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime, time, timezone
from pathlib import Path, PurePosixPath

from django.apps import apps
from django.conf import settings
from django.contrib.auth import get_user_model
from django.core import serializers
from django.core.serializers.base import DeserializationError
from django.core.serializers.json import DjangoJSONEncoder
from django.core.management import call_command
from django.db import DatabaseError, connection, transaction
from django.db.migrations.executor import MigrationExecutor

from classifier.inference import file_sha256

FORMAT = "plantsite-backup"
FORMAT_VERSION = 1
MANIFEST = "manifest.json"
DATABASE_DUMP = "db.json"
MEDIA_PREFIX = "media"
MODELS_PREFIX = "models"
# What is dumped: accounts, and every row of the two apps. Content types, permissions and
# sessions are not: `migrate` (and `flush`) create the first two, sessions are disposable.
DUMPED = ["auth.group", "auth.user", "authtoken.token", "labeling", "classifier"]


class BackupError(Exception):
    """The archive cannot be written or restored; the message says why."""


@dataclass
class BackupReport:
    path: Path
    rows: dict[str, int]
    files: int
    bytes: int
    missing: list[str] = field(default_factory=list)  # files the rows name that are not in the archive

    def summary(self):
        rows = ", ".join(f"{n} {model}" for model, n in sorted(self.rows.items()))
        return f"Backed up {rows or 'no rows'} and {self.files} files ({self.bytes} bytes) to {self.path}."


@dataclass
class RestoreReport:
    rows: dict[str, int]
    files: int
    problems: list[str] = field(default_factory=list)

    def summary(self):
        rows = ", ".join(f"{n} {model}" for model, n in sorted(self.rows.items()))
        text = f"Restored {rows or 'no rows'} and {self.files} files."
        if self.problems:
            text += " Problems: " + "; ".join(self.problems)
        return text




def _roots() -> list[tuple[str, Path]]:
    return [(MEDIA_PREFIX, Path(settings.MEDIA_ROOT)), (MODELS_PREFIX, Path(settings.MODEL_ROOT))]


def _files_to_back_up():
    """(archive name, path) of every regular file under MEDIA_ROOT and MODEL_ROOT; a file under
    MODEL_ROOT is stored once, under models/, even when MODEL_ROOT lies inside MEDIA_ROOT."""
    media, models = Path(settings.MEDIA_ROOT).resolve(), Path(settings.MODEL_ROOT).resolve()
    found = []
    for prefix, root in ((MODELS_PREFIX, models), (MEDIA_PREFIX, media)):
        if not root.is_dir():
            continue
        # Folder links are followed (photos/ may be a link to a larger disk), each real folder once.
        seen = set()
        for dirpath, dirnames, filenames in os.walk(root, followlinks=True):
            if os.path.realpath(dirpath) in seen:
                dirnames[:] = []
                continue
            seen.add(os.path.realpath(dirpath))
            dirnames.sort()
            here = Path(dirpath)
            if prefix == MEDIA_PREFIX and (here == models or models in here.parents):
                dirnames[:] = []
                continue
            for name in sorted(filenames):
                path = here / name
                if path.is_symlink() or not path.is_file():
                    continue  # only real files: a link could point anywhere
                found.append((str(PurePosixPath(prefix, *path.relative_to(root).parts)), path))
    return found


class _ExactJSONEncoder(DjangoJSONEncoder):
    """DjangoJSONEncoder (and so `dumpdata`) cuts times to milliseconds; a backup keeps every digit."""

    def default(self, o):
        if isinstance(o, (datetime, time)):
            text = o.isoformat()
            return text[:-6] + "Z" if text.endswith("+00:00") else text
        return super().default(o)


def _dumped_models():
    """The models in DUMPED, in the order loaddata needs them (natural-key dependencies first)."""
    by_app = {}
    for label in DUMPED:
        if "." in label:
            models = [apps.get_model(label)]
        else:
            models = [m for m in apps.get_app_config(label).get_models() if m._meta.managed and not m._meta.proxy]
        for model in models:
            by_app.setdefault(model._meta.app_config, []).append(model)
    return serializers.sort_dependencies(by_app.items(), allow_cycles=True)


def _dump_database(out: Path, batch_size: int = 1000) -> tuple[dict[str, int], set[str]]:
    """The rows of DUMPED as a `loaddata` fixture in `out`, from one consistent snapshot, and
    the archive names of the files those rows need (see _files_named_by).

    Written as `dumpdata --natural-foreign` would, a batch at a time, but with full-precision
    timestamps (see _ExactJSONEncoder)."""
    rows = Counter()
    named = set()
    outermost = not connection.in_atomic_block
    with transaction.atomic(), open(out, "w", encoding="utf-8") as fh:
        if connection.vendor == "postgresql" and outermost:
            # Every table read at the same instant, while uploads and workers go on writing.
            with connection.cursor() as cursor:
                cursor.execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ")

        def write(batch):
            for row in serializers.serialize("python", batch, use_natural_foreign_keys=True):
                fh.write(",\n" if rows.total() else "\n")
                fh.write(json.dumps(row, cls=_ExactJSONEncoder, ensure_ascii=False))
                rows[row["model"]] += 1
                named.update(_files_named_by(row))

        fh.write("[")
        for model in _dumped_models():
            batch = []
            for obj in model._base_manager.order_by(model._meta.pk.name).iterator(chunk_size=batch_size):
                batch.append(obj)
                if len(batch) == batch_size:
                    write(batch)
                    batch = []
            write(batch)
        fh.write("\n]\n")
    return dict(rows), named


def _files_named_by(row: dict) -> list[str]:
    """The archive names of the files a dumped row needs: a photo's original and working copy,
    a model version's learner and the files beside it (charts, features)."""
    fields = row["fields"]
    if row["model"] == "labeling.photo":
        return [f"{MEDIA_PREFIX}/{name}" for name in (fields["image"], fields["working_image"]) if name]
    if row["model"] == "classifier.modelversion":
        from classifier.models import ModelVersion

        return [f"{MODELS_PREFIX}/{name}" for name in ModelVersion.file_names(fields["file"], fields["metrics"])]
    return []


class _HashingReader:
    """Reads a file into the archive and hashes exactly the bytes that went in."""

    def __init__(self, fh):
        self.fh, self.digest = fh, hashlib.sha256()

    def read(self, size=-1):
        data = self.fh.read(size)
        self.digest.update(data)
        return data


def _add_file(tar: tarfile.TarFile, name: str, path: Path) -> dict | None:
    """Add one file; None if it disappeared since it was listed. The size and sha256 recorded
    are those of the bytes archived, even if the file is being rewritten meanwhile."""
    try:
        fh = open(path, "rb")
    except FileNotFoundError:
        return None
    with fh:
        stat = os.fstat(fh.fileno())
        info = tarfile.TarInfo(name)
        info.size, info.mtime, info.mode = stat.st_size, int(stat.st_mtime), 0o644
        reader = _HashingReader(fh)
        tar.addfile(info, reader)
    return {"name": name, "sha256": reader.digest.hexdigest(), "size": info.size}


def backup_create(path) -> BackupReport:
    """Write the database and every media file to the .tar.gz at `path` (replaced atomically)."""
    path = Path(path)
    if not path.parent.is_dir():
        raise BackupError(f"The folder {path.parent} does not exist.")
    if path.is_dir():
        raise BackupError(f"{path} is a folder; name the archive to write, e.g. {path / 'plantsite.tar.gz'}.")
    target = path.parent.resolve()
    for root in (Path(settings.MEDIA_ROOT).resolve(), Path(settings.MODEL_ROOT).resolve()):
        if target == root or root in target.parents:
            # Every backup would hold itself, half written, and every earlier one.
            raise BackupError(f"{path} is inside {root}, which the backup copies; write it somewhere else.")
    partial = path.with_name(f".{path.name}.partial")
    with tempfile.TemporaryDirectory(prefix="plantsite-backup-") as tmp:
        dump = Path(tmp) / DATABASE_DUMP
        # The rows first, then the files: every row the dump holds already has its file
        # (an upload stores the file before its row commits).
        rows, named = _dump_database(dump)
        try:
            # Readable by its owner only: it holds every password hash and API token, and every photo.
            raw = os.fdopen(os.open(partial, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600), "wb")
            # Level 6, not tarfile's 9: photos and learners barely compress, and 9 is several times slower.
            with raw, tarfile.open(fileobj=raw, mode="w:gz", compresslevel=6) as tar:
                database = _add_file(tar, DATABASE_DUMP, dump)
                files = [entry for name, file_path in _files_to_back_up()
                         if (entry := _add_file(tar, name, file_path)) is not None]
                manifest = {
                    "format": FORMAT, "version": FORMAT_VERSION,
                    "created_at": datetime.now(timezone.utc).isoformat(),
                    "database": {"vendor": connection.vendor, "rows": rows, "sha256": database["sha256"]},
                    "files": files,
                }
                data = json.dumps(manifest, indent=1).encode()
                info = tarfile.TarInfo(MANIFEST)
                info.size, info.mtime, info.mode = len(data), int(datetime.now().timestamp()), 0o644
                tar.addfile(info, io.BytesIO(data))
            os.replace(partial, path)
        except OSError as exc:  # a full disk, a file that cannot be read: one line, not a traceback
            raise BackupError(f"The backup could not be written: {exc}.") from exc
        finally:
            partial.unlink(missing_ok=True)
    return BackupReport(path=path, rows=rows, files=len(files), bytes=sum(f["size"] for f in files),
                        missing=_named_but_not_backed_up(named, {f["name"] for f in files}))


def _named_but_not_backed_up(named: set[str], archived: set[str]) -> list[str]:
    """The photo and model files the dumped rows name that the archive does not hold: lost from
    the disk, or out of reach (a file link). A restore of this archive would lack them.
    The rows dumped, not the live database: a photo uploaded since the snapshot is not in the
    archive's rows and needs no file; one deleted since is, and does."""
    return sorted(named - archived)


# --- restore ---------------------------------------------------------------------------


def _check_member(member: tarfile.TarInfo):
    name = member.name
    parts = PurePosixPath(name).parts
    if PurePosixPath(name).is_absolute():
        raise BackupError(f"The archive is refused: {name!r} is an absolute path.")
    if ".." in parts:
        raise BackupError(f"The archive is refused: {name!r} leads out of its folder (..).")
    if not (member.isfile() or member.isdir()):
        raise BackupError(f"The archive is refused: {name!r} is not a regular file or folder (a link or device).")
    if member.isfile() and name not in (MANIFEST, DATABASE_DUMP) and parts[0] not in (MEDIA_PREFIX, MODELS_PREFIX):
        raise BackupError(f"The archive is refused: {name!r} is not part of a Plantsite backup.")


def _read_archive(path: Path, into: Path) -> dict:
    """Check every member, extract (with tarfile's "data" filter as a second guard) and check
    each file against the manifest. Returns the manifest."""
    try:
        tar = tarfile.open(path, "r:gz")
    except (OSError, tarfile.TarError) as exc:
        raise BackupError(f"{path} is not a readable .tar.gz archive: {exc}") from None
    with tar:
        try:
            members = tar.getmembers()
        except (OSError, EOFError, zlib.error, tarfile.TarError) as exc:  # cut short or damaged
            raise BackupError(f"{path} is damaged or incomplete: {exc or type(exc).__name__}") from None
        for member in members:
            _check_member(member)
        names = {m.name for m in members if m.isfile()}
        if MANIFEST not in names or DATABASE_DUMP not in names:
            raise BackupError(f"{path} is not a Plantsite backup: it has no {MANIFEST} or no {DATABASE_DUMP}.")
        try:
            tar.extractall(into, members=members, filter="data")
        except tarfile.FilterError as exc:
            raise BackupError(f"The archive is refused: {exc}") from None
        except (OSError, EOFError, zlib.error, tarfile.TarError) as exc:
            raise BackupError(f"{path} is damaged or incomplete: {exc or type(exc).__name__}") from None
    try:
        manifest = json.loads((into / MANIFEST).read_text())
        if manifest.get("format") != FORMAT or manifest.get("version") != FORMAT_VERSION:
            raise BackupError(f"{path} is not a version {FORMAT_VERSION} Plantsite backup.")
        return _check_extracted(into, names, manifest)
    except (ValueError, KeyError, TypeError, AttributeError) as exc:  # not JSON, or not the shape written
        raise BackupError(f"The manifest of {path} is damaged: {type(exc).__name__}: {exc}") from None


def _check_extracted(into: Path, names: set, manifest: dict) -> dict:
    if file_sha256(into / DATABASE_DUMP) != manifest["database"]["sha256"]:
        raise BackupError(f"{DATABASE_DUMP} in the archive does not match its recorded sha256.")
    listed = {f["name"]: f for f in manifest["files"]}
    extra = names - set(listed) - {MANIFEST, DATABASE_DUMP}
    if extra:
        raise BackupError(f"The archive holds files its manifest does not list: {sorted(extra)[:5]}")
    for name, entry in listed.items():
        if name not in names:
            raise BackupError(f"The archive lacks {name}, which its manifest lists.")
        if file_sha256(into / name) != entry["sha256"]:
            raise BackupError(f"{name} in the archive does not match its recorded sha256.")
    return manifest


def _data_already_there() -> list[str]:
    from classifier.models import ModelVersion, TrainingRun

    from .models import Label, Photo

    counts = {"photos": Photo.objects.count(), "users": get_user_model().objects.count(),
              "labels": Label.objects.count(), "model versions": ModelVersion.objects.count(),
              "training runs": TrainingRun.objects.count()}
    return [f"{n} {what}" for what, n in counts.items() if n]


class _Placement:
    """The files a restore puts in place, undone when its rows are not committed.

    A forced restore writes over the site's own files where names match (a model file of the
    same run id, the same photo restored twice). A file it replaces is first moved aside to
    `<name>.<token>.before-restore`: if the rows then fail, or the disk fills halfway, every file
    goes back as it was and the files the restore added are removed. After the commit the
    moved-aside files are deleted. (A process killed in between leaves them for a person.)"""

    def __init__(self):
        self.token = secrets.token_hex(4)
        self.added: list[Path] = []
        self.displaced: list[tuple[Path, Path]] = []

    def put(self, extracted: Path, manifest: dict) -> int:
        roots = dict(_roots())
        for entry in manifest["files"]:
            prefix, *rest = PurePosixPath(entry["name"]).parts
            target = roots[prefix].joinpath(*rest)
            target.parent.mkdir(parents=True, exist_ok=True)
            if target.exists():
                aside = target.with_name(f"{target.name}.{self.token}.before-restore")
                os.replace(target, aside)
                self.displaced.append((target, aside))
            else:
                self.added.append(target)
            shutil.copyfile(extracted / entry["name"], target)
        return len(manifest["files"])

    def undo(self):
        for target in self.added:
            target.unlink(missing_ok=True)
        for target, aside in reversed(self.displaced):
            os.replace(aside, target)

    def keep(self):
        for _, aside in self.displaced:
            aside.unlink(missing_ok=True)


@contextmanager
def _placement():
    placement = _Placement()
    try:
        yield placement
    except BaseException:
        placement.undo()
        raise
    placement.keep()


def _verify_restored() -> list[str]:
    """Every photo's file and every model version's file is where its row says, and each
    model file has the sha256 the registry recorded (the check inference makes before loading)."""
    from classifier.models import ModelVersion

    from .models import Photo

    problems = []
    for photo in Photo.objects.only("id", "image", "working_image"):
        if not (Path(settings.MEDIA_ROOT) / photo.image.name).is_file():
            problems.append(f"photo {photo.id}: {photo.image.name} is missing")
        if photo.working_image and not (Path(settings.MEDIA_ROOT) / photo.working_image.name).is_file():
            problems.append(f"photo {photo.id}: its working copy {photo.working_image.name} is missing")
    for version in ModelVersion.objects.only("id", "file", "sha256"):
        if not version.path.is_file():
            problems.append(f"model version {version.id}: {version.file} is missing")
        elif file_sha256(version.path) != version.sha256:
            problems.append(f"model version {version.id}: {version.file} does not match the registry's sha256")
    return problems


def _unapplied_migrations() -> list:
    executor = MigrationExecutor(connection)
    return executor.migration_plan(executor.loader.graph.leaf_nodes())


def backup_restore(path, force: bool = False) -> RestoreReport:
    """Restore the archive at `path`. Refuses a database that already holds photos (or users,
    labels, models) unless `force`, which replaces everything in it."""
    path = Path(path)
    if not path.is_file():
        raise BackupError(f"{path} does not exist.")
    # Migrations first: counting the rows of a database that was never migrated fails on
    # its missing tables.
    if _unapplied_migrations():
        raise BackupError("The database is not migrated: run `manage.py migrate` first.")
    present = _data_already_there()
    if present and not force:
        raise BackupError(f"The database already holds {', '.join(present)}: restoring would mix two sites. "
                          "Restore into an empty database, or pass --force to replace everything in it.")
    with tempfile.TemporaryDirectory(prefix="plantsite-restore-") as tmp:
        extracted = Path(tmp)
        manifest = _read_archive(path, extracted)  # nothing has changed yet if this raises
        try:
            # The placement outside the transaction: it is undone when the commit fails too.
            with _placement() as placement, transaction.atomic():
                if force:
                    call_command("flush", interactive=False, verbosity=0)
                call_command("loaddata", str(extracted / DATABASE_DUMP), verbosity=0)
                # Inside the transaction: if the files cannot be written, no row is restored either.
                files = placement.put(extracted, manifest)
        except (DeserializationError, DatabaseError) as exc:  # rows of other code, or that clash
            raise BackupError(f"The rows could not be restored, and none was: {exc}") from None
        except OSError as exc:  # a full disk: the rows are rolled back
            raise BackupError(f"The files could not be put back, and no row was restored: {exc}") from None
    return RestoreReport(rows=manifest["database"]["rows"], files=files, problems=_verify_restored())
