from django.db import migrations, models


class Migration(migrations.Migration):

    dependencies = [
        ('detectors', '0008_detectedobject_mercator_box'),
    ]

    operations = [
        migrations.AddField(
            model_name='trainingrun',
            name='suggestions',
            field=models.JSONField(blank=True, default=dict),
        ),
    ]
