from __future__ import annotations

from datetime import timedelta

from django.utils import timezone
from drf_spectacular.utils import extend_schema
from rest_framework import parsers, status
from rest_framework.decorators import action
from rest_framework.response import Response

from imagery.api.serializers import (
    ImageSerializer,
    ImageUploadSerializer,
    UploadStartSerializer,
    UploadTicketSerializer,
)
from imagery.models import Image
from imagery.purge import delete_with_blobs
from imagery.uploads import (
    UPLOAD_URL_TTL_S,
    UploadNotReceived,
    commit_upload,
    start_upload,
    store_small_upload,
    upload_url,
)
from picterra.api.errors import bad_request
from picterra.api.viewsets import OrganizationScopedViewSet


class ImageViewSet(OrganizationScopedViewSet):
    """Images of the caller's projects.

    Small files: POST a multipart `file`. Large files: POST `uploads/`, PUT the bytes to the returned
    signed URL, then POST `<id>/commit/`. Ingest (COG conversion) runs in a worker either way.
    """

    queryset = Image.objects.all()
    serializer_class = ImageSerializer
    parser_classes = [parsers.JSONParser, parsers.MultiPartParser, parsers.FormParser]
    filterset_fields = ["project", "status"]
    search_fields = ["name"]
    ordering_fields = ["name", "created_at", "status"]
    select_related = ("project",)

    @extend_schema(request={"multipart/form-data": ImageUploadSerializer}, responses={201: ImageSerializer})
    def create(self, request, *args, **kwargs):
        upload = ImageUploadSerializer(data=request.data, context=self.get_serializer_context())
        upload.is_valid(raise_exception=True)
        data = upload.validated_data
        file = data["file"]
        image = store_small_upload(
            data["project"],
            request.user,
            file,
            filename=file.name or "upload",
            name=data.get("name", ""),
            captured_at=data.get("captured_at"),
        )
        return Response(self.get_serializer(image).data, status=status.HTTP_201_CREATED)

    @extend_schema(request=UploadStartSerializer, responses={201: UploadTicketSerializer})
    @action(detail=False, methods=["post"], url_path="uploads", url_name="uploads")
    def start_upload(self, request):
        """Start a large upload: PUT the file's bytes to the returned `upload_url`, then POST `commit/`."""
        serializer = UploadStartSerializer(data=request.data, context=self.get_serializer_context())
        serializer.is_valid(raise_exception=True)
        data = serializer.validated_data
        image, url = start_upload(
            data["project"], request.user, data["filename"], data.get("name", ""), data.get("captured_at")
        )
        return Response(self._ticket(image, url), status=status.HTTP_201_CREATED)

    @extend_schema(request=None, responses={200: UploadTicketSerializer})
    @action(detail=True, methods=["post"], url_path="upload-url")
    def renew_upload_url(self, request, pk=None):
        """A fresh upload URL, to retry an upload that failed or whose URL expired."""
        image = self.get_object()
        if image.status != Image.Status.UPLOADING:
            return bad_request("This image already has its file.")
        return Response(self._ticket(image, upload_url(image)))

    @extend_schema(request=None, responses={200: ImageSerializer})
    @action(detail=True, methods=["post"])
    def commit(self, request, pk=None):
        """The file is uploaded: queue its processing."""
        try:
            image = commit_upload(self.get_object())
        except UploadNotReceived as exc:
            return bad_request(str(exc))
        return Response(self.get_serializer(image).data)

    def _ticket(self, image: Image, url: str) -> dict:
        expires_at = timezone.now() + timedelta(seconds=UPLOAD_URL_TTL_S)
        return {"image": self.get_serializer(image).data, "upload_url": url, "expires_at": expires_at.isoformat()}

    def perform_destroy(self, instance):
        delete_with_blobs(instance)  # the original and COGs are purged by a worker once this commits
