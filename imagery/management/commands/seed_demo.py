"""Create (once) the demo account, organization, project, sample image and detector, and print how to sign in."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand
from django.db import transaction

from detectors.models import Detector, DetectorClass, DetectorImage
from imagery.ingest import enqueue_ingest
from imagery.models import Image
from imagery.sample import write_sample_geotiff
from imagery.storage import get_blob_store, image_original_key
from picterra.organizations.models import Membership, Organization, Project

DEMO_USERNAME = "demo"
DEMO_PROJECT = "Demo project"


class Command(BaseCommand):
    help = "Create the demo account and project (idempotent) and print the credentials."

    def add_arguments(self, parser):
        parser.add_argument("--password", default=os.environ.get("DEMO_PASSWORD", "demo-password"))
        parser.add_argument("--no-image", action="store_true", help="Skip generating and ingesting the sample image.")

    @transaction.atomic
    def handle(self, *args, password: str, no_image: bool, **options):
        user, created = get_user_model().objects.get_or_create(
            username=DEMO_USERNAME, defaults={"is_staff": True, "is_superuser": True, "email": "demo@example.org"}
        )
        if created:
            user.set_password(password)
            user.save()
        organization = Organization.objects.filter(memberships__user=user, name="Demo organization").first()
        if organization is None:
            organization = Organization.objects.create(name="Demo organization")
            Membership.objects.create(organization=organization, user=user, role=Membership.Role.OWNER)
        project, _ = Project.objects.get_or_create(
            organization=organization,
            name=DEMO_PROJECT,
            defaults={"description": "A generated orthophoto with trees to try the platform on.", "created_by": user},
        )
        detector, detector_created = Detector.objects.get_or_create(
            organization=organization, project=project, name="Trees", defaults={"created_by": user}
        )
        if detector_created:
            DetectorClass.objects.create(detector=detector, name="tree", color="#2E7D32")
        if not no_image and not project.images.exists():
            image = self._sample_image(project, user)
            DetectorImage.objects.get_or_create(detector=detector, image=image)
        shown = password if user.check_password(password) else "(changed since it was created)"
        self.stdout.write(f"Demo account: username '{DEMO_USERNAME}', password '{shown}'")

    def _sample_image(self, project: Project, user) -> Image:
        image = Image(
            project=project,
            name="Sample orthophoto (generated)",
            created_by=user,
            original_filename="sample.tif",
            status=Image.Status.UPLOADED,
        )
        image.original_key = image_original_key(image.pk, "sample.tif")
        with tempfile.TemporaryDirectory() as tmp:
            sample = write_sample_geotiff(Path(tmp) / "sample.tif", size=2048, trees=120)
            image.file_size = sample.path.stat().st_size
            get_blob_store().put_file(image.original_key, sample.path)
        image.save()
        enqueue_ingest(image)
        return image
