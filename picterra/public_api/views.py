"""Views of the public API v2: thin translations onto the platform's domain functions.

Every view authenticates with `X-Api-Key` only and sees the objects of the key's organization only;
others' ids answer 404. Long work returns an operation the client polls (`operations/<id>/`).
"""

from __future__ import annotations

import uuid
from datetime import datetime

from django.conf import settings
from django.db import transaction
from django.db.models import Exists, OuterRef, Q
from django.http import Http404, JsonResponse
from django.utils.dateparse import parse_datetime
from django.views.decorators.csrf import csrf_exempt
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter, extend_schema
from rest_framework import exceptions, status
from rest_framework.pagination import PageNumberPagination
from rest_framework.permissions import IsAuthenticated
from rest_framework.response import Response
from rest_framework.views import APIView

from detectors.api.serializers import DetectorImageSerializer, DetectorSerializer
from detectors.detection import CannotDetect, start_detection
from detectors.models import Area, DetectedObject, Detector, DetectorImage
from detectors.training import NotTrainable, start_training
from imagery.models import Image
from imagery.purge import delete_with_blobs
from imagery.storage import get_blob_store
from imagery.uploads import UploadNotReceived, commit_upload, start_upload
from picterra.organizations.authentication import ApiKeyAuthentication
from picterra.organizations.models import ApiKey, Membership, Organization, Project
from picterra.public_api import serializers as public
from picterra.public_api.cleanup import (
    raster_committed,
    record_download,
    record_geojson_upload,
    record_raster_upload,
)
from picterra.public_api.models import (
    Marker,
    Operation,
    RasterDetails,
    RasterDetectionArea,
    TemporaryFile,
    VectorLayer,
)
from picterra.public_api.translate import (
    ANNOTATION_TYPES,
    DOWNLOAD_URL_TTL_S,
    BadGeoJSON,
    BlobRef,
    apply_band_specification,
    check_inside,
    class_for,
    detector_json,
    finished_operation,
    operation_json,
    operation_reference,
    polygons_feature_collection,
    polygons_from_geojson,
    raster_json,
    read_upload,
    replace_annotations,
)

DEFAULT_FOLDER_NAME = "Picterra API Project"
PUBLIC_NAMES = {Image: "raster", Project: "folder", Detector: "detector", Operation: "operation"}
UPLOAD_TTL_S = 24 * 3600


class PublicPagination(PageNumberPagination):
    """`?page_number=N` from 1, server-chosen page size, `next`/`previous` as absolute URLs."""

    page_query_param = "page_number"

    def get_page_size(self, request) -> int:
        return settings.PUBLIC_API_PAGE_SIZE

    def get_paginated_response(self, data) -> Response:
        return Response(
            {
                "count": self.page.paginator.count,
                "page_size": self.get_page_size(self.request),
                "next": self.get_next_link(),
                "previous": self.get_previous_link(),
                "results": data,
            }
        )

    def get_paginated_response_schema(self, schema: dict) -> dict:
        base = super().get_paginated_response_schema(schema)
        base["properties"]["page_size"] = {"type": "integer"}
        return base


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
        try:
            uuid.UUID(str(pk))
        except ValueError:
            raise Http404 from None
        obj = self.scoped(model).filter(pk=pk).first()
        if obj is None:
            raise exceptions.NotFound(f"No {PUBLIC_NAMES.get(model, model._meta.verbose_name)} with id {pk}.")
        return obj

    def paginate(self, queryset, render) -> Response:
        paginator = PublicPagination()
        page = paginator.paginate_queryset(queryset, self.request, view=self)
        return paginator.get_paginated_response([render(obj) for obj in page])

    def body(self, serializer_class, **kwargs) -> dict:
        serializer = serializer_class(data=self.request.data, **kwargs)
        serializer.is_valid(raise_exception=True)
        return serializer.validated_data

    def operation(self, **fields) -> Response:
        op = Operation.objects.create(organization=self.organization, created_by=self.request.user, **fields)
        return Response(operation_reference(op), status=status.HTTP_201_CREATED)

    def finished(self, kind: str, results=None, errors=None, metadata=None) -> Response:
        op = finished_operation(self.organization, self.request.user, kind, results, errors, metadata)
        return Response(operation_reference(op), status=status.HTTP_201_CREATED)

    def upload_ticket(self, kind: str) -> dict:
        """A signed PUT URL for a file the next commit reads (GeoJSON uploads)."""
        upload_id = str(uuid.uuid4())
        key = upload_key(self.organization, kind, upload_id)
        record_geojson_upload(self.organization, upload_id, key)  # expires; the sweeper removes the file
        return {"upload_id": upload_id, "upload_url": get_blob_store().signed_url(key, "PUT", UPLOAD_TTL_S)}

    def uploaded(self, kind: str, upload_id: str) -> bytes:
        try:
            uuid.UUID(str(upload_id))
        except ValueError:
            raise Http404 from None
        return read_upload(upload_key(self.organization, kind, upload_id))


def upload_key(organization: Organization, kind: str, upload_id: str) -> str:
    # The organization is part of the key, so an upload id is useless to anyone outside it.
    return f"public-api/uploads/{organization.pk}/{kind}/{upload_id}.geojson"


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


# --- users, operations ---------------------------------------------------------------------------------------------


class UserMeView(PublicView):
    @extend_schema(responses={200: public.UserInfoSerializer}, operation_id="users_me")
    def get(self, request):
        organization = self.organization
        return Response(
            {
                "user_id": str(request.user.pk),
                "username": request.user.username,
                "organization_id": str(organization.pk),
                "organization_name": organization.name,
            }
        )


class OperationView(PublicView):
    @extend_schema(responses={200: public.OperationSerializer}, operation_id="operations_get")
    def get(self, request, operation_id):
        return Response(operation_json(self.get_one(Operation, operation_id)))


# --- rasters -------------------------------------------------------------------------------------------------------


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
            rasters = rasters.filter(project_id=_uuid_or_404(params["folder"]))
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
        return self.paginate(rasters, raster_json)


def _uuid_or_404(value: str) -> str:
    try:
        return str(uuid.UUID(value))
    except ValueError:
        raise Http404 from None


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
        return Response({"raster_id": str(image.pk), "upload_url": url}, status=status.HTTP_201_CREATED)


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
        return Response(raster_json(self.get_one(Image, raster_id)))

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
        return Response({"download_url": url, "expiration": DOWNLOAD_URL_TTL_S})


class DetectionAreasUploadView(PublicView):
    @extend_schema(request=None, responses={201: public.GeoJSONUploadTicketSerializer})
    def post(self, request, raster_id):
        self.get_one(Image, raster_id)
        return Response(self.upload_ticket("detection_areas"), status=status.HTTP_201_CREATED)


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


class RasterMarkersView(PublicView):
    @extend_schema(parameters=[OpenApiParameter("page_number", int)], responses={200: public.MarkerPageSerializer})
    def get(self, request, raster_id, detector_id=None):
        image = self.get_one(Image, raster_id)
        markers = Marker.objects.filter(image=image).order_by("created_at", "pk")
        if detector_id is not None:
            markers = markers.filter(detector=self.get_one(Detector, detector_id))
        return self.paginate(markers, marker_json)

    @extend_schema(request=public.MarkerCreateSerializer, responses={201: public.MarkerSerializer})
    def post(self, request, raster_id, detector_id=None):
        image = self.get_one(Image, raster_id)
        detector = self.get_one(Detector, detector_id) if detector_id is not None else None
        data = self.body(public.MarkerCreateSerializer)
        marker = Marker.objects.create(
            image=image, detector=detector, point=data["marker"], text=data.get("text", ""), created_by=request.user
        )
        return Response(marker_json(marker), status=status.HTTP_201_CREATED)


def marker_json(marker: Marker) -> dict:
    return {
        "id": str(marker.pk),
        "raster_id": str(marker.image_id),
        "detector_id": str(marker.detector_id) if marker.detector_id else None,
        "marker": {"type": "Point", "coordinates": [marker.point.x, marker.point.y]},
        "text": marker.text,
        "created_at": marker.created_at.isoformat(),
    }


class RasterVectorLayersView(PublicView):
    @extend_schema(
        parameters=[
            OpenApiParameter("page_number", int),
            OpenApiParameter("search", str),
            OpenApiParameter("detector", str),
        ],
        responses={200: public.VectorLayerPageSerializer},
    )
    def get(self, request, raster_id):
        image = self.get_one(Image, raster_id)
        layers = VectorLayer.objects.filter(image=image).order_by("created_at", "pk")
        if request.query_params.get("search"):
            layers = layers.filter(name__icontains=request.query_params["search"])
        if request.query_params.get("detector"):
            layers = layers.filter(detection_run__detector_id=_uuid_or_404(request.query_params["detector"]))
        return self.paginate(layers, vector_layer_json)


def vector_layer_json(layer: VectorLayer) -> dict:
    return {
        "id": str(layer.pk),
        "name": layer.name,
        "color": layer.color,
        "count": layer.count,
        "raster_id": str(layer.image_id),
        "detector_id": str(layer.detection_run.detector_id) if layer.detection_run_id else None,
        "created_at": layer.created_at.isoformat(),
    }


# --- vector layers -------------------------------------------------------------------------------------------------


class VectorLayerUploadView(PublicView):
    @extend_schema(request=None, responses={201: public.GeoJSONUploadTicketSerializer})
    def post(self, request, raster_id):
        self.get_one(Image, raster_id)
        return Response(self.upload_ticket("vector_layer"), status=status.HTTP_201_CREATED)


class VectorLayerCommitView(PublicView):
    @extend_schema(request=public.VectorLayerEditSerializer, responses={201: public.OperationReferenceSerializer})
    def post(self, request, raster_id, upload_id):
        image = self.get_one(Image, raster_id)
        data = self.body(public.VectorLayerEditSerializer)
        metadata = {"raster_id": str(image.pk)}
        try:
            polygons = polygons_from_geojson(self.uploaded("vector_layer", upload_id))
        except BadGeoJSON as exc:
            return self.finished(Operation.Kind.VECTOR_LAYER_UPLOAD, errors=[str(exc)], metadata=metadata)
        layer = VectorLayer.objects.create(
            image=image,
            name=data.get("name") or "Uploaded layer",
            color=data.get("color") or "#0000FF",
            count=len(polygons),
        )
        key = f"public-api/vector-layers/{layer.pk}.geojson"
        _put_json(key, polygons_feature_collection(polygons))
        VectorLayer.objects.filter(pk=layer.pk).update(blob_key=key)
        return self.finished(
            Operation.Kind.VECTOR_LAYER_UPLOAD, results={"vector_layer_id": str(layer.pk)}, metadata=metadata
        )


def _put_json(key: str, data) -> None:
    import io
    import json

    get_blob_store().put_stream(key, io.BytesIO(json.dumps(data).encode()))


class VectorLayerDetailView(PublicView):
    @extend_schema(responses={200: public.VectorLayerSerializer})
    def get(self, request, vector_layer_id):
        return Response(vector_layer_json(self.get_one(VectorLayer, vector_layer_id)))

    @extend_schema(request=public.VectorLayerEditSerializer, responses={204: None})
    def put(self, request, vector_layer_id):
        layer = self.get_one(VectorLayer, vector_layer_id)
        data = self.body(public.VectorLayerEditSerializer)
        for field in ("name", "color"):
            if data.get(field):
                setattr(layer, field, data[field])
        layer.save()
        return Response(status=status.HTTP_204_NO_CONTENT)

    @extend_schema(responses={204: None})
    def delete(self, request, vector_layer_id):
        layer = self.get_one(VectorLayer, vector_layer_id)
        if layer.detection_run_id:
            # The objects belong to the detection run (our API still serves them): only hide this layer's.
            DetectedObject.objects.filter(
                detection_run_id=layer.detection_run_id, detector_class_id=layer.detector_class_id, image=layer.image
            ).delete()
        delete_with_blobs(layer)  # its uploaded file and downloads are purged after commit
        return Response(status=status.HTTP_204_NO_CONTENT)


class VectorLayerDownloadView(PublicView):
    @extend_schema(request=None, responses={201: public.OperationReferenceSerializer})
    def post(self, request, vector_layer_id):
        """A FeatureCollection of Polygons at a signed URL (written now; small enough for one request)."""
        layer = self.get_one(VectorLayer, vector_layer_id)
        key, temporary = layer.blob_key, None
        if layer.detection_run_id:
            objects = DetectedObject.objects.filter(
                detection_run_id=layer.detection_run_id, detector_class_id=layer.detector_class_id, image=layer.image
            ).order_by("pk")
            # Built from ids only: the class name goes inside the file, never into its key.
            key = f"public-api/vector-layers/{layer.pk}/{uuid.uuid4().hex}.geojson"
            temporary = record_download(self.organization, key)  # the file expires (cleanup.DOWNLOAD_KEEP_S)
            class_name = layer.detector_class.name if layer.detector_class else layer.name
            collection = polygons_feature_collection([o.geometry for o in objects], {"class_name": class_name})
            _put_json(key, collection)
        operation = finished_operation(
            self.organization,
            request.user,
            Operation.Kind.VECTOR_LAYER_DOWNLOAD,
            results={"download_url": BlobRef(key) if key else None, "expiration": DOWNLOAD_URL_TTL_S},
            metadata={"raster_id": str(layer.image_id), "vector_layer_id": str(layer.pk)},
        )
        if temporary is not None:
            TemporaryFile.objects.filter(pk=temporary.pk).update(operation=operation)
        return Response(operation_reference(operation), status=status.HTTP_201_CREATED)


# --- detectors -----------------------------------------------------------------------------------------------------


class DetectorListView(PublicView):
    @extend_schema(
        parameters=[
            OpenApiParameter("page_number", int),
            OpenApiParameter("search", str),
            OpenApiParameter("user_tag", str),
            OpenApiParameter("is_shared", bool),
        ],
        responses={200: public.DetectorPageSerializer},
        operation_id="detectors_list",
    )
    def get(self, request):
        detectors = self.scoped(Detector).order_by("-created_at", "pk")
        if request.query_params.get("search"):
            detectors = detectors.filter(name__icontains=request.query_params["search"])
        if request.query_params.get("user_tag") or parse_bool(request.query_params.get("is_shared")):
            detectors = detectors.none()  # no tags or sharing outside the organization here
        return self.paginate(detectors, detector_json)

    @extend_schema(request=public.DetectorWriteSerializer, responses={201: public.PublicDetectorSerializer})
    def post(self, request):
        data = self.body(public.DetectorWriteSerializer)
        payload = {"organization": str(self.organization.pk), "name": data.get("name") or "API detector"}
        payload.update(data.get("configuration") or {})
        serializer = DetectorSerializer(data=payload, context={"request": request})
        serializer.is_valid(raise_exception=True)
        detector = serializer.save(created_by=request.user)
        return Response(detector_json(detector), status=status.HTTP_201_CREATED)


class DetectorDetailView(PublicView):
    @extend_schema(responses={200: public.PublicDetectorSerializer}, operation_id="detectors_get")
    def get(self, request, detector_id):
        return Response(detector_json(self.get_one(Detector, detector_id)))

    @extend_schema(request=public.DetectorWriteSerializer, responses={204: None})
    def put(self, request, detector_id):
        detector = self.get_one(Detector, detector_id)
        data = self.body(public.DetectorWriteSerializer)
        payload = dict(data.get("configuration") or {})
        if data.get("name"):
            payload["name"] = data["name"]
        serializer = DetectorSerializer(detector, data=payload, partial=True, context={"request": request})
        serializer.is_valid(raise_exception=True)
        serializer.save()
        return Response(status=status.HTTP_204_NO_CONTENT)

    @extend_schema(responses={204: None})
    def delete(self, request, detector_id):
        delete_with_blobs(self.get_one(Detector, detector_id))
        return Response(status=status.HTTP_204_NO_CONTENT)


class TrainingRastersView(PublicView):
    @extend_schema(parameters=[OpenApiParameter("page_number", int)], responses={200: public.RasterPageSerializer})
    def get(self, request, detector_id):
        detector = self.get_one(Detector, detector_id)
        rasters = (
            Image.objects.filter(detector_images__detector=detector)
            .select_related("public_details")
            .order_by("detector_images__created_at", "pk")
        )
        return self.paginate(rasters, raster_json)

    @extend_schema(request=public.TrainingRasterSerializer, responses={201: public.TrainingRasterSerializer})
    def post(self, request, detector_id):
        detector = self.get_one(Detector, detector_id)
        data = self.body(public.TrainingRasterSerializer)
        image = self.get_one(Image, data["raster_id"])
        serializer = DetectorImageSerializer(
            data={"detector": str(detector.pk), "image": str(image.pk)}, context={"request": request}
        )
        serializer.is_valid(raise_exception=True)
        serializer.save()
        return Response({"raster_id": str(image.pk)}, status=status.HTTP_201_CREATED)


def _annotation_type(value: str) -> str:
    if value not in ANNOTATION_TYPES:
        raise Http404
    return value


class AnnotationsUploadView(PublicView):
    @extend_schema(request=None, responses={201: public.GeoJSONUploadTicketSerializer})
    def post(self, request, detector_id, raster_id, annotation_type):
        _annotation_type(annotation_type)
        detector, image = self.get_one(Detector, detector_id), self.get_one(Image, raster_id)
        if not DetectorImage.objects.filter(detector=detector, image=image).exists():
            raise exceptions.ValidationError({"detail": "Add the raster to the detector first (training_rasters/)."})
        return Response(self.upload_ticket(f"annotations-{annotation_type}"), status=status.HTTP_201_CREATED)


class AnnotationsCommitView(PublicView):
    @extend_schema(request=public.AnnotationsCommitSerializer, responses={201: public.OperationReferenceSerializer})
    def post(self, request, detector_id, raster_id, annotation_type, upload_id):
        """Replace one type of annotation on (detector, raster) with the uploaded GeoJSON's polygons."""
        _annotation_type(annotation_type)
        detector, image = self.get_one(Detector, detector_id), self.get_one(Image, raster_id)
        data = self.body(public.AnnotationsCommitSerializer)
        metadata = {"detector_id": str(detector.pk), "raster_id": str(image.pk)}
        if data.get("class_id") and annotation_type != "outline":
            raise exceptions.ValidationError({"class_id": "Only outlines have a class."})
        try:
            polygons = polygons_from_geojson(self.uploaded(f"annotations-{annotation_type}", upload_id))
            check_inside(image, polygons)
            detector_class = class_for(detector, data.get("class_id")) if annotation_type == "outline" else None
        except BadGeoJSON as exc:
            return self.finished(Operation.Kind.ANNOTATIONS, errors=[str(exc)], metadata=metadata)
        count = replace_annotations(detector, image, annotation_type, polygons, detector_class, request.user)
        return self.finished(Operation.Kind.ANNOTATIONS, results={"count": count}, metadata=metadata)


class TrainView(PublicView):
    @extend_schema(request=None, responses={201: public.OperationReferenceSerializer})
    def post(self, request, detector_id):
        detector = self.get_one(Detector, detector_id)
        try:
            run = start_training(detector, request.user)
        except NotTrainable as exc:
            return Response({"detail": str(exc), "errors": exc.problems}, status=status.HTTP_400_BAD_REQUEST)
        return self.operation(
            kind=Operation.Kind.TRAINING, training_run=run, metadata={"detector_id": str(detector.pk)}
        )


class RunDetectorView(PublicView):
    @extend_schema(request=public.RunDetectorSerializer, responses={201: public.OperationReferenceSerializer})
    def post(self, request, detector_id):
        """Detect on one raster, inside its detection areas (the whole raster when it has none)."""
        detector = self.get_one(Detector, detector_id)
        data = self.body(public.RunDetectorSerializer)
        image = self.get_one(Image, data["raster_id"])
        if data.get("secondary_raster_id"):
            raise exceptions.ValidationError(
                {"secondary_raster_id": "Change detection is not available on this server."}
            )
        try:
            with transaction.atomic():
                # The raster's detection areas (public API) become this detector's on that raster.
                Area.objects.filter(detector=detector, image=image, kind=Area.Kind.DETECTION).delete()
                Area.objects.bulk_create(
                    Area(detector=detector, image=image, kind=Area.Kind.DETECTION, geometry=a.geometry)
                    for a in RasterDetectionArea.objects.filter(image=image)
                )
                run = start_detection(detector, [image], request.user)
        except CannotDetect as exc:
            raise exceptions.ValidationError({"detail": str(exc)}) from None
        return self.operation(
            kind=Operation.Kind.DETECTION,
            detection_run=run,
            metadata={"detector_id": str(detector.pk), "raster_id": str(image.pk)},
        )


# --- folders, grants -----------------------------------------------------------------------------------------------


class FolderListView(PublicView):
    @extend_schema(parameters=[OpenApiParameter("page_number", int)], responses={200: public.FolderPageSerializer})
    def get(self, request):
        return self.paginate(self.scoped(Project).order_by("-created_at", "pk"), folder_json)

    @extend_schema(request=public.FolderCreateSerializer, responses={201: public.FolderSerializer})
    def post(self, request):
        data = self.body(public.FolderCreateSerializer)
        folder = Project.objects.create(organization=self.organization, name=data["name"], created_by=request.user)
        return Response(folder_json(folder), status=status.HTTP_201_CREATED)


def folder_json(folder: Project) -> dict:
    return {"id": str(folder.pk), "name": folder.name, "created_at": folder.created_at.isoformat()}


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
        return self.paginate(detectors, detector_json)


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
        return Response(self._grants())

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
        return Response(self._grants(), status=status.HTTP_201_CREATED)


@csrf_exempt  # an unknown path answers the API's JSON 404 for every method, never Django's CSRF page
def unknown_path(request, *args, **kwargs) -> JsonResponse:
    hint = "" if request.path.endswith("/") else " Public API paths end with a slash."
    return JsonResponse({"detail": f"No such endpoint: {request.path}.{hint}"}, status=404)
