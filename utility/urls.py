from django.contrib import admin
from django.urls import include, path

from settlement.views import overview

urlpatterns = [
    path("", overview, name="overview"),
    path("admin/", admin.site.urls),
    path("payments/", include("utility.payments.urls")),
]
