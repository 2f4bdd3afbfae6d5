"""URL routes of integrations: the REST API and its OpenAPI schema (included at the project root)."""

from __future__ import annotations

from django.urls import URLPattern, URLResolver, path
from drf_spectacular.views import SpectacularAPIView, SpectacularRedocView, SpectacularSwaggerView

from integrations import api

urlpatterns: list[URLPattern | URLResolver] = [
    path("api/v1/bookings/", api.BookingList.as_view(), name="api-booking-list"),
    path("api/v1/bookings/<int:pk>/", api.BookingDetail.as_view(), name="api-booking-detail"),
    path("api/v1/bookings/<int:pk>/open/", api.BookingOpen.as_view(), name="api-booking-open"),
    path("api/v1/open-requests/<int:pk>/", api.OpenRequestDetail.as_view(), name="api-open-request-detail"),
    path("api/schema/", SpectacularAPIView.as_view(), name="api-schema"),
    path("api/docs/", SpectacularSwaggerView.as_view(url_name="api-schema"), name="api-docs"),
    path("api/redoc/", SpectacularRedocView.as_view(url_name="api-schema"), name="api-redoc"),
]
