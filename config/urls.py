from django.contrib import admin
from django.urls import include, path

from accounts.views import admin_login_view

from . import views

# Every unhandled error: a 503 "try again in a moment" when the database is out of reach.
handler500 = "config.errors.server_error"

admin.site.site_header = "Credits Admin Center — support"
admin.site.site_title = "Credits support"

urlpatterns = [
    path("healthz", views.healthz, name="healthz"),
    # Ahead of admin.site.urls, so that this rate-limited view answers /admin/login/ (and the
    # admin's own redirects to reverse("admin:login") land on it).
    path("admin/login/", admin_login_view),
    path("admin/", admin.site.urls),
    path("credits/", include("credits.urls")),
    path("billing/", include("billing.urls")),
    path("catalog/", include("catalog.urls")),
    path("training/", include("training.urls")),
    path("", include("accounts.urls")),
]
