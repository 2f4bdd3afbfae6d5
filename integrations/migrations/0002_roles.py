"""The two roles the product ships with; the demo accounts use them."""

from django.contrib.auth.management import create_permissions
from django.db import migrations

OPERATOR = "Integration operator"
STAFF = "Booking staff"

OPERATOR_PERMISSIONS = {
    "integrations": ["integration", "cachedlock", "lockmapping", "openrequest"],
    "bookings": ["bookableobject", "bookingstatus", "bookingfield"],
}
STAFF_PERMISSIONS = {"bookings": ["booking", "bookingfieldvalue"]}


def create_roles(apps, schema_editor):
    # Permissions are normally created after all migrations; the roles need them now.
    for app_config in apps.get_app_configs():
        app_config.models_module = True
        create_permissions(app_config, apps=apps, verbosity=0)
        app_config.models_module = None

    Group = apps.get_model("auth", "Group")
    Permission = apps.get_model("auth", "Permission")

    def perms(app_label, model, actions):
        return Permission.objects.filter(
            content_type__app_label=app_label, codename__in=[f"{action}_{model}" for action in actions]
        )

    operator, _ = Group.objects.get_or_create(name=OPERATOR)
    for app_label, models in OPERATOR_PERMISSIONS.items():
        for model in models:
            operator.permissions.add(*perms(app_label, model, ["add", "change", "delete", "view"]))
    operator.permissions.add(*perms("bookings", "booking", ["view"]))
    operator.permissions.add(*perms("bookings", "bookingstatus", ["view"]))

    staff, _ = Group.objects.get_or_create(name=STAFF)
    for app_label, models in STAFF_PERMISSIONS.items():
        for model in models:
            staff.permissions.add(*perms(app_label, model, ["add", "change", "view"]))
    staff.permissions.add(*perms("bookings", "bookableobject", ["view"]))
    staff.permissions.add(*perms("bookings", "bookingstatus", ["view"]))
    staff.permissions.add(*perms("integrations", "openrequest", ["view"]))
    staff.permissions.add(*Permission.objects.filter(content_type__app_label="integrations", codename="open_door"))
    operator.permissions.add(*Permission.objects.filter(content_type__app_label="integrations", codename="open_door"))


def remove_roles(apps, schema_editor):
    apps.get_model("auth", "Group").objects.filter(name__in=[OPERATOR, STAFF]).delete()


class Migration(migrations.Migration):
    dependencies = [
        ("integrations", "0001_initial"),
        ("auth", "0012_alter_user_first_name_max_length"),
        ("contenttypes", "0002_remove_content_type_name"),
    ]

    operations = [migrations.RunPython(create_roles, remove_roles)]
