"""Paths of the public API v2, exactly as the official client builds them (all end with a slash).

Ids are `<pid:...>` (`converters.PublicIdConverter`): the view receives them parsed; a malformed one still
reaches the view and answers its 404, as an unknown id does.
"""

from django.urls import path, re_path, register_converter

from picterra.public_api import views
from picterra.public_api.converters import PublicIdConverter

register_converter(PublicIdConverter, "pid")

urlpatterns = [
    path("users/me/", views.UserMeView.as_view(), name="users-me"),
    path("operations/<pid:operation_id>/", views.OperationView.as_view(), name="operation"),
    path("rasters/", views.RasterListView.as_view(), name="rasters"),
    path("rasters/upload/file/", views.RasterUploadView.as_view(), name="raster-upload"),
    path("rasters/import/", views.RasterImportView.as_view(), name="raster-import"),
    path("rasters/import/<pid:upload_id>/commit/", views.RasterImportView.as_view(), name="raster-import-commit"),
    path("rasters/<pid:raster_id>/", views.RasterDetailView.as_view(), name="raster"),
    path("rasters/<pid:raster_id>/commit/", views.RasterCommitView.as_view(), name="raster-commit"),
    path("rasters/<pid:raster_id>/download/", views.RasterDownloadView.as_view(), name="raster-download"),
    path("rasters/<pid:raster_id>/detection_areas/", views.DetectionAreasView.as_view(), name="detection-areas"),
    path(
        "rasters/<pid:raster_id>/detection_areas/upload/file/",
        views.DetectionAreasUploadView.as_view(),
        name="detection-areas-upload",
    ),
    path(
        "rasters/<pid:raster_id>/detection_areas/upload/<pid:upload_id>/commit/",
        views.DetectionAreasCommitView.as_view(),
        name="detection-areas-commit",
    ),
    path("rasters/<pid:raster_id>/markers/", views.RasterMarkersView.as_view(), name="raster-markers"),
    path("rasters/<pid:raster_id>/vector_layers/", views.RasterVectorLayersView.as_view(), name="raster-vector-layers"),
    path("vector_layers/<pid:raster_id>/upload/", views.VectorLayerUploadView.as_view(), name="vector-layer-upload"),
    path(
        "vector_layers/<pid:raster_id>/upload/<pid:upload_id>/commit/",
        views.VectorLayerCommitView.as_view(),
        name="vector-layer-commit",
    ),
    path("vector_layers/<pid:vector_layer_id>/", views.VectorLayerDetailView.as_view(), name="vector-layer"),
    path(
        "vector_layers/<pid:vector_layer_id>/download/",
        views.VectorLayerDownloadView.as_view(),
        name="vector-layer-download",
    ),
    path("detectors/", views.DetectorListView.as_view(), name="detectors"),
    path("detectors/<pid:detector_id>/", views.DetectorDetailView.as_view(), name="detector"),
    path("detectors/<pid:detector_id>/train/", views.TrainView.as_view(), name="detector-train"),
    path("detectors/<pid:detector_id>/run/", views.RunDetectorView.as_view(), name="detector-run"),
    path(
        "detectors/<pid:detector_id>/dataset_recommendation/",
        views.DatasetRecommendationView.as_view(),
        name="detector-dataset-recommendation",
    ),
    path("detectors/<pid:detector_id>/training_rasters/", views.TrainingRastersView.as_view(), name="training-rasters"),
    path(
        "detectors/<pid:detector_id>/training_rasters/<pid:raster_id>/markers/",
        views.RasterMarkersView.as_view(),
        name="detector-raster-markers",
    ),
    path(
        "detectors/<pid:detector_id>/training_rasters/<pid:raster_id>/<str:annotation_type>/upload/bulk/",
        views.AnnotationsUploadView.as_view(),
        name="annotations-upload",
    ),
    path(
        "detectors/<pid:detector_id>/training_rasters/<pid:raster_id>/<str:annotation_type>/upload/bulk/"
        "<pid:upload_id>/commit/",
        views.AnnotationsCommitView.as_view(),
        name="annotations-commit",
    ),
    path("folders/", views.FolderListView.as_view(), name="folders"),
    path("folders/<pid:folder_id>/detectors/", views.FolderDetectorsView.as_view(), name="folder-detectors"),
    path("authorization/grants/<str:kind>/<pid:resource_id>/", views.GrantsView.as_view(), name="authorization-grants"),
    # Anything else is a JSON 404, never a redirect (a POST redirected to add a slash would become a GET).
    re_path(r"^.*$", views.unknown_path, name="unknown"),
]
