"""Rasters: upload (start, PUT, commit), list and filter, edit, download, detection areas and markers."""

from __future__ import annotations

from django.db import transaction
from django.db.models import Exists, OuterRef
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter, extend_schema
from rest_framework import exceptions, status
from rest_framework.response import Response

from detectors.models import Detector
from imagery.models import Image
from imagery.purge import delete_with_blobs
from imagery.storage import get_blob_store
from imagery.uploads import UploadNotReceived, commit_upload, start_upload
from picterra.organizations.models import Project
from picterra.public_api import serializers as public
from picterra.public_api.cleanup import raster_committed, record_raster_upload
from picterra.public_api.models import Marker, Operation, RasterDetails, RasterDetectionArea, VectorLayer
from picterra.public_api.translate import (
    DOWNLOAD_URL_TTL_S,
    BadGeoJSON,
    apply_band_specification,
    check_inside,
    polygons_from_geojson,
)
from picterra.public_api.views.base import PublicView, parse_bool, parse_date_param, uuid_or_404

DEFAULT_FOLDER_NAME = "Picterra API Project"


class RasterListView(PublicView):
    @extend_schema(
        parameters=[
            OpenApiParameter("page_number", int),
            OpenApiParameter("folder", str),
            OpenApiParameter("search", str),
            OpenApiParameter("user_tag", str),
            OpenApiParameter("max_cloud_coverage", int),
            OpenApiParameter("captured_before", OpenApiTypes.DATETIME),
            OpenApiParameter("captured_after", OpenApiTypes.DATETIME),
            OpenApiParameter("has_vector_layers", bool),
        ],
        responses={200: public.RasterPageSerializer},
        operation_id="rasters_list",
    )
    def get(self, request):
        rasters = self.scoped(Image).select_related("public_details").order_by("-created_at", "pk")
        params = request.query_params
        if params.get("folder"):
            rasters = rasters.filter(project_id=uuid_or_404(params["folder"]))
        if params.get("search"):
            rasters = rasters.filter(name__icontains=params["search"])
        if params.get("user_tag"):
            rasters = rasters.filter(public_details__user_tag=params["user_tag"])
        if params.get("max_cloud_coverage"):
            try:
                rasters = rasters.filter(public_details__cloud_coverage__lte=int(params["max_cloud_coverage"]))
            except ValueError:
                raise exceptions.ValidationError({"max_cloud_coverage": "Must be an integer."}) from None
        before, after = parse_date_param(request, "captured_before"), parse_date_param(request, "captured_after")
        if before:
            rasters = rasters.filter(captured_at__lte=before)
        if after:
            rasters = rasters.filter(captured_at__gte=after)
        has_layers = parse_bool(params.get("has_vector_layers"))
        if has_layers is not None:
            layered = Exists(VectorLayer.objects.filter(image=OuterRef("pk")))
            rasters = rasters.filter(layered if has_layers else ~layered)
        return self.paginate(rasters, public.RasterPageSerializer)


class RasterUploadView(PublicView):
    @extend_schema(request=public.RasterUploadSerializer, responses={201: public.RasterUploadTicketSerializer})
    def post(self, request):
        """Step 1 of 3: a raster waiting for its bytes, and the signed URL to PUT them to."""
        data = self.body(public.RasterUploadSerializer)
        if data.get("folder_id"):
            folder = self.get_one(Project, data["folder_id"])
        else:
            folder, _ = Project.objects.get_or_create(
                organization=self.organization, name=DEFAULT_FOLDER_NAME, defaults={"created_by": request.user}
            )
        with transaction.atomic():
            image, url = start_upload(folder, request.user, data["name"], data["name"], data.get("captured_at"))
            RasterDetails.objects.create(
                image=image,
                identity_key=data.get("identity_key") or "",
                user_tag=data.get("user_tag") or "",
                cloud_coverage=data.get("cloud_coverage"),
                multispectral=data.get("multispectral", True),
            )
            record_raster_upload(self.organization, image)  # never committed: removed once it expires
        return self.created(public.RasterUploadTicketSerializer, {"raster_id": image.pk, "upload_url": url})


class RasterImportView(PublicView):
    @extend_schema(request=None, responses={400: OpenApiTypes.OBJECT})
    def post(self, request, upload_id=None):
        """Remote imagery sources (`import_raster_from_remote_source`) are not part of this platform."""
        raise exceptions.ValidationError(
            {"detail": "Importing rasters from remote imagery sources is not available on this server."}
        )


class RasterCommitView(PublicView):
    @extend_schema(request=None, responses={201: public.OperationReferenceSerializer})
    def post(self, request, raster_id):
        """Step 3 of 3: the bytes are there, process them (COG conversion) in a worker."""
        image = self.get_one(Image, raster_id)
        try:
            image = commit_upload(image)
        except UploadNotReceived as exc:
            raise exceptions.ValidationError({"detail": str(exc)}) from None
        raster_committed(image)
        return self.operation(kind=Operation.Kind.UPLOAD_RASTER, image=image, metadata={"raster_id": str(image.pk)})


class RasterDetailView(PublicView):
    @extend_schema(responses={200: public.RasterSerializer}, operation_id="rasters_get")
    def get(self, request, raster_id):
        return Response(public.RasterSerializer(self.get_one(Image, raster_id)).data)

    @extend_schema(request=public.RasterEditSerializer, responses={204: None})
    def put(self, request, raster_id):
        image = self.get_one(Image, raster_id)
        data = self.body(public.RasterEditSerializer)
        details = RasterDetails.objects.get_or_create(image=image)[0]
        if "name" in data:
            image.name = data["name"]
        if "folder_id" in data:
            image.project = self.get_one(Project, data["folder_id"])
        if "captured_at" in data:
            image.captured_at = data["captured_at"]
        if "multispectral_band_specification" in data:
            apply_band_specification(image, data["multispectral_band_specification"])
        for field in ("identity_key", "user_tag"):
            if field in data:
                setattr(details, field, data[field] or "")
        if "cloud_coverage" in data:
            details.cloud_coverage = data["cloud_coverage"]
        with transaction.atomic():
            image.save()
            details.save()
        return Response(status=status.HTTP_204_NO_CONTENT)

    @extend_schema(responses={204: None})
    def delete(self, request, raster_id):
        delete_with_blobs(self.get_one(Image, raster_id))
        return Response(status=status.HTTP_204_NO_CONTENT)


class RasterDownloadView(PublicView):
    @extend_schema(responses={200: public.DownloadSerializer})
    def get(self, request, raster_id):
        """A signed link to the raster as processed (a Cloud-Optimized GeoTIFF)."""
        image = self.get_one(Image, raster_id)
        if image.status != Image.Status.READY:
            raise exceptions.ValidationError({"detail": f"The raster is not ready (status {image.status})."})
        url = get_blob_store().signed_url(image.cog_key, "GET", DOWNLOAD_URL_TTL_S)
        return Response(public.DownloadSerializer({"download_url": url, "expiration": DOWNLOAD_URL_TTL_S}).data)


class DetectionAreasUploadView(PublicView):
    @extend_schema(request=None, responses={201: public.GeoJSONUploadTicketSerializer})
    def post(self, request, raster_id):
        self.get_one(Image, raster_id)
        return self.upload_ticket("detection_areas")


class DetectionAreasCommitView(PublicView):
    @extend_schema(request=None, responses={201: public.OperationReferenceSerializer})
    def post(self, request, raster_id, upload_id):
        """Replace the raster's detection areas with the polygons of the uploaded GeoJSON."""
        image = self.get_one(Image, raster_id)
        metadata = {"raster_id": str(image.pk)}
        try:
            polygons = polygons_from_geojson(self.uploaded("detection_areas", upload_id))
            check_inside(image, polygons)
        except BadGeoJSON as exc:
            return self.finished(Operation.Kind.DETECTION_AREAS, errors=[str(exc)], metadata=metadata)
        with transaction.atomic():
            RasterDetectionArea.objects.filter(image=image).delete()
            # Simplified like Picterra does: detection areas need not follow every vertex.
            RasterDetectionArea.objects.bulk_create(
                RasterDetectionArea(image=image, geometry=_simplified(p)) for p in polygons
            )
        return self.finished(Operation.Kind.DETECTION_AREAS, results={"count": len(polygons)}, metadata=metadata)


def _simplified(polygon):
    simple = polygon.simplify(1e-6, preserve_topology=True)
    return simple if simple.geom_type == "Polygon" and simple.valid else polygon


class DetectionAreasView(PublicView):
    @extend_schema(responses={204: None})
    def delete(self, request, raster_id):
        """Back to the default: detect over the whole raster."""
        image = self.get_one(Image, raster_id)
        RasterDetectionArea.objects.filter(image=image).delete()
        return Response(status=status.HTTP_204_NO_CONTENT)


class RasterMarkersView(PublicView):  # rasters/<id>/markers/ and detectors/<id>/training_rasters/<id>/markers/
    @extend_schema(parameters=[OpenApiParameter("page_number", int)], responses={200: public.MarkerPageSerializer})
    def get(self, request, raster_id, detector_id=None):
        image = self.get_one(Image, raster_id)
        markers = Marker.objects.filter(image=image).order_by("created_at", "pk")
        if detector_id is not None:
            markers = markers.filter(detector=self.get_one(Detector, detector_id))
        return self.paginate(markers, public.MarkerPageSerializer)

    @extend_schema(request=public.MarkerCreateSerializer, responses={201: public.MarkerSerializer})
    def post(self, request, raster_id, detector_id=None):
        image = self.get_one(Image, raster_id)
        detector = self.get_one(Detector, detector_id) if detector_id is not None else None
        data = self.body(public.MarkerCreateSerializer)
        marker = Marker.objects.create(
            image=image, detector=detector, point=data["marker"], text=data.get("text", ""), created_by=request.user
        )
        return self.created(public.MarkerSerializer, marker)
