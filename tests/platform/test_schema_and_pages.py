from __future__ import annotations

from django.urls import reverse


def test_openapi_schema_describes_every_resource(client_for, personas):
    response = client_for(personas.member).get("/api/schema/", HTTP_ACCEPT="application/vnd.oai.openapi+json")
    assert response.status_code == 200
    schema = response.json()
    assert schema["openapi"].startswith("3.")
    paths = set(schema["paths"])
    for resource in (
        "organizations",
        "memberships",
        "projects",
        "images",
        "detectors",
        "detector-classes",
        "detector-images",
        "areas",
        "annotations",
        "training-runs",
        "detection-runs",
        "api-keys",
    ):
        assert f"/api/v1/{resource}/" in paths
        assert f"/api/v1/{resource}/{{id}}/" in paths
    assert "ApiKeyAuth" in schema["components"]["securitySchemes"]
    geometry = schema["components"]["schemas"]["Area"]["properties"]["geometry"]
    assert geometry["properties"]["type"]["enum"] == ["Polygon"]


def test_docs_page_is_self_hosted_and_health_check_answers(client, db):
    page = client.get("/api/docs/")
    assert page.status_code == 200
    assert "cdn" not in page.content.decode().lower()
    assert "/static/drf_spectacular_sidecar/swagger-ui-dist/" in page.content.decode()
    assert client.get("/healthz").json() == {"status": "ok"}


def test_home_asks_to_sign_in_then_lists_the_users_projects(client, personas, project):
    assert client.get("/").status_code == 302
    client.force_login(personas.member)
    page = client.get("/").content.decode()
    assert "Vineyards" in page
    client.force_login(personas.outsider)
    assert "Vineyards" not in client.get("/").content.decode()


def test_errors_are_json_with_a_detail(client_for, personas):
    response = client_for(personas.member).get(reverse("v1:project-detail", args=["not-a-uuid"]))
    assert response.status_code == 404
    assert "detail" in response.json()
