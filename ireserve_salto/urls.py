from django.contrib import admin
from django.urls import include, path
from django.views.generic import RedirectView

from ireserve_salto.health import healthz

admin.site.site_header = "iReserve · Salto KS console"
admin.site.site_title = "iReserve Salto KS"
admin.site.index_title = "Bookings and door access"

urlpatterns = [
    path("", RedirectView.as_view(pattern_name="admin:index", permanent=False)),
    path("healthz", healthz, name="healthz"),
    path("admin/", admin.site.urls),
    path("", include("integrations.urls")),
]
