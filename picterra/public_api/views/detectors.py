"""Detectors: create, edit, list; their training rasters and annotations; train and run (operations)."""

from __future__ import annotations

from django.db import transaction
from drf_spectacular.utils import OpenApiParameter, extend_schema
from rest_framework import exceptions, status
from rest_framework.response import Response

from detectors.api.serializers import DetectorImageSerializer, DetectorSerializer
from detectors.detection import CannotDetect, detection_version, start_detection
from detectors.models import Area, Detector, DetectorImage
from detectors.training import NotTrainable, start_training
from imagery.models import Image
from imagery.purge import delete_with_blobs
from picterra.public_api import serializers as public
from picterra.public_api.models import Operation, RasterDetectionArea
from picterra.public_api.translate import (
    BadGeoJSON,
    check_inside,
    class_for,
    dataset_recommendation,
    polygons_from_geojson,
    replace_annotations,
)
from picterra.public_api.views.base import PublicView, annotation_type_or_404, parse_bool


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
        return self.paginate(detectors, public.DetectorPageSerializer)

    @extend_schema(request=public.DetectorWriteSerializer, responses={201: public.PublicDetectorSerializer})
    def post(self, request):
        data = self.body(public.DetectorWriteSerializer)
        payload = {"organization": str(self.organization.pk), "name": data.get("name") or "API detector"}
        payload.update(data.get("configuration") or {})
        if data.get("kind"):
            payload["kind"] = data["kind"]
        serializer = DetectorSerializer(data=payload, context={"request": request})
        serializer.is_valid(raise_exception=True)
        detector = serializer.save(created_by=request.user)
        return self.created(public.PublicDetectorSerializer, detector)


class DetectorDetailView(PublicView):
    @extend_schema(responses={200: public.PublicDetectorSerializer}, operation_id="detectors_get")
    def get(self, request, detector_id):
        return Response(public.PublicDetectorSerializer(self.get_one(Detector, detector_id)).data)

    @extend_schema(request=public.DetectorWriteSerializer, responses={204: None})
    def put(self, request, detector_id):
        detector = self.get_one(Detector, detector_id)
        data = self.body(public.DetectorWriteSerializer)
        payload = dict(data.get("configuration") or {})
        if data.get("name"):
            payload["name"] = data["name"]
        if data.get("kind"):
            payload["kind"] = data["kind"]
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
        return self.paginate(rasters, public.RasterPageSerializer)

    @extend_schema(request=public.TrainingRasterSerializer, responses={201: public.TrainingRasterSerializer})
    def post(self, request, detector_id):
        detector = self.get_one(Detector, detector_id)
        data = self.body(public.TrainingRasterSerializer)
        image = self.get_one(Image, data["raster_id"])
        second = self.get_one(Image, data["secondary_raster_id"]) if data.get("secondary_raster_id") else None
        payload = {"detector": str(detector.pk), "image": str(image.pk)}
        if second is not None:  # a change detector's second date (not in the official client: a plain POST, also
            # for a raster attached before with add_raster_to_detector)
            payload["second_image"] = str(second.pk)
        attached = DetectorImage.objects.filter(detector=detector, image=image).first()
        if attached is not None and second is not None:  # already a training raster: its second date is set
            serializer = DetectorImageSerializer(attached, data=payload, partial=True, context={"request": request})
        else:
            serializer = DetectorImageSerializer(data=payload, context={"request": request})
        if not serializer.is_valid():
            errors = dict(serializer.errors)
            if "second_image" in errors:  # named as this API names it
                errors["secondary_raster_id"] = errors.pop("second_image")
            raise exceptions.ValidationError(errors)
        serializer.save()
        return self.created(
            public.TrainingRasterSerializer,
            {"raster_id": image.pk, "secondary_raster_id": second.pk if second else None},
        )


class AnnotationsUploadView(PublicView):
    @extend_schema(request=None, responses={201: public.GeoJSONUploadTicketSerializer})
    def post(self, request, detector_id, raster_id, annotation_type):
        annotation_type_or_404(annotation_type)
        detector, image = self.get_one(Detector, detector_id), self.get_one(Image, raster_id)
        if not DetectorImage.objects.filter(detector=detector, image=image).exists():
            raise exceptions.ValidationError({"detail": "Add the raster to the detector first (training_rasters/)."})
        return self.upload_ticket(f"annotations-{annotation_type}")


class AnnotationsCommitView(PublicView):
    @extend_schema(request=public.AnnotationsCommitSerializer, responses={201: public.OperationReferenceSerializer})
    def post(self, request, detector_id, raster_id, annotation_type, upload_id):
        """Replace one type of annotation on (detector, raster) with the uploaded GeoJSON's polygons."""
        annotation_type_or_404(annotation_type)
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


class DatasetRecommendationView(PublicView):
    @extend_schema(request=None, responses={201: public.OperationReferenceSerializer})
    def post(self, request, detector_id):
        """Where to add training or accuracy areas next: the squares where the trained version detection uses
        is least sure (computed when it trained), as a finished operation whose results are a GeoJSON
        FeatureCollection (properties `rank`, `reason`, `score`, `raster_id`)."""
        detector = self.get_one(Detector, detector_id)
        try:
            run = detection_version(detector)
        except CannotDetect as exc:
            raise exceptions.ValidationError({"detail": str(exc)}) from None
        return self.finished(
            Operation.Kind.DATASET_RECOMMENDATION,
            results=dataset_recommendation(run),
            metadata={"detector_id": str(detector.pk), "version": run.version},
        )


class RunDetectorView(PublicView):
    @extend_schema(request=public.RunDetectorSerializer, responses={201: public.OperationReferenceSerializer})
    def post(self, request, detector_id):
        """Detect on one raster, inside its detection areas (the whole raster when it has none)."""
        detector = self.get_one(Detector, detector_id)
        data = self.body(public.RunDetectorSerializer)
        image = self.get_one(Image, data["raster_id"])
        second = self.get_one(Image, data["secondary_raster_id"]) if data.get("secondary_raster_id") else None
        try:
            with transaction.atomic():
                # The raster's detection areas (public API) become this detector's on that raster.
                Area.objects.filter(detector=detector, image=image, kind=Area.Kind.DETECTION).delete()
                Area.objects.bulk_create(
                    Area(detector=detector, image=image, kind=Area.Kind.DETECTION, geometry=a.geometry)
                    for a in RasterDetectionArea.objects.filter(image=image)
                )
                run = start_detection(detector, [image], request.user, second_image=second)
        except CannotDetect as exc:
            raise exceptions.ValidationError({"detail": str(exc)}) from None
        return self.operation(
            kind=Operation.Kind.DETECTION,
            detection_run=run,
            metadata={
                "detector_id": str(detector.pk),
                "raster_id": str(image.pk),
                **({"secondary_raster_id": str(second.pk)} if second else {}),
            },
        )
