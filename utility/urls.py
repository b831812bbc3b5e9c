from django.contrib import admin
from django.urls import path

from settlement.views import overview

urlpatterns = [
    path("", overview, name="overview"),
    path("admin/", admin.site.urls),
]
