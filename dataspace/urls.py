from django.contrib import admin
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.urls import include, path
from django.views.defaults import page_not_found
from drf_spectacular.views import SpectacularAPIView, SpectacularSwaggerView

from dataspace.accounts import apis as accounts
from dataspace.audit import apis as audit
from dataspace.catalog import apis as catalog
from dataspace.compute import algorithm_apis as algorithms  # ISSUE-13
from dataspace.compute import apis as compute
from dataspace.errors import ErrorCode, error_body
from dataspace.policies import apis as policies


def healthz(request: HttpRequest) -> JsonResponse:
    return JsonResponse({"status": "ok"})


def not_found(request: HttpRequest, exception: Exception) -> HttpResponse:
    """An address no view answers: the error envelope under /api/ and the DCAT catalogue (their
    clients parse every answer as JSON), Django's page elsewhere."""
    if request.path.startswith(("/api/", "/catalog")):
        body = error_body(ErrorCode.NOT_FOUND, "Nothing is at this address; see /api/docs/ for the API's paths.")
        return JsonResponse(body, status=404)
    return page_not_found(request, exception)


handler404 = not_found

api = [
    path("auth/token/", accounts.TokenCreateApi.as_view(), name="token-create"),
    path("auth/tokens/", accounts.TokenListApi.as_view(), name="token-list"),
    path("auth/tokens/<str:token_key>/", accounts.TokenRevokeApi.as_view(), name="token-revoke"),
    path("me/", accounts.MeApi.as_view(), name="me"),
    path("me/wallet/custodial/", accounts.WalletCustodialCreateApi.as_view(), name="wallet-custodial"),
    path("me/wallet/challenge/", accounts.WalletChallengeApi.as_view(), name="wallet-challenge"),
    path("me/wallet/register/", accounts.WalletRegisterApi.as_view(), name="wallet-register"),
    path("datasets/", catalog.DatasetListCreateApi.as_view(), name="dataset-list"),
    path("datasets/<uuid:dataset_id>/", catalog.DatasetDetailApi.as_view(), name="dataset-detail"),
    path(
        "datasets/<uuid:dataset_id>/encrypted-store/",
        compute.EncryptedStoreApi.as_view(),
        name="dataset-encrypted-store",
    ),
    path("ingests/", catalog.IngestListApi.as_view(), name="ingest-list"),
    path("ingests/<uuid:ingest_id>/", catalog.IngestDetailApi.as_view(), name="ingest-detail"),
    path("offers/", policies.OfferListCreateApi.as_view(), name="offer-list"),
    path("offers/<uuid:offer_id>/", policies.OfferDetailApi.as_view(), name="offer-detail"),
    path("agreements/", policies.AgreementListCreateApi.as_view(), name="agreement-list"),
    path("agreements/<uuid:agreement_id>/", policies.AgreementDetailApi.as_view(), name="agreement-detail"),
    path(  # ISSUE-16
        "agreements/<uuid:agreement_id>/budget/", policies.AgreementBudgetApi.as_view(), name="agreement-budget"
    ),
    path("earnings/", policies.EarningsApi.as_view(), name="earnings"),
    path("operations/", compute.OperationListApi.as_view(), name="operation-list"),
    # ISSUE-13: algorithms for TEE jobs.
    path("algorithms/", algorithms.AlgorithmListCreateApi.as_view(), name="algorithm-list"),
    path("algorithms/<uuid:algorithm_id>/", algorithms.AlgorithmDetailApi.as_view(), name="algorithm-detail"),
    *[
        path(
            f"algorithms/<uuid:algorithm_id>/{action}/",
            algorithms.AlgorithmDecisionApi.as_view(action=action),
            name=f"algorithm-{action}",
        )
        for action in ("approve", "reject", "revoke")
    ],
    path("jobs/", compute.JobListCreateApi.as_view(), name="job-list"),
    path("jobs/usage/", compute.JobUsageApi.as_view(), name="job-usage"),  # ISSUE-16
    path("jobs/<uuid:job_id>/", compute.JobDetailApi.as_view(), name="job-detail"),
    path("audit/reconcile/", audit.ReconcileApi.as_view(), name="audit-reconcile"),
    # ISSUE-12: the space's public facts, and an auditor's receipt check.
    path("space/", audit.SpaceApi.as_view(), name="space"),
    path("audit/receipts/verify/", audit.ReceiptVerifyApi.as_view(), name="audit-receipt-verify"),
    path("audit/jobs/", audit.AuditJobListApi.as_view(), name="audit-job-list"),  # ISSUE-15
    path("audit/jobs/<uuid:job_id>/", audit.AuditJobDetailApi.as_view(), name="audit-job-detail"),  # ISSUE-15
    path("schema/", SpectacularAPIView.as_view(), name="schema"),
    path("docs/", SpectacularSwaggerView.as_view(url_name="schema"), name="swagger-ui"),
]

urlpatterns = [
    path("api/", include(api)),
    path("catalog.jsonld", catalog.CatalogDcatApi.as_view(), name="catalog-dcat"),
    path("catalog/datasets/<uuid:dataset_id>.jsonld", catalog.DatasetDcatApi.as_view(), name="catalog-dataset-dcat"),
    path("admin/", admin.site.urls),
    path("healthz", healthz, name="healthz"),
    path("", include("dataspace.portal.urls")),
]
