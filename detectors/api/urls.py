from rest_framework.routers import SimpleRouter

from detectors.api import views

router = SimpleRouter()
router.register("detectors", views.DetectorViewSet, basename="detector")
router.register("detector-classes", views.DetectorClassViewSet, basename="detectorclass")
router.register("detector-images", views.DetectorImageViewSet, basename="detectorimage")
router.register("areas", views.AreaViewSet, basename="area")
router.register("annotations", views.AnnotationViewSet, basename="annotation")
router.register("training-runs", views.TrainingRunViewSet, basename="trainingrun")
router.register("detection-runs", views.DetectionRunViewSet, basename="detectionrun")
urlpatterns = router.urls
