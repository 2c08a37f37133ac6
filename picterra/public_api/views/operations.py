"""Operations: what the client polls after every long action (`operations/<id>/`)."""

from __future__ import annotations

from drf_spectacular.utils import extend_schema
from rest_framework.response import Response

from picterra.public_api import serializers as public
from picterra.public_api.models import Operation
from picterra.public_api.translate import settled
from picterra.public_api.views.base import PublicView


class OperationView(PublicView):
    @extend_schema(responses={200: public.OperationSerializer}, operation_id="operations_get")
    def get(self, request, operation_id):
        return Response(public.OperationSerializer(settled(self.get_one(Operation, operation_id))).data)
