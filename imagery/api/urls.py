from rest_framework.routers import SimpleRouter

from imagery.api import views

router = SimpleRouter()
router.register("images", views.ImageViewSet, basename="image")
urlpatterns = router.urls
