import os

from django.core.asgi import get_asgi_application

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "ireserve_salto.settings")
application = get_asgi_application()
