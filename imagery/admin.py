from django.contrib.gis import admin

from imagery.models import Image
from imagery.purge import DeleteWithBlobsAdminMixin


@admin.register(Image)
class ImageAdmin(DeleteWithBlobsAdminMixin, admin.GISModelAdmin):
    list_display = ["name", "project", "status", "width", "height", "band_count", "created_at"]
    list_filter = ["status", "project__organization"]
    search_fields = ["name"]
    readonly_fields = ["original_key", "cog_key", "file_size", "width", "height", "band_count", "dtype", "crs", "gsd"]
