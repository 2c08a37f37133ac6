from django.db import migrations, models


class Migration(migrations.Migration):

    dependencies = [
        ('detectors', '0009_detector_kind_and_image_pairs'),
    ]

    operations = [
        migrations.AddField(
            model_name='trainingrun',
            name='suggestions',
            field=models.JSONField(blank=True, default=dict),
        ),
    ]
