from django.contrib.gis import admin

from detectors.models import Annotation, Area, DetectionRun, Detector, DetectorClass, DetectorImage, TrainingRun
from imagery.purge import DeleteWithBlobsAdminMixin


class DetectorClassInline(admin.TabularInline):
    model = DetectorClass
    extra = 0


class DetectorImageInline(admin.TabularInline):
    model = DetectorImage
    extra = 0
    raw_id_fields = ["image"]


@admin.register(Detector)
class DetectorAdmin(DeleteWithBlobsAdminMixin, admin.ModelAdmin):
    list_display = ["name", "organization", "detection_type", "backbone", "tile_size", "created_at"]
    list_filter = ["organization", "detection_type"]
    search_fields = ["name"]
    inlines = [DetectorClassInline, DetectorImageInline]
    raw_id_fields = ["active_training_run"]


@admin.register(Area)
class AreaAdmin(admin.GISModelAdmin):
    list_display = ["id", "detector", "image", "kind", "created_at"]
    list_filter = ["kind"]
    raw_id_fields = ["detector", "image"]


@admin.register(Annotation)
class AnnotationAdmin(admin.GISModelAdmin):
    list_display = ["id", "detector", "image", "detector_class", "created_at"]
    raw_id_fields = ["detector", "image", "detector_class"]


@admin.register(TrainingRun)
class TrainingRunAdmin(DeleteWithBlobsAdminMixin, admin.ModelAdmin):
    list_display = ["detector", "version", "status", "created_at", "finished_at"]
    list_filter = ["status"]


@admin.register(DetectionRun)
class DetectionRunAdmin(DeleteWithBlobsAdminMixin, admin.ModelAdmin):
    list_display = ["id", "detector", "status", "cells_done", "cells_total", "objects_count", "created_at"]
    list_filter = ["status"]
