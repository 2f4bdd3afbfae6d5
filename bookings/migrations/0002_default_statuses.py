from django.db import migrations

DEFAULT_STATUSES = [
    (10, "Option"),
    (20, "Definitive"),
    (30, "Paid"),
    (50, "Checked in"),
    (70, "Cancelled"),
]


def create_default_statuses(apps, schema_editor):
    BookingStatus = apps.get_model("bookings", "BookingStatus")
    for code, name in DEFAULT_STATUSES:
        BookingStatus.objects.get_or_create(code=code, defaults={"name": name})


class Migration(migrations.Migration):
    dependencies = [("bookings", "0001_initial")]

    operations = [migrations.RunPython(create_default_statuses, migrations.RunPython.noop)]
