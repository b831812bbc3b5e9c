"""The web's pages (``web:``) and, under ``/api/``, the REST API."""

from django.templatetags.static import static
from django.urls import path
from django.views.generic import RedirectView

from .views import auth, funding, grid, operator, resident

app_name = "web"

urlpatterns = [
    path("", auth.landing, name="landing"),
    path("favicon.ico", RedirectView.as_view(url=static("web/favicon.svg"), permanent=True)),
    path("signup/", auth.sign_up, name="signup"),
    path("login/", auth.LoginView.as_view(), name="login"),
    path("logout/", auth.LogoutView.as_view(), name="logout"),
    path("password/reset/", auth.PasswordResetView.as_view(), name="password_reset"),
    path("password/reset/sent/", auth.PasswordResetDoneView.as_view(), name="password_reset_done"),
    path("password/reset/<uidb64>/<token>/", auth.PasswordResetConfirmView.as_view(), name="password_reset_confirm"),
    path("password/reset/done/", auth.PasswordResetCompleteView.as_view(), name="password_reset_complete"),
    path("password/change/", auth.PasswordChangeView.as_view(), name="password_change"),
    path("profile/", auth.profile, name="profile"),
    path("profile/token/", auth.token_rotate, name="token"),
    path("dashboard/", resident.dashboard, name="dashboard"),
    path("meters/<str:public_id>/", resident.meter_page, name="meter"),
    path("meters/<str:public_id>/state/", resident.meter_state_partial, name="meter_state"),
    path("meters/<str:public_id>/chain/", resident.meter_chain, name="meter_chain"),
    path("meters/<str:public_id>/history.csv", resident.meter_csv, name="meter_csv"),
    path("fund/", funding.fund, name="fund"),
    path("fund/search/", funding.fund_search, name="fund_search"),
    path("grid/", grid.grid_page, name="grid_default"),
    path("grid/<slug:slug>/", grid.grid_page, name="grid"),
    path("grid/<slug:slug>/live/", grid.grid_live, name="grid_live"),
    path("grid/<slug:slug>/advance/", grid.grid_advance, name="grid_advance"),
    path("operator/", operator.operator_page, name="operator"),
    path("operator/mirror/", operator.operator_mirror, name="operator_mirror"),
    path("operator/act/<slug:action>/", operator.operator_act, name="operator_act"),
]
