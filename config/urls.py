from django.contrib import admin
from django.urls import include, path

from . import views

admin.site.site_header = "Credits Admin Center — support"
admin.site.site_title = "Credits support"

urlpatterns = [
    path("healthz", views.healthz, name="healthz"),
    path("admin/", admin.site.urls),
    path("credits/", include("credits.urls")),
    path("billing/", include("billing.urls")),
    path("catalog/", include("catalog.urls")),
    path("training/", include("training.urls")),
    path("", include("accounts.urls")),
]
