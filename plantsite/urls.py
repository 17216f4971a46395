from django.contrib import admin
from django.contrib.auth import views as auth_views
from django.urls import include, path
from drf_spectacular.views import SpectacularAPIView

from classifier import api as classifier_api
from classifier import views as classifier_views
from labeling import api as labeling_api
from labeling import auth as labeling_auth
from labeling import views as labeling_views
from labeling.health import healthz

api_v1 = [
    path("auth/token/", labeling_auth.TokenView.as_view(), name="api-token"),
    path("photos/", labeling_api.PhotoListCreateApi.as_view(), name="api-photos"),
    path("photos/<int:pk>/", labeling_api.PhotoDetailApi.as_view(), name="api-photo"),
    path("photos/<int:pk>/review/", labeling_api.ReviewDecideApi.as_view(), name="api-photo-review"),
    path("review-queue/", labeling_api.ReviewQueueApi.as_view(), name="api-review-queue"),
    path("labels/", labeling_api.LabelListApi.as_view(), name="api-labels"),
    path("training-runs/", classifier_api.TrainingRunListCreateApi.as_view(), name="api-training-runs"),
    path("training-runs/<int:pk>/", classifier_api.TrainingRunDetailApi.as_view(), name="api-training-run"),
    path("training-runs/<int:pk>/cancel/", classifier_api.TrainingRunCancelApi.as_view(), name="api-training-run-cancel"),
    path("models/", classifier_api.ModelVersionListApi.as_view(), name="api-models"),
    path("models/<int:pk>/activate/", classifier_api.ModelVersionActivateApi.as_view(), name="api-model-activate"),
]

urlpatterns = [
    path("", labeling_views.home, name="home"),
    path("photos/<int:pk>/", labeling_views.photo_detail, name="photo-detail"),
    path("media/photos/<str:name>", labeling_views.photo_file, name="photo-file"),
    path("review/", labeling_views.review_queue, name="review-queue"),
    path("review/<int:pk>/", labeling_views.review_photo, name="review-photo"),
    path("training/", classifier_views.training_runs, name="training-runs"),
    path("training/<int:pk>/", classifier_views.training_run, name="training-run"),
    path("training/<int:pk>/cancel/", classifier_views.training_run_cancel, name="training-run-cancel"),
    path("models/", classifier_views.model_versions, name="model-versions"),
    path("models/<int:pk>/activate/", classifier_views.model_version_activate, name="model-version-activate"),
    path("models/<int:pk>/cleaner/", classifier_views.model_version_cleaner, name="model-version-cleaner"),
    path("models/<int:pk>/cleaner/<int:photo_id>/", classifier_views.model_version_clean_photo,
         name="model-version-clean-photo"),
    path("models/<int:pk>/top-losses.png", classifier_views.model_version_top_losses, name="model-version-top-losses"),
    path("photos/<int:pk>/history/", labeling_views.photo_history, name="photo-history"),
    path("models/<int:pk>/confusion.png", classifier_views.model_version_confusion, name="model-version-confusion"),
    path("login/", labeling_auth.LoginView.as_view(), name="login"),
    path("logout/", auth_views.LogoutView.as_view(), name="logout"),
    path("admin/", admin.site.urls),
    path("api/v1/", include(api_v1)),
    path("api/schema/", SpectacularAPIView.as_view(), name="api-schema"),
    path("healthz", healthz, name="healthz"),
]

# A database error raised outside a view (a middleware's session save) is a 503 too.
handler500 = "labeling.middleware.server_error"
