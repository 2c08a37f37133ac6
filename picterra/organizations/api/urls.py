from rest_framework.routers import SimpleRouter

from picterra.organizations.api import views

router = SimpleRouter()
router.register("organizations", views.OrganizationViewSet, basename="organization")
router.register("memberships", views.MembershipViewSet, basename="membership")
router.register("projects", views.ProjectViewSet, basename="project")
router.register("api-keys", views.ApiKeyViewSet, basename="apikey")
urlpatterns = router.urls
