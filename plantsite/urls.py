from django.contrib import admin
from django.contrib.auth import views as auth_views
from django.urls import include, path
from django.views.generic import RedirectView
from drf_spectacular.views import SpectacularAPIView

from classifier import api as classifier_api
from classifier import views as classifier_views
from labeling import api as labeling_api
from labeling import auth as labeling_auth
from labeling import review_api, review_views
from labeling import labelling_api, labelling_views, webhook_api, webhook_views
from labeling import views as labeling_views
from labeling.health import healthz

api_v1 = [
    path("auth/token/", labeling_auth.TokenView.as_view(), name="api-token"),
    path("photos/", labeling_api.PhotoListCreateApi.as_view(), name="api-photos"),
    path("photos/updates/", labeling_api.PhotoUpdatesApi.as_view(), name="api-photo-updates"),
    path("photos/<int:pk>/", labeling_api.PhotoDetailApi.as_view(), name="api-photo"),
    path("photos/<int:pk>/review/", labeling_api.ReviewDecideApi.as_view(), name="api-photo-review"),
    path("photos/<int:pk>/retry/", labeling_api.PhotoRetryApi.as_view(), name="api-photo-retry"),
    path("photos/retry-failed/", labeling_api.PhotosRetryFailedApi.as_view(), name="api-photos-retry-failed"),
    path("review-queue/", labeling_api.ReviewQueueApi.as_view(), name="api-review-queue"),
    # Review: claims, corrections, history, audits (labeling/review_api.py).
    path("photos/<int:pk>/claim/", review_api.PhotoClaimApi.as_view(), name="api-photo-claim"),
    path("photos/<int:pk>/correct/", review_api.PhotoCorrectApi.as_view(), name="api-photo-correct"),
    path("photos/<int:pk>/history/", review_api.PhotoHistoryApi.as_view(), name="api-photo-history"),
    path("photos/<int:pk>/similar/", classifier_api.PhotoSimilarApi.as_view(), name="api-photo-similar"),
    path("review-queue/claim-next/", review_api.ReviewClaimNextApi.as_view(), name="api-review-claim-next"),
    path("review-queue/confirm/", review_api.ReviewConfirmManyApi.as_view(), name="api-review-confirm"),
    path("review-queue/waits/", review_api.ReviewWaitsApi.as_view(), name="api-review-waits"),
    path("audits/stats/", review_api.AuditStatsApi.as_view(), name="api-audit-stats"),
    # Labels, shared labelling, bulk upload, export, team (labeling/labelling_api.py).
    path("labels/", labelling_api.LabelListCreateApi.as_view(), name="api-labels"),
    path("labels/<int:pk>/", labelling_api.LabelDetailApi.as_view(), name="api-label"),
    path("labels/<int:pk>/merge/", labelling_api.LabelMergeApi.as_view(), name="api-label-merge"),
    path("labelling/next/", labelling_api.LabellingNextApi.as_view(), name="api-labelling-next"),
    path("labelling/skip/", labelling_api.LabellingSkipApi.as_view(), name="api-labelling-skip"),
    path("photos/<int:pk>/labels/", labelling_api.PhotoLabelsApi.as_view(), name="api-photo-labels"),
    path("imports/", labelling_api.ImportApi.as_view(), name="api-imports"),
    path("exports/dataset.zip", labelling_api.ExportDatasetApi.as_view(), name="api-export-dataset"),
    path("exports/predictions.csv", labelling_api.ExportPredictionsApi.as_view(), name="api-export-predictions"),
    path("team/stats/", labelling_api.TeamStatsApi.as_view(), name="api-team-stats"),
    path("webhooks/", webhook_api.WebhookListCreateApi.as_view(), name="api-webhooks"),
    path("webhooks/<int:pk>/", webhook_api.WebhookDetailApi.as_view(), name="api-webhook"),
    path("webhooks/<int:pk>/ping/", webhook_api.WebhookPingApi.as_view(), name="api-webhook-ping"),
    path("webhooks/<int:pk>/secret/", webhook_api.WebhookSecretApi.as_view(), name="api-webhook-secret"),
    path("webhooks/<int:pk>/deliveries/", webhook_api.WebhookDeliveryListApi.as_view(), name="api-webhook-deliveries"),
    path("webhooks/<int:pk>/deliveries/<int:delivery_id>/resend/", webhook_api.WebhookDeliveryResendApi.as_view(),
         name="api-webhook-delivery-resend"),
    path("training-runs/", classifier_api.TrainingRunListCreateApi.as_view(), name="api-training-runs"),
    path("training-runs/<int:pk>/", classifier_api.TrainingRunDetailApi.as_view(), name="api-training-run"),
    path("training-runs/<int:pk>/cancel/", classifier_api.TrainingRunCancelApi.as_view(), name="api-training-run-cancel"),
    path("models/", classifier_api.ModelVersionListApi.as_view(), name="api-models"),
    path("models/activations/", classifier_api.ModelActivationListApi.as_view(), name="api-model-activations"),
    path("models/<int:pk>/activate/", classifier_api.ModelVersionActivateApi.as_view(), name="api-model-activate"),
    path("models/<int:pk>/shadow/", classifier_api.ModelVersionShadowApi.as_view(), name="api-model-shadow"),
    path("models/compare/", classifier_api.ModelVersionCompareApi.as_view(), name="api-models-compare"),
]

urlpatterns = [
    path("", labeling_views.home, name="home"),
    path("photos/", labeling_views.photos_browse, name="photos-browse"),
    path("photos/<int:pk>/", labeling_views.photo_detail, name="photo-detail"),
    path("photos/<int:pk>/retry/", labeling_views.photo_retry, name="photo-retry"),
    path("photos/retry-failed/", labeling_views.photos_retry_failed, name="photos-retry-failed"),
    path("photos/<int:pk>/delete/", labeling_views.photo_delete, name="photo-delete"),
    path("photos/<int:pk>/explain.png", classifier_views.photo_explain, name="photo-explain"),
    path("photos/<int:pk>/similar/", classifier_views.photo_similar, name="photo-similar"),
    path("media/photos/<str:name>", labeling_views.photo_file, name="photo-file"),
    path("review/", review_views.review_queue, name="review-queue"),
    path("review/<int:pk>/", review_views.review_photo, name="review-photo"),
    path("review/claim-next/", review_views.review_claim_next, name="review-claim-next"),
    path("review/grid/", review_views.review_grid, name="review-grid"),
    path("review/audits/", review_views.review_audits, name="review-audits"),
    path("photos/<int:pk>/correct/", review_views.photo_correct, name="photo-correct"),
    path("training/", classifier_views.training_runs, name="training-runs"),
    path("training/<int:pk>/", classifier_views.training_run, name="training-run"),
    path("training/<int:pk>/cancel/", classifier_views.training_run_cancel, name="training-run-cancel"),
    path("models/", classifier_views.model_versions, name="model-versions"),
    path("models/<int:pk>/", classifier_views.model_version, name="model-version"),
    path("models/<int:pk>/activate/", classifier_views.model_version_activate, name="model-version-activate"),
    path("models/<int:pk>/shadow/", classifier_views.model_version_shadow, name="model-version-shadow"),
    path("models/compare/", classifier_views.model_versions_compare, name="model-versions-compare"),
    path("models/<int:pk>/cleaner/", classifier_views.model_version_cleaner, name="model-version-cleaner"),
    path("models/<int:pk>/explain/<int:photo_id>.png", classifier_views.model_version_explain,
         name="model-version-explain"),
    path("models/<int:pk>/cleaner/<int:photo_id>/", classifier_views.model_version_clean_photo,
         name="model-version-clean-photo"),
    path("models/<int:pk>/top-losses.png", classifier_views.model_version_top_losses, name="model-version-top-losses"),
    path("photos/<int:pk>/history/", labeling_views.photo_history, name="photo-history"),
    path("models/<int:pk>/download/", classifier_views.model_version_download, name="model-version-download"),
    path("models/<int:pk>/confusion.png", classifier_views.model_version_confusion, name="model-version-confusion"),
    # Shared labelling, labels, bulk upload, export, team (labeling/labelling_views.py).
    path("label/", labelling_views.labelling_page, name="labelling"),
    path("label/photos/<int:pk>/image", labelling_views.labelling_photo_file, name="labelling-photo-file"),
    path("labels/", labelling_views.labels_page, name="labels"),
    path("labels/<int:pk>/", labelling_views.label_edit, name="label-edit"),
    path("import/", labelling_views.bulk_upload, name="bulk-upload"),
    path("export/", labelling_views.export_page, name="export"),
    path("team/", labelling_views.team_page, name="team"),
    path("webhooks/", webhook_views.webhooks_page, name="webhooks"),
    path("webhooks/<int:pk>/", webhook_views.webhook_page, name="webhook"),
    path("login/", labeling_auth.LoginView.as_view(), name="login"),
    path("logout/", auth_views.LogoutView.as_view(), name="logout"),
    path("account/password/", labeling_auth.PasswordChangeView.as_view(), name="password-change"),
    # The admin's own login form knows nothing of the login limits: it is the site's login.
    path("admin/login/", RedirectView.as_view(pattern_name="login", query_string=True)),
    path("admin/", admin.site.urls),
    path("api/v1/", include(api_v1)),
    path("api/schema/", SpectacularAPIView.as_view(), name="api-schema"),
    path("healthz", healthz, name="healthz"),
]

# The API answers these in JSON too. A database error raised outside a view (a middleware's
# session save) is a 503.
handler404 = "labeling.middleware.page_not_found"
handler500 = "labeling.middleware.server_error"
