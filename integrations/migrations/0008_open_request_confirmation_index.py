from django.db import migrations, models


class Migration(migrations.Migration):

    dependencies = [
        ('integrations', '0007_open_request_claim_token'),
    ]

    operations = [
        migrations.AddIndex(
            model_name='openrequest',
            index=models.Index(fields=['confirmation', 'created_at'], name='integration_confirm_c8c23a_idx'),
        ),
    ]
