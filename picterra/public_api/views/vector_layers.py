"""Vector layers: a raster's detection results per class and uploaded GeoJSON; list, edit, delete, download."""

from __future__ import annotations

import uuid

from drf_spectacular.utils import OpenApiParameter, extend_schema
from rest_framework import status
from rest_framework.response import Response

from detectors.models import DetectedObject
from imagery.models import Image
from imagery.purge import delete_with_blobs
from picterra.public_api import serializers as public
from picterra.public_api.cleanup import record_download
from picterra.public_api.models import Operation, TemporaryFile, VectorLayer
from picterra.public_api.translate import (
    DOWNLOAD_URL_TTL_S,
    BadGeoJSON,
    BlobRef,
    finished_operation,
    polygons_feature_collection,
    polygons_from_geojson,
)
from picterra.public_api.views.base import PublicView, put_json, uuid_or_404


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
            layers = layers.filter(detection_run__detector_id=uuid_or_404(request.query_params["detector"]))
        return self.paginate(layers, public.VectorLayerPageSerializer)


class VectorLayerUploadView(PublicView):
    @extend_schema(request=None, responses={201: public.GeoJSONUploadTicketSerializer})
    def post(self, request, raster_id):
        self.get_one(Image, raster_id)
        return self.upload_ticket("vector_layer")


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
        put_json(key, polygons_feature_collection(polygons))
        VectorLayer.objects.filter(pk=layer.pk).update(blob_key=key)
        return self.finished(
            Operation.Kind.VECTOR_LAYER_UPLOAD, results={"vector_layer_id": str(layer.pk)}, metadata=metadata
        )


class VectorLayerDetailView(PublicView):
    @extend_schema(responses={200: public.VectorLayerSerializer})
    def get(self, request, vector_layer_id):
        return Response(public.VectorLayerSerializer(self.get_one(VectorLayer, vector_layer_id)).data)

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
            put_json(key, collection)
        operation = finished_operation(
            self.organization,
            request.user,
            Operation.Kind.VECTOR_LAYER_DOWNLOAD,
            results={"download_url": BlobRef(key) if key else None, "expiration": DOWNLOAD_URL_TTL_S},
            metadata={"raster_id": str(layer.image_id), "vector_layer_id": str(layer.pk)},
        )
        if temporary is not None:
            TemporaryFile.objects.filter(pk=temporary.pk).update(operation=operation)
        return self.created(public.OperationReferenceSerializer, operation)
