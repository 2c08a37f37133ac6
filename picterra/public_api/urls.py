"""Paths of the public API v2, exactly as the official client builds them (all end with a slash)."""

from django.urls import path, re_path

from picterra.public_api import views

urlpatterns = [
    path("users/me/", views.UserMeView.as_view(), name="users-me"),
    path("operations/<str:operation_id>/", views.OperationView.as_view(), name="operation"),
    path("rasters/", views.RasterListView.as_view(), name="rasters"),
    path("rasters/upload/file/", views.RasterUploadView.as_view(), name="raster-upload"),
    path("rasters/import/", views.RasterImportView.as_view(), name="raster-import"),
    path("rasters/import/<str:upload_id>/commit/", views.RasterImportView.as_view(), name="raster-import-commit"),
    path("rasters/<str:raster_id>/", views.RasterDetailView.as_view(), name="raster"),
    path("rasters/<str:raster_id>/commit/", views.RasterCommitView.as_view(), name="raster-commit"),
    path("rasters/<str:raster_id>/download/", views.RasterDownloadView.as_view(), name="raster-download"),
    path("rasters/<str:raster_id>/detection_areas/", views.DetectionAreasView.as_view(), name="detection-areas"),
    path(
        "rasters/<str:raster_id>/detection_areas/upload/file/",
        views.DetectionAreasUploadView.as_view(),
        name="detection-areas-upload",
    ),
    path(
        "rasters/<str:raster_id>/detection_areas/upload/<str:upload_id>/commit/",
        views.DetectionAreasCommitView.as_view(),
        name="detection-areas-commit",
    ),
    path("rasters/<str:raster_id>/markers/", views.RasterMarkersView.as_view(), name="raster-markers"),
    path("rasters/<str:raster_id>/vector_layers/", views.RasterVectorLayersView.as_view(), name="raster-vector-layers"),
    path("vector_layers/<str:raster_id>/upload/", views.VectorLayerUploadView.as_view(), name="vector-layer-upload"),
    path(
        "vector_layers/<str:raster_id>/upload/<str:upload_id>/commit/",
        views.VectorLayerCommitView.as_view(),
        name="vector-layer-commit",
    ),
    path("vector_layers/<str:vector_layer_id>/", views.VectorLayerDetailView.as_view(), name="vector-layer"),
    path(
        "vector_layers/<str:vector_layer_id>/download/",
        views.VectorLayerDownloadView.as_view(),
        name="vector-layer-download",
    ),
    path("detectors/", views.DetectorListView.as_view(), name="detectors"),
    path("detectors/<str:detector_id>/", views.DetectorDetailView.as_view(), name="detector"),
    path("detectors/<str:detector_id>/train/", views.TrainView.as_view(), name="detector-train"),
    path("detectors/<str:detector_id>/run/", views.RunDetectorView.as_view(), name="detector-run"),
    path("detectors/<str:detector_id>/training_rasters/", views.TrainingRastersView.as_view(), name="training-rasters"),
    path(
        "detectors/<str:detector_id>/training_rasters/<str:raster_id>/markers/",
        views.RasterMarkersView.as_view(),
        name="detector-raster-markers",
    ),
    path(
        "detectors/<str:detector_id>/training_rasters/<str:raster_id>/<str:annotation_type>/upload/bulk/",
        views.AnnotationsUploadView.as_view(),
        name="annotations-upload",
    ),
    path(
        "detectors/<str:detector_id>/training_rasters/<str:raster_id>/<str:annotation_type>/upload/bulk/"
        "<str:upload_id>/commit/",
        views.AnnotationsCommitView.as_view(),
        name="annotations-commit",
    ),
    path("folders/", views.FolderListView.as_view(), name="folders"),
    path("folders/<str:folder_id>/detectors/", views.FolderDetectorsView.as_view(), name="folder-detectors"),
    path("authorization/grants/<str:kind>/<str:resource_id>/", views.GrantsView.as_view(), name="authorization-grants"),
    # Anything else is a JSON 404, never a redirect (a POST redirected to add a slash would become a GET).
    re_path(r"^.*$", views.unknown_path, name="unknown"),
]
