"""Views of the public API v2, one module per resource: thin translations onto the platform's domain functions.

Every view authenticates with `X-Api-Key` only and sees the objects of the key's organization only;
others' ids answer 404. Long work returns an operation the client polls (`operations/<id>/`). Answers are
rendered by the response serializers of `picterra.public_api.serializers`, the classes the schema documents.
"""

from picterra.public_api.views.base import PublicPagination, PublicView, unknown_path
from picterra.public_api.views.detectors import (
    AnnotationsCommitView,
    AnnotationsUploadView,
    DatasetRecommendationView,
    DetectorDetailView,
    DetectorListView,
    RunDetectorView,
    TrainingRastersView,
    TrainView,
)
from picterra.public_api.views.folders import FolderDetectorsView, FolderListView, GrantsView
from picterra.public_api.views.operations import OperationView
from picterra.public_api.views.rasters import (
    DetectionAreasCommitView,
    DetectionAreasUploadView,
    DetectionAreasView,
    RasterCommitView,
    RasterDetailView,
    RasterDownloadView,
    RasterImportView,
    RasterListView,
    RasterMarkersView,
    RasterUploadView,
)
from picterra.public_api.views.users import UserMeView
from picterra.public_api.views.vector_layers import (
    RasterVectorLayersView,
    VectorLayerCommitView,
    VectorLayerDetailView,
    VectorLayerDownloadView,
    VectorLayerUploadView,
)

__all__ = [
    "AnnotationsCommitView",
    "AnnotationsUploadView",
    "DatasetRecommendationView",
    "DetectionAreasCommitView",
    "DetectionAreasUploadView",
    "DetectionAreasView",
    "DetectorDetailView",
    "DetectorListView",
    "FolderDetectorsView",
    "FolderListView",
    "GrantsView",
    "OperationView",
    "PublicPagination",
    "PublicView",
    "RasterCommitView",
    "RasterDetailView",
    "RasterDownloadView",
    "RasterImportView",
    "RasterListView",
    "RasterMarkersView",
    "RasterUploadView",
    "RasterVectorLayersView",
    "RunDetectorView",
    "TrainView",
    "TrainingRastersView",
    "UserMeView",
    "VectorLayerCommitView",
    "VectorLayerDetailView",
    "VectorLayerDownloadView",
    "VectorLayerUploadView",
    "unknown_path",
]
