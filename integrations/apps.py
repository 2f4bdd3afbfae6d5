from django.apps import AppConfig


class IntegrationsConfig(AppConfig):
    name = "integrations"
    verbose_name = "Integrations"

    def ready(self) -> None:
        # The receiver for booking status announcements, and the booking admin extended with the open
        # action (the admin has autodiscovered bookings.admin by now: django.contrib.admin is listed first).
        from integrations import admin_bookings, receivers  # noqa: F401
