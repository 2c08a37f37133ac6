from __future__ import annotations

from django.contrib.gis.geos import Polygon
from django.db.models import Prefetch, Q
from django.http import Http404, HttpResponse
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter, extend_schema
from rest_framework import mixins, status, viewsets
from rest_framework.decorators import action
from rest_framework.response import Response

from detectors.api.serializers import (
    AnnotationSerializer,
    AreaSerializer,
    DetectionRunSerializer,
    DetectorClassSerializer,
    DetectorImageSerializer,
    DetectorSerializer,
    DetectRequestSerializer,
    TrainingRunSerializer,
    images_of_other_organizations,
    with_training_summary,
)
from detectors.detection import CannotDetect, cancel_detection, retry_failed_cells, start_detection
from detectors.exports import detection_counts, download_filename
from detectors.models import (
    Annotation,
    Area,
    DetectionCell,
    DetectionRun,
    Detector,
    DetectorClass,
    DetectorImage,
    TrainingRun,
)
from detectors.results import feature_collection
from detectors.training import NotTrainable, cancel_training, start_training
from detectors.training_inputs import gather_training_inputs, training_problems, training_stats
from detectors.vector_tiles import detection_tile, valid_tile
from imagery.models import Image
from imagery.purge import delete_with_blobs
from imagery.storage import get_blob_store
from picterra.api.errors import bad_request
from picterra.api.viewsets import (
    ConditionalWriteMixin,
    OrganizationScopedMixin,
    OrganizationScopedViewSet,
    ReadOnlyOrganizationScopedViewSet,
)


def training_image_of(detector: Detector) -> Q:
    """Images a training of the detector reads: attached to it, or under one of its areas or outlines."""
    return (
        Q(detector_images__detector=detector)
        | Q(second_date_of__detector=detector)
        | Q(areas__detector=detector)
        | Q(annotations__detector=detector)
    )


class DetectorViewSet(OrganizationScopedViewSet):
    queryset = Detector.objects.all()
    serializer_class = DetectorSerializer
    filterset_fields = ["organization", "project", "kind", "detection_type"]
    search_fields = ["name"]
    ordering_fields = ["name", "created_at"]

    def get_queryset(self):
        return with_training_summary(
            super()
            .get_queryset()
            .prefetch_related(Prefetch("classes", queryset=DetectorClass.objects.order_by("position", "name")))
        )

    def perform_create(self, serializer):
        serializer.save(created_by=self.request.user)

    def perform_destroy(self, instance):
        delete_with_blobs(instance)  # its runs' weights and exports are purged by a worker once this commits

    @extend_schema(request=None, responses={201: TrainingRunSerializer})
    @action(detail=True, methods=["post"])
    def train(self, request, pk=None):
        """Train a new version of the detector from its training areas and outlines."""
        detector = self.get_object()
        foreign = images_of_other_organizations(detector, Image.objects.filter(training_image_of(detector)))
        if foreign:
            return bad_request(
                f"The detector is attached to images of another organization ({', '.join(foreign)}): "
                "remove them from the detector before training it."
            )
        try:
            run = start_training(detector, request.user)
        except NotTrainable as exc:
            return Response({"detail": str(exc), "problems": exc.problems}, status=status.HTTP_400_BAD_REQUEST)
        return Response(TrainingRunSerializer(run).data, status=status.HTTP_201_CREATED)

    @extend_schema(responses={200: OpenApiTypes.OBJECT})
    @action(detail=True, methods=["get"], url_path="training-check")
    def training_check(self, request, pk=None):
        """What Train would answer now, without starting anything: its plain-words `problems` (empty: training
        can start) and the public API's training statistics (how many outlines training would learn from). The
        workspace asks again as the drawing changes, so an error goes once its cause has."""
        detector = self.get_object()
        inputs = gather_training_inputs(detector)
        return Response({"problems": training_problems(detector, inputs), "stats": training_stats(detector, inputs)})

    @extend_schema(request=DetectRequestSerializer, responses={201: DetectionRunSerializer})
    @action(detail=True, methods=["post"])
    def detect(self, request, pk=None):
        """Run a trained version of the detector over whole images, cell by cell."""
        detector = self.get_object()
        body = DetectRequestSerializer(
            data=request.data, context={**self.get_serializer_context(), "detector": detector}
        )
        body.is_valid(raise_exception=True)
        try:
            run = start_detection(
                detector,
                body.validated_data["images"],
                request.user,
                body.validated_data.get("training_run"),
                second_image=body.validated_data.get("second_image"),
            )
        except CannotDetect as exc:
            return bad_request(str(exc))
        return Response(DetectionRunSerializer(run).data, status=status.HTTP_201_CREATED)


class DetectorClassViewSet(OrganizationScopedViewSet):
    queryset = DetectorClass.objects.all()
    serializer_class = DetectorClassSerializer
    filterset_fields = ["detector"]


class DetectorImageViewSet(
    OrganizationScopedMixin,
    mixins.ListModelMixin,
    mixins.RetrieveModelMixin,
    mixins.CreateModelMixin,
    mixins.UpdateModelMixin,
    mixins.DestroyModelMixin,
    viewsets.GenericViewSet,
):
    """Which images a detector is trained on; attach with POST, detach with DELETE; a change detector's image
    gets its second date with the POST or a later PATCH (`second_image`)."""

    queryset = DetectorImage.objects.all()
    serializer_class = DetectorImageSerializer
    filterset_fields = ["detector", "image"]
    http_method_names = ["get", "post", "patch", "delete", "head", "options"]


class AreaViewSet(ConditionalWriteMixin, OrganizationScopedViewSet):
    queryset = Area.objects.all()
    serializer_class = AreaSerializer
    filterset_fields = ["detector", "image", "kind"]

    def perform_create(self, serializer):
        serializer.save(created_by=self.request.user)


class AnnotationViewSet(ConditionalWriteMixin, OrganizationScopedViewSet):
    queryset = Annotation.objects.all()
    serializer_class = AnnotationSerializer
    filterset_fields = ["detector", "image", "detector_class"]

    def perform_create(self, serializer):
        serializer.save(created_by=self.request.user)


class TrainingRunViewSet(ReadOnlyOrganizationScopedViewSet):
    """Versions of a detector and their scores (`POST detectors/<id>/train/` creates them)."""

    queryset = TrainingRun.objects.all()
    serializer_class = TrainingRunSerializer
    filterset_fields = ["detector", "status"]
    ordering_fields = ["created_at", "version"]

    @extend_schema(request=None, responses={200: TrainingRunSerializer})
    @action(detail=True, methods=["post"])
    def cancel(self, request, pk=None):
        run = self.get_object()
        if not cancel_training(run):
            return bad_request("This training has already finished.")
        run.refresh_from_db()
        return Response(TrainingRunSerializer(run).data)

    @extend_schema(responses={200: OpenApiTypes.OBJECT})
    @action(detail=True, methods=["get"])
    def predictions(self, request, pk=None):
        """What the trained version found in the testing areas, as a GeoJSON FeatureCollection."""
        run = self.get_object()
        objects = run.predicted_objects.select_related("detector_class")
        return Response(feature_collection(objects))

    @extend_schema(responses={200: OpenApiTypes.OBJECT})
    @action(detail=True, methods=["get"])
    def review(self, request, pk=None):
        """Inside the accuracy areas: each prediction as `match` or `false_detection`, each missed object as
        `miss`; inside the training areas, what the detector finds that no outline covers as `unoutlined`
        (objects the user may have forgotten to outline). GeoJSON, lon/lat, properties `kind`, `class`,
        `image`: to show where the detector erred and where the training data may be incomplete."""
        run = self.get_object()
        return Response(run.review or {"type": "FeatureCollection", "features": []})

    @extend_schema(responses={200: OpenApiTypes.OBJECT})
    @action(detail=True, methods=["get"])
    def suggestions(self, request, pk=None):
        """Where to label next: up to five squares outside the training and accuracy areas where this version
        is least sure, best first. GeoJSON, lon/lat, properties `rank` (1 first), `reason` (plain words),
        `score` (0-1, within the run) and `image`. Empty until the training succeeds, or when they could not
        be computed."""
        run = self.get_object()
        return Response(run.suggestions or {"type": "FeatureCollection", "features": []})


class DetectionRunViewSet(ReadOnlyOrganizationScopedViewSet):
    """Detections over whole images (read-only; Detect creates them)."""

    queryset = DetectionRun.objects.all()
    serializer_class = DetectionRunSerializer
    filterset_fields = ["detector", "status"]

    def get_queryset(self):
        failed_cells = Prefetch(
            "cells",
            queryset=DetectionCell.objects.filter(status=DetectionCell.Status.FAILED).order_by("image_id", "key"),
            to_attr="failed_cell_rows",
        )
        return super().get_queryset().prefetch_related("images", failed_cells)

    @extend_schema(request=None, responses={200: DetectionRunSerializer})
    @action(detail=True, methods=["post"])
    def cancel(self, request, pk=None):
        run = self.get_object()
        if not cancel_detection(run):
            return bad_request("This detection has already finished.")
        run.refresh_from_db()
        return Response(DetectionRunSerializer(run).data)

    @extend_schema(request=None, responses={200: DetectionRunSerializer})
    @action(detail=True, methods=["post"], url_path="retry-failed-cells")
    def retry_failed_cells(self, request, pk=None):
        run = self.get_object()
        foreign = images_of_other_organizations(
            run.detector, Image.objects.filter(Q(detection_runs=run) | Q(pk=run.second_image_id))
        )
        if foreign:
            return bad_request(
                f"This detection covers images of another organization than its detector ({', '.join(foreign)}): "
                "it cannot be retried."
            )
        if not retry_failed_cells(run):
            return bad_request("This detection has no failed cells to retry.")
        run.refresh_from_db()
        return Response(DetectionRunSerializer(run).data)

    @extend_schema(
        parameters=[OpenApiParameter("bbox", str, description="minLon,minLat,maxLon,maxLat")],
        responses={200: OpenApiTypes.OBJECT},
    )
    @action(detail=True, methods=["get"])
    def objects(self, request, pk=None):
        """Detected objects as GeoJSON, optionally within a bounding box (at most 10,000 per request)."""
        run = self.get_object()
        objects = run.detected_objects.select_related("detector_class")
        if "bbox" in request.query_params:
            try:
                bbox = [float(v) for v in request.query_params["bbox"].split(",")]
                objects = objects.filter(geometry__intersects=Polygon.from_bbox(bbox))
            except (ValueError, TypeError):
                return bad_request("bbox must be minLon,minLat,maxLon,maxLat.")
        return Response(feature_collection(objects[:10_000]))

    @extend_schema(responses={200: OpenApiTypes.OBJECT})
    @action(detail=True, methods=["get"])
    def counts(self, request, pk=None):
        """Objects per image, per detection area (the whole image when it has none) and per class."""
        return Response({"results": detection_counts(self.get_object())})

    @extend_schema(
        parameters=[OpenApiParameter(name, int, OpenApiParameter.PATH) for name in ("z", "x", "y")],
        responses={(200, "application/vnd.mapbox-vector-tile"): OpenApiTypes.BINARY},
    )
    @action(detail=True, methods=["get"], url_path=r"tiles/(?P<z>[0-9]+)/(?P<x>[0-9]+)/(?P<y>[0-9]+)\.pbf")
    def tiles(self, request, pk=None, z=None, x=None, y=None):
        """Mapbox Vector Tile (layer `objects`) of the run's objects: polygons, or clustered points with a
        count `n` where objects are too small to draw at that zoom."""
        run = self.get_object()
        z, x, y = int(z), int(x), int(y)
        if not valid_tile(z, x, y):
            raise Http404("No such tile.")
        response = HttpResponse(detection_tile(run, z, x, y), content_type="application/vnd.mapbox-vector-tile")
        response["Cache-Control"] = "private, max-age=3600" if run.is_finished else "private, no-cache"
        return response

    @extend_schema(responses={200: OpenApiTypes.OBJECT})
    @action(detail=True, methods=["get"])
    def downloads(self, request, pk=None):
        """Signed, expiring links to the exports: GeoJSON, GeoPackage and a CSV of counts."""
        run = self.get_object()
        store = get_blob_store()
        return Response(
            {
                fmt: store.signed_url(key, "GET", 3600, download_name=download_filename(run, fmt))
                for fmt, key in run.result_keys.items()
            }
        )
