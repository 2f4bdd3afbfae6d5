"""API representations of bookings and open requests (read mostly; the status is the one writable field)."""

from __future__ import annotations

from typing import Any

from rest_framework import serializers

from bookings.models import Booking, BookingStatus
from integrations.models import OPEN_ATTEMPT_AUDIT_FIELDS, OPEN_REQUEST_AUDIT_FIELDS, OpenAttempt, OpenRequest
from integrations.selectors import OpenAssessor


class OpenAttemptSerializer(serializers.ModelSerializer[OpenAttempt]):
    class Meta:
        model = OpenAttempt
        fields = list(OPEN_ATTEMPT_AUDIT_FIELDS)
        read_only_fields = fields


class OpenRequestSerializer(serializers.ModelSerializer[OpenRequest]):
    actor: serializers.SlugRelatedField[Any] = serializers.SlugRelatedField(slug_field="username", read_only=True)
    integration_needs_reactivation = serializers.SerializerMethodField()
    attempts = serializers.IntegerField(read_only=True, help_text="How many times it was sent: the sends below.")
    sends = OpenAttemptSerializer(many=True, read_only=True, help_text="Every send to Salto KS, oldest first.")

    class Meta:
        model = OpenRequest
        fields = ["id", "booking", *OPEN_REQUEST_AUDIT_FIELDS, "sends", "integration_needs_reactivation"]
        read_only_fields = fields

    def get_integration_needs_reactivation(self, obj: OpenRequest) -> bool:
        return bool(obj.integration and obj.integration.needs_reactivation)


class StatusSerializer(serializers.ModelSerializer[BookingStatus]):
    class Meta:
        model = BookingStatus
        fields = ["code", "name"]


class DoorSerializer(serializers.Serializer[Any]):
    """What the booking would open now, via which rule, or why not."""

    would_open = serializers.BooleanField()
    explain = serializers.CharField()
    refusal = serializers.CharField(allow_null=True)
    lock_id = serializers.CharField(allow_null=True)
    lock_name = serializers.CharField(allow_null=True)
    rule = serializers.CharField(allow_null=True)
    integration = serializers.CharField(allow_null=True)
    integration_needs_reactivation = serializers.BooleanField()
    reactivation_reason = serializers.CharField()


class BookingSerializer(serializers.ModelSerializer[Booking]):
    object = serializers.SerializerMethodField()
    status = StatusSerializer(read_only=True)
    door = serializers.SerializerMethodField()

    class Meta:
        model = Booking
        fields = ["id", "object", "start", "end", "status", "customer_name", "customer_email", "door"]
        read_only_fields = fields

    def get_object(self, obj: Booking) -> dict[str, Any]:
        bookable = obj.object
        return {
            "id": bookable.pk,
            "name": bookable.name,
            "label": bookable.label,
            "parent_id": bookable.parent_id,
        }

    def get_door(self, obj: Booking) -> dict[str, Any]:
        # A list view shares one assessor (integrations read once); a single booking gets its own.
        assessor = self.context.get("open_assessor") or OpenAssessor()
        assessment = assessor.assess(obj)
        decision, integration = assessment.decision, assessment.integration
        lock = decision.lock
        needs = bool(integration and integration.needs_reactivation)
        return DoorSerializer(
            {
                "would_open": decision.allowed,
                "explain": decision.explain,
                "refusal": str(decision.refusal) if decision.refusal else None,
                "lock_id": lock.lock_id if lock else None,
                "lock_name": lock.lock_name if lock else None,
                "rule": str(lock.rule) if lock else None,
                "integration": integration.name if integration else None,
                "integration_needs_reactivation": needs,
                "reactivation_reason": integration.reactivation_reason if integration and needs else "",
            }
        ).data


class BookingStatusUpdateSerializer(serializers.Serializer[Any]):
    status = serializers.SlugRelatedField(
        slug_field="code", queryset=BookingStatus.objects.filter(is_active=True), help_text="The status code, e.g. 30."
    )


class RefusalSerializer(serializers.Serializer[Any]):
    detail = serializers.CharField()
    code = serializers.CharField()
    open_request = OpenRequestSerializer()
