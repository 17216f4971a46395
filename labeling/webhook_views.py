"""Admins' pages for webhooks: add one, see what was sent to it and what it answered, send a
test event or a failed delivery again (labeling.webhooks does the work)."""

from django import forms
from django.contrib import messages
from django.http import Http404
from django.shortcuts import get_object_or_404, redirect, render
from django.views.decorators.http import require_http_methods

from . import selectors, webhooks
from .models import Webhook
from .views import staff_required

DELIVERIES_SHOWN = 50


class WebhookForm(forms.Form):
    url = forms.URLField(max_length=500, label="Address", assume_scheme="https",
                         widget=forms.URLInput(attrs={"size": 60, "placeholder": "https://"}),
                         help_text="Where each event is POSTed as JSON (http:// or https://).")
    description = forms.CharField(max_length=200, required=False, help_text="What it is for, for the other admins.")
    events = forms.MultipleChoiceField(choices=Webhook.Event.choices, widget=forms.CheckboxSelectMultiple,
                                       initial=[Webhook.Event.DECIDED])
    format = forms.ChoiceField(choices=Webhook.Format.choices, initial=Webhook.Format.JSON, widget=forms.RadioSelect,
                               help_text="Both are signed the same way.")
    active = forms.BooleanField(required=False, initial=True, label="On",
                                help_text="Off: no new events are recorded for it, and those waiting are not sent.")


def _save(form, *, user=None, webhook_id=None):
    """The webhook saved from a valid form, or None with the refusal added to the form."""
    data = form.cleaned_data
    try:
        if webhook_id is None:
            return webhooks.webhook_create(url=data["url"], events=data["events"], description=data["description"],
                                           user=user, format=data["format"])
        return webhooks.webhook_update(webhook_id=webhook_id, url=data["url"], events=data["events"],
                                       description=data["description"], active=data["active"], format=data["format"])
    except webhooks.WebhookError as exc:
        form.add_error(None, str(exc))
        return None


@staff_required
@require_http_methods(["GET", "POST"])
def webhooks_page(request):
    form = WebhookForm(request.POST or None)
    if request.method == "POST" and form.is_valid():
        webhook = _save(form, user=request.user)
        if webhook is not None:
            messages.success(request, f"Webhook {webhook.id} added: send it a test event to see that it answers.")
            return redirect("webhook", pk=webhook.pk)
    return render(request, "labeling/webhooks.html", {
        "webhooks": selectors.webhooks_with_latest(), "form": form,
    }, status=400 if form.errors else 200)


@staff_required
@require_http_methods(["GET", "POST"])
def webhook_page(request, pk):
    webhook = get_object_or_404(Webhook, pk=pk)
    form = WebhookForm(initial={"url": webhook.url, "description": webhook.description, "events": webhook.events,
                                "active": webhook.active, "format": webhook.format})
    if request.method == "POST":
        try:
            return _webhook_post(request, webhook, form)
        except Webhook.DoesNotExist:  # deleted by another admin since it was looked up above
            raise Http404("No such webhook.") from None
    return _webhook_page(request, webhook, form)


def _webhook_post(request, webhook, form):
    """The redirect once an action is done, or the page again with the refused form."""
    action = request.POST.get("action", "save")
    if action == "save":
        form = WebhookForm(request.POST)
        if form.is_valid() and _save(form, webhook_id=webhook.pk) is not None:
            messages.success(request, "Webhook saved.")
            return redirect("webhook", pk=webhook.pk)
        return _webhook_page(request, webhook, form)
    if action == "test":
        delivery = webhooks.webhook_ping(webhook_id=webhook.pk)
        messages.success(request, f"Test event {delivery.event_id} recorded; it is sent within seconds.")
    elif action == "secret":
        webhooks.webhook_rotate_secret(webhook_id=webhook.pk)
        messages.success(request, "A new secret signs every POST from now on: give it to the receiver.")
    elif action == "resend":
        _resend(request, webhook)
    elif action == "delete" and request.POST.get("confirm") != "yes":
        messages.error(request, "Tick the box to confirm the deletion: nothing was deleted.")
    elif action == "delete":
        webhooks.webhook_delete(webhook_id=webhook.pk)
        messages.success(request, f"Webhook {webhook.pk} ({webhook.url}) deleted, with its deliveries.")
        return redirect("webhooks")
    else:
        messages.error(request, f"Unknown action {action[:40]!r}.")
    return redirect("webhook", pk=webhook.pk)


def _webhook_page(request, webhook, form):
    deliveries = list(webhook.deliveries.all()[:DELIVERIES_SHOWN])
    return render(request, "labeling/webhook.html", {
        "webhook": webhook, "form": form, "deliveries": deliveries, "shown": DELIVERIES_SHOWN,
        "counts": selectors.webhook_delivery_counts(webhook),
        "max_attempts": webhooks.MAX_ATTEMPTS, "signature_header": webhooks.SIGNATURE_HEADER,
    }, status=400 if form.errors else 200)


def _resend(request, webhook):
    delivery_id = request.POST.get("delivery", "")
    if not delivery_id.isdigit() or not webhook.deliveries.filter(id=int(delivery_id)).exists():
        messages.error(request, "No such delivery of this webhook.")
    elif webhooks.webhook_delivery_resend(delivery_id=int(delivery_id)):
        messages.success(request, f"Delivery {delivery_id} is sent again.")
    else:
        messages.error(request, f"Delivery {delivery_id} is still waiting or being sent: it is not sent twice.")
