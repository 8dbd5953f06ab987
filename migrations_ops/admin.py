from django.contrib import admin

from migrations_ops.models import MigrationRun


@admin.register(MigrationRun)
class MigrationRunAdmin(admin.ModelAdmin):
    """Read-only: the record of what safe_migrate did is evidence, not something to edit."""

    list_display = ["started_at", "status", "exit_code", "backup", "rollback", "operator", "host"]
    list_filter = ["status", "rollback"]
    search_fields = ["backup", "error", "operator", "host"]
    readonly_fields = [f.name for f in MigrationRun._meta.fields]

    def has_add_permission(self, request):
        return False

    def has_change_permission(self, request, obj=None):
        return False

    def has_delete_permission(self, request, obj=None):
        return False
