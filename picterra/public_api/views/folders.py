"""Folders (our projects) and their detectors, and sharing grants (the whole organization, as editors)."""

from __future__ import annotations

from django.db.models import Q
from django.http import Http404
from drf_spectacular.utils import OpenApiParameter, extend_schema
from rest_framework import exceptions
from rest_framework.response import Response

from detectors.models import Detector
from picterra.organizations.models import Project
from picterra.public_api import serializers as public
from picterra.public_api.views.base import PublicView


class FolderListView(PublicView):
    @extend_schema(parameters=[OpenApiParameter("page_number", int)], responses={200: public.FolderPageSerializer})
    def get(self, request):
        return self.paginate(self.scoped(Project).order_by("-created_at", "pk"), public.FolderPageSerializer)

    @extend_schema(request=public.FolderCreateSerializer, responses={201: public.FolderSerializer})
    def post(self, request):
        data = self.body(public.FolderCreateSerializer)
        folder = Project.objects.create(organization=self.organization, name=data["name"], created_by=request.user)
        return self.created(public.FolderSerializer, folder)


class FolderDetectorsView(PublicView):
    @extend_schema(parameters=[OpenApiParameter("page_number", int)], responses={200: public.DetectorPageSerializer})
    def get(self, request, folder_id):
        """Detectors of the folder: filed in it, or trained on one of its rasters."""
        folder = self.get_one(Project, folder_id)
        detectors = (
            self.scoped(Detector)
            .filter(Q(project=folder) | Q(detector_images__image__project=folder))
            .distinct()
            .order_by("-created_at", "pk")
        )
        return self.paginate(detectors, public.DetectorPageSerializer)


class GrantsView(PublicView):
    """Everyone in the organization edits its folders and detectors; finer sharing is not available."""

    def _resource(self, kind: str, resource_id: str):
        model = {"folder": Project, "detector": Detector}.get(kind)
        if model is None:
            raise Http404
        return self.get_one(model, resource_id)

    def _grants(self) -> dict:
        return {"grants": [{"grantee": {"type": "organization", "id": str(self.organization.pk)}, "role": "editor"}]}

    @extend_schema(responses={200: public.GrantsSerializer})
    def get(self, request, kind, resource_id):
        self._resource(kind, resource_id)
        return Response(public.GrantsSerializer(self._grants()).data)

    @extend_schema(request=public.GrantsSerializer, responses={201: public.GrantsSerializer})
    def post(self, request, kind, resource_id):
        self._resource(kind, resource_id)
        data = self.body(public.GrantsSerializer)
        wanted = [
            {"grantee": {"type": g["grantee"]["type"], "id": str(g["grantee"]["id"])}, "role": g["role"]}
            for g in data["grants"]
        ]
        if wanted != self._grants()["grants"]:
            raise exceptions.ValidationError(
                {"grants": "This server shares everything with the whole organization as editors, and nothing else."}
            )
        return self.created(public.GrantsSerializer, self._grants())
