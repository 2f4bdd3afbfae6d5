from django.apps import AppConfig


class IntegrationsConfig(AppConfig):
    name = "integrations"
    verbose_name = "Integrations"

    def ready(self) -> None:
        # The receiver for booking status announcements, and the booking admin extended with the open
        # action (the admin has autodiscovered bookings.admin by now: django.contrib.admin is listed first).
        # The tasks register in every process, so a service can queue one by name (services.opening); the
        # checks of the opening settings register with Django's system checks.
        from integrations import admin_bookings, checks, receivers, tasks  # noqa: F401
