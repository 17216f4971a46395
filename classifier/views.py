from django.contrib import messages
from django.contrib.admin.views.decorators import staff_member_required
from django.contrib.auth.decorators import login_required
from django.http import FileResponse, Http404
from django.shortcuts import get_object_or_404, redirect, render
from django.views.decorators.http import require_POST

from . import selectors, services
from .forms import TrainingForm


@staff_member_required
def training_runs(request):
    form = TrainingForm(request.POST or None)
    if request.method == "POST" and form.is_valid():
        options = dict(form.cleaned_data)
        activate = options.pop("activate")
        try:
            run = services.training_run_start(user=request.user, options=options, activate=activate)
        except services.TrainingRunConflict as exc:
            messages.error(request, str(exc))
        except ValueError as exc:
            form.add_error(None, str(exc))
        else:
            messages.success(request, f"Training run {run.id} queued.")
            return redirect("training-run", pk=run.pk)
    return render(request, "classifier/training_runs.html", {
        "form": form, "runs": selectors.training_runs()[:50], "active_run": selectors.active_training_run(),
    })


@staff_member_required
def training_run(request, pk):
    run = get_object_or_404(selectors.training_runs(), pk=pk)
    return render(request, "classifier/training_run.html", {"run": run})


@staff_member_required
@require_POST
def training_run_cancel(request, pk):
    run = get_object_or_404(selectors.training_runs(), pk=pk)
    if services.training_run_cancel(run_id=run.id):
        messages.info(request, f"Cancelling run {run.id}.")
    else:
        messages.warning(request, f"Run {run.id} has already ended.")
    return redirect("training-run", pk=run.pk)


@login_required
def model_versions(request):
    return render(request, "classifier/model_versions.html", {"versions": selectors.model_versions()})


@staff_member_required
@require_POST
def model_version_activate(request, pk):
    version = get_object_or_404(selectors.model_versions(), pk=pk)
    services.model_version_activate(version_id=version.id)
    messages.success(request, f"Model version {version.id} is now active.")
    return redirect("model-versions")


@login_required
def model_version_confusion(request, pk):
    version = get_object_or_404(selectors.model_versions(), pk=pk)
    name = version.metrics.get("confusion_png")
    if not name or not (version.path.parent / name).exists():
        raise Http404("No confusion-matrix picture for this version.")
    return FileResponse(open(version.path.parent / name, "rb"), content_type="image/png")
