from django.contrib import admin
from django.urls import include, path

from meters.metrics import metrics_view
from web.views.auth import landing

urlpatterns = [
    # "overview": the name the payments pages link home with.
    path("", landing, name="overview"),
    path("", include("web.urls")),
    path("api/market/", include("marketplace.api_urls")),
    path("api/", include("web.apis.urls")),
    path("admin/", admin.site.urls),
    path("metrics", metrics_view, name="metrics"),
    path("payments/", include("utility.payments.urls")),
    path("market/", include("marketplace.urls")),
]
