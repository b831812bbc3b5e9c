"""``/payments/...``: resident pages, the Stripe webhook, the stand-in's pages."""

from django.contrib.auth import views as auth_views
from django.urls import path

from . import views

app_name = "payments"

urlpatterns = [
    path("", views.payments_home, name="home"),
    path("webhook/", views.stripe_webhook, name="webhook"),
    path("buy/", views.topup_new, name="topup_new"),
    path("topups/<str:topup_id>/", views.topup_detail, name="topup"),
    path("withdraw/", views.withdrawal_new, name="withdrawal_new"),
    path("withdrawals/<str:withdrawal_id>/", views.withdrawal_detail, name="withdrawal"),
    path("connect/", views.connect_start, name="connect"),
    path("connect/return/", views.connect_return, name="connect_return"),
    path("connect/refresh/", views.connect_refresh, name="connect_refresh"),
    path("fake/checkout/<str:session_id>/", views.fake_checkout, name="fake_checkout"),
    path("fake/onboarding/<str:link_id>/", views.fake_onboarding, name="fake_onboarding"),
    # Until the web app (issue 7) brings its own.
    path(
        "login/",
        auth_views.LoginView.as_view(template_name="payments/login.html", next_page="payments:home"),
        name="login",
    ),
    path("logout/", auth_views.LogoutView.as_view(next_page="payments:login"), name="logout"),
]
