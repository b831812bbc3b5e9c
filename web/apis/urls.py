"""``/api/``: the REST API, its OpenAPI schema and its docs (served locally)."""

from django.urls import path
from drf_spectacular.views import SpectacularAPIView, SpectacularRedocView, SpectacularSwaggerView

from . import auth, operators, residents

app_name = "api"

urlpatterns = [
    path("schema/", SpectacularAPIView.as_view(), name="schema"),
    path("docs/", SpectacularSwaggerView.as_view(url_name="api:schema"), name="docs"),
    path("redoc/", SpectacularRedocView.as_view(url_name="api:schema"), name="redoc"),
    path("auth/token/", auth.TokenApi.as_view(), name="token"),
    # Residents
    path("wallet/", residents.WalletApi.as_view(), name="wallet"),
    path("meters/", residents.MeterListApi.as_view(), name="meters"),
    path("meters/<str:public_id>/", residents.MeterDetailApi.as_view(), name="meter"),
    path("meters/<str:public_id>/readings/", residents.MeterReadingsApi.as_view(), name="meter_readings"),
    path("meters/<str:public_id>/settlements/", residents.MeterSettlementsApi.as_view(), name="meter_settlements"),
    path("meters/<str:public_id>/decisions/", residents.MeterDecisionsApi.as_view(), name="meter_decisions"),
    path("meters/<str:public_id>/fund/", residents.MeterFundApi.as_view(), name="meter_fund"),
    path("public-meters/", residents.PublicMeterListApi.as_view(), name="public_meters"),
    path("settlements/", residents.SettlementListApi.as_view(), name="settlements"),
    path("topups/", residents.TopUpListApi.as_view(), name="topups"),
    path("topups/<str:topup_id>/", residents.TopUpDetailApi.as_view(), name="topup"),
    path("withdrawals/", residents.WithdrawalListApi.as_view(), name="withdrawals"),
    path("withdrawals/<str:withdrawal_id>/", residents.WithdrawalDetailApi.as_view(), name="withdrawal"),
    # Operators (staff)
    path("ops/grids/", operators.GridListApi.as_view(), name="ops_grids"),
    path("ops/grids/<slug:slug>/", operators.GridDetailApi.as_view(), name="ops_grid"),
    path("ops/meters/", operators.MeterListApi.as_view(), name="ops_meters"),
    path("ops/meters/<str:public_id>/", operators.MeterDetailApi.as_view(), name="ops_meter"),
    path("ops/meters/<str:public_id>/rotate-secret/", operators.MeterSecretApi.as_view(), name="ops_meter_secret"),
    path("ops/meters/<str:public_id>/force/", operators.MeterForceApi.as_view(), name="ops_meter_force"),
    path("ops/meters/<str:public_id>/release/", operators.MeterReleaseApi.as_view(), name="ops_meter_release"),
    path("ops/settlements/", operators.SettlementRunListApi.as_view(), name="ops_settlements"),
    path("ops/settlements/<int:run_id>/", operators.SettlementRunDetailApi.as_view(), name="ops_settlement"),
    path("ops/settlements/<int:run_id>/lines/", operators.SettlementRunLinesApi.as_view(), name="ops_settlement_lines"),
    path("ops/alerts/", operators.AlertsApi.as_view(), name="ops_alerts"),
]
