import hashlib

from django.db import migrations


def fill_stored_sha256(apps, schema_editor):
    """Photos stored before 0008 get the sha256 of their stored file, read from the storage, so
    that importing the site's own export is known as a duplicate for them too. A photo whose file
    is missing stays blank: there is nothing an import could duplicate."""
    Photo = apps.get_model("labeling", "Photo")
    storage = Photo._meta.get_field("image").storage
    pending = Photo.objects.filter(stored_sha256="").exclude(image="").values_list("id", "image")
    for photo_id, name in pending.iterator(chunk_size=500):
        digest = hashlib.sha256()
        try:
            with storage.open(name, "rb") as f:
                for chunk in iter(lambda: f.read(1 << 20), b""):
                    digest.update(chunk)
        except OSError:
            continue
        Photo.objects.filter(id=photo_id, stored_sha256="").update(stored_sha256=digest.hexdigest())


class Migration(migrations.Migration):

    dependencies = [
        ('labeling', '0008_photo_stored_sha256'),
    ]

    operations = [
        migrations.RunPython(fill_stored_sha256, migrations.RunPython.noop, elidable=True),
    ]
