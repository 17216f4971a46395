from django.db import migrations, models


class Migration(migrations.Migration):

    dependencies = [
        ('labeling', '0004_team_labelling'),
    ]

    operations = [
        migrations.AddField(
            model_name='photo',
            name='working_image',
            field=models.FileField(blank=True, max_length=255, upload_to='photos/'),
        ),
    ]
