"""What every public API view shares: API-key authentication, organization scoping, paging, operations."""

from __future__ import annotations

import io
import json
import uuid
from datetime import datetime

from django.conf import settings
from django.http import Http404, JsonResponse
from django.utils.dateparse import parse_datetime
from django.views.decorators.csrf import csrf_exempt
from rest_framework import exceptions, status
from rest_framework.pagination import PageNumberPagination
from rest_framework.permissions import IsAuthenticated
from rest_framework.response import Response
from rest_framework.serializers import Serializer
from rest_framework.views import APIView

from detectors.models import Detector
from imagery.models import Image
from imagery.storage import get_blob_store
from picterra.organizations.authentication import ApiKeyAuthentication
from picterra.organizations.models import ApiKey, Membership, Organization, Project
from picterra.public_api import serializers as public
from picterra.public_api.cleanup import record_geojson_upload
from picterra.public_api.converters import public_id
from picterra.public_api.models import Operation
from picterra.public_api.translate import ANNOTATION_TYPES, finished_operation, read_upload

PUBLIC_NAMES = {Image: "raster", Project: "folder", Detector: "detector", Operation: "operation"}
UPLOAD_TTL_S = 24 * 3600


class PublicPagination(PageNumberPagination):
    """`?page_number=N` from 1, server-chosen page size, `next`/`previous` as absolute URLs."""

    page_query_param = "page_number"

    def get_page_size(self, request) -> int:
        return settings.PUBLIC_API_PAGE_SIZE

    def render(self, page: list, page_serializer: type[Serializer]) -> Response:
        """The page as `page_serializer` (`serializers._page`) renders it."""
        return Response(
            page_serializer(
                {
                    "count": self.page.paginator.count,
                    "page_size": self.get_page_size(self.request),
                    "next": self.get_next_link(),
                    "previous": self.get_previous_link(),
                    "results": page,
                }
            ).data
        )


class PublicView(APIView):
    """Base: API key only, organization of the key, JSON in and out."""

    authentication_classes = [ApiKeyAuthentication]
    permission_classes = [IsAuthenticated]

    @property
    def organization(self) -> Organization:
        key = self.request.auth
        if isinstance(key, ApiKey):
            return key.organization
        membership = Membership.objects.filter(user=self.request.user).select_related("organization").first()
        if membership is None:
            raise exceptions.PermissionDenied("You are not a member of any organization.")
        return membership.organization

    def scoped(self, model):
        """Rows of the key's organization (and of the user's memberships: a removed member sees nothing)."""
        lookup = model.organization_lookup
        return model.objects.for_user(self.request.user).filter(**{lookup or "pk": self.organization}).distinct()

    def get_one(self, model, pk) -> object:
        """The row of the organization with that id (a path's `PublicId` or a body's string), or a 404."""
        pid = public_id(pk)
        if pid.uuid is None:
            raise Http404
        obj = self.scoped(model).filter(pk=pid.uuid).first()
        if obj is None:
            raise exceptions.NotFound(f"No {PUBLIC_NAMES.get(model, model._meta.verbose_name)} with id {pk}.")
        return obj

    def paginate(self, queryset, page_serializer: type[Serializer]) -> Response:
        paginator = PublicPagination()
        page = paginator.paginate_queryset(queryset, self.request, view=self)
        return paginator.render(page, page_serializer)

    def body(self, serializer_class, **kwargs) -> dict:
        serializer = serializer_class(data=self.request.data, **kwargs)
        serializer.is_valid(raise_exception=True)
        return serializer.validated_data

    def created(self, serializer_class: type[Serializer], instance, **kwargs) -> Response:
        """201 with `instance` rendered by `serializer_class`."""
        return Response(serializer_class(instance, **kwargs).data, status=status.HTTP_201_CREATED)

    def operation(self, **fields) -> Response:
        op = Operation.objects.create(organization=self.organization, created_by=self.request.user, **fields)
        return self.created(public.OperationReferenceSerializer, op)

    def finished(self, kind: str, results=None, errors=None, metadata=None) -> Response:
        op = finished_operation(self.organization, self.request.user, kind, results, errors, metadata)
        return self.created(public.OperationReferenceSerializer, op)

    def upload_ticket(self, kind: str) -> Response:
        """201 with a signed PUT URL for a file the next commit reads (GeoJSON uploads)."""
        upload_id = str(uuid.uuid4())
        key = upload_key(self.organization, kind, upload_id)
        record_geojson_upload(self.organization, upload_id, key)  # expires; the sweeper removes the file
        ticket = {"upload_id": upload_id, "upload_url": get_blob_store().signed_url(key, "PUT", UPLOAD_TTL_S)}
        return self.created(public.GeoJSONUploadTicketSerializer, ticket)

    def uploaded(self, kind: str, upload_id) -> bytes:
        if public_id(upload_id).uuid is None:
            raise Http404
        return read_upload(upload_key(self.organization, kind, upload_id))


def upload_key(organization: Organization, kind: str, upload_id: str) -> str:
    # The organization is part of the key, so an upload id is useless to anyone outside it.
    return f"public-api/uploads/{organization.pk}/{kind}/{upload_id}.geojson"


def uuid_or_404(value: str) -> str:
    """A query parameter's id, normalized (`str(UUID)`), or a 404."""
    parsed = public_id(value).uuid
    if parsed is None:
        raise Http404
    return str(parsed)


def annotation_type_or_404(value: str) -> str:
    if value not in ANNOTATION_TYPES:
        raise Http404
    return value


def parse_bool(value: str | None) -> bool | None:
    if value is None:
        return None
    return value.strip().lower() in ("true", "1", "yes")


def parse_date_param(request, name: str) -> datetime | None:
    raw = request.query_params.get(name)
    if raw is None:
        return None
    value = parse_datetime(raw.replace("Z", "+00:00")) if raw else None
    if value is None:
        raise exceptions.ValidationError({name: "Use an ISO-8601 date and time, e.g. 2020-01-01T12:00:00Z."})
    return value


def put_json(key: str, data) -> None:
    get_blob_store().put_stream(key, io.BytesIO(json.dumps(data).encode()))


@csrf_exempt  # an unknown path answers the API's JSON 404 for every method, never Django's CSRF page
def unknown_path(request, *args, **kwargs) -> JsonResponse:
    hint = "" if request.path.endswith("/") else " Public API paths end with a slash."
    return JsonResponse({"detail": f"No such endpoint: {request.path}.{hint}"}, status=404)
