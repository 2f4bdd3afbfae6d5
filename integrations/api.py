"""REST API (DRF): bookings, their status, and opening their door. Thin: validate, call one service, render.

Token authentication is listed first so an anonymous caller gets 401 with `WWW-Authenticate: Token`
(DRF answers 403 when the first authenticator has no challenge header, as SessionAuthentication does).
"""

from __future__ import annotations

from typing import Any

from django.db.models import QuerySet
from django.shortcuts import get_object_or_404
from drf_spectacular.utils import OpenApiResponse, extend_schema
from rest_framework import generics, status
from rest_framework.authentication import SessionAuthentication, TokenAuthentication
from rest_framework.pagination import LimitOffsetPagination
from rest_framework.permissions import BasePermission, IsAuthenticated
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from bookings.models import Booking, BookingStatusChange
from bookings.services import booking_change_status
from integrations.idempotency import (
    IDEMPOTENCY_ERROR,
    IDEMPOTENCY_KEY_PARAMETER,
    IDEMPOTENCY_KEY_REUSED_RESPONSE,
    respond_idempotently,
)
from integrations.models import OpenRequest
from integrations.selectors import OpenAssessor, sends_in_order
from integrations.serializers import (
    BookingSerializer,
    BookingStatusUpdateSerializer,
    OpenRequestSerializer,
    RefusalSerializer,
)
from integrations.services.opening import open_request_create

AUTHENTICATION = [TokenAuthentication, SessionAuthentication]


def requires(*perms: str) -> type[BasePermission]:
    class HasPermissions(BasePermission):
        message = f"You need the permission {', '.join(perms)}."

        def has_permission(self, request: Request, view: Any) -> bool:
            return bool(request.user and request.user.has_perms(perms))

    return HasPermissions


class BookingPagination(LimitOffsetPagination):
    default_limit = 50
    max_limit = 500


class BookingList(generics.ListAPIView[Booking]):
    """Bookings, newest start first; `?status=<code>` filters by status."""

    authentication_classes = AUTHENTICATION
    permission_classes = [IsAuthenticated, requires("bookings.view_booking")]
    serializer_class = BookingSerializer
    pagination_class = BookingPagination

    def get_serializer_context(self) -> dict[str, Any]:
        return {**super().get_serializer_context(), "open_assessor": OpenAssessor()}

    def get_queryset(self) -> QuerySet[Booking]:
        queryset = Booking.objects.select_related("object__parent", "status").order_by("-start", "-id")
        code = self.request.query_params.get("status")
        if code is not None:
            queryset = queryset.filter(status__code=code) if code.isdigit() else queryset.none()
        return queryset


class BookingDetail(APIView):
    authentication_classes = AUTHENTICATION

    def get_permissions(self) -> list[BasePermission]:
        perm = "bookings.change_booking" if self.request.method == "PATCH" else "bookings.view_booking"
        return [IsAuthenticated(), requires(perm)()]

    def _booking(self, pk: int) -> Booking:
        return get_object_or_404(Booking.objects.select_related("object__parent", "status"), pk=pk)

    @extend_schema(responses=BookingSerializer)
    def get(self, request: Request, pk: int) -> Response:
        return Response(BookingSerializer(self._booking(pk)).data)

    @extend_schema(
        request=BookingStatusUpdateSerializer,
        parameters=[IDEMPOTENCY_KEY_PARAMETER],
        responses={
            200: BookingSerializer,
            400: OpenApiResponse(description="Unknown or inactive status code, or a malformed Idempotency-Key"),
            422: IDEMPOTENCY_KEY_REUSED_RESPONSE,
        },
        description=(
            "Change the booking's status (the same service as the admin; may open the door). Safe to retry with "
            "an `Idempotency-Key`."
        ),
    )
    def patch(self, request: Request, pk: int) -> Response:
        return respond_idempotently(request, route=f"bookings/{pk}", action=lambda: self._change_status(request, pk))

    def _change_status(self, request: Request, pk: int) -> Response:
        booking = self._booking(pk)
        serializer = BookingStatusUpdateSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        booking_change_status(
            booking=booking,
            status=serializer.validated_data["status"],
            actor=request.user,
            source=BookingStatusChange.Source.API,
        )
        return Response(BookingSerializer(self._booking(pk)).data)


class BookingOpen(APIView):
    authentication_classes = AUTHENTICATION
    permission_classes = [IsAuthenticated, requires("integrations.open_door")]

    @extend_schema(
        request=None,
        parameters=[IDEMPOTENCY_KEY_PARAMETER],
        responses={
            202: OpenRequestSerializer,
            400: OpenApiResponse(IDEMPOTENCY_ERROR, description="A malformed Idempotency-Key"),
            409: OpenApiResponse(RefusalSerializer, description="Refused: the reason says why"),
            422: IDEMPOTENCY_KEY_REUSED_RESPONSE,
        },
        description=(
            "Ask to open the booking's door now. 202: accepted (follow the open request); identical requests "
            "within the dedupe window return the same open request. 409: refused, with the reason. Safe to "
            "retry with an `Idempotency-Key`: the same key and body give the same answer and open request."
        ),
    )
    def post(self, request: Request, pk: int) -> Response:
        return respond_idempotently(
            request,
            route=f"bookings/{pk}/open",
            action=lambda: self._open(request, pk),
            render_after_commit=self._answer_again,
        )

    def _open(self, request: Request, pk: int) -> Response:
        booking = get_object_or_404(Booking, pk=pk)
        result = open_request_create(booking=booking, trigger=OpenRequest.Trigger.API, actor=request.user)
        return self._answer(result.open_request.pk)

    def _answer_again(self, response: Response) -> Response:
        """The answer once the request was queued (or found the queue down, which its reason then says)."""
        data = response.data.get("open_request", response.data)
        return self._answer(int(data["id"]))

    def _answer(self, open_request_id: int) -> Response:
        open_request = (
            OpenRequest.objects.select_related("integration", "actor")
            .prefetch_related(sends_in_order())
            .get(pk=open_request_id)
        )
        data = OpenRequestSerializer(open_request).data
        if open_request.state == OpenRequest.State.REFUSED:
            return Response(
                {"detail": open_request.reason, "code": open_request.outcome_code, "open_request": data},
                status=status.HTTP_409_CONFLICT,
            )
        return Response(data, status=status.HTTP_202_ACCEPTED)


class OpenRequestDetail(generics.RetrieveAPIView[OpenRequest]):
    authentication_classes = AUTHENTICATION
    permission_classes = [IsAuthenticated, requires("integrations.view_openrequest")]
    serializer_class = OpenRequestSerializer
    queryset = OpenRequest.objects.select_related("integration", "actor").prefetch_related(sends_in_order())
