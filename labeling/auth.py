"""Login on the site and for API tokens, and changing one's password: all rate-limited by
LoginLimiter."""

from django.contrib import messages
from django.contrib.auth import views as auth_views
from django.urls import reverse_lazy
from rest_framework import status
from rest_framework.authtoken.models import Token
from rest_framework.authtoken.views import ObtainAuthToken
from rest_framework.exceptions import ValidationError
from rest_framework.response import Response

from .throttling import LoginLimiter


class LoginView(auth_views.LoginView):
    def post(self, request, *args, **kwargs):
        self.limiter = LoginLimiter(request, request.POST.get("username"))
        if self.limiter.blocked():
            # The view's own context: it keeps `next` (checked as for a login), the page to return to.
            context = self.get_context_data(form=self.get_form(), rate_limited=self.limiter.message())
            return self.render_to_response(context, status=429)
        return super().post(request, *args, **kwargs)

    def form_invalid(self, form):
        # Counted from the form, not from request.user: someone already logged in stays logged in
        # after a wrong guess at another account's password.
        self.limiter.record_failure()
        return super().form_invalid(form)


def _username_of(data):
    """The username a token request names, for the login limiter. A JSON body can carry any
    type there (a list, an object, a number): only a string names a user; the serializer
    answers 400 for the rest."""
    value = data.get("username") if hasattr(data, "get") else None
    return value if isinstance(value, str) else None


class TokenView(ObtainAuthToken):
    def post(self, request, *args, **kwargs):
        limiter = LoginLimiter(request, _username_of(request.data))
        if limiter.blocked():
            return Response({"detail": limiter.message()}, status=status.HTTP_429_TOO_MANY_REQUESTS)
        serializer = self.get_serializer(data=request.data)
        if not serializer.is_valid():
            limiter.record_failure()
            raise ValidationError(serializer.errors)
        token, _ = Token.objects.get_or_create(user=serializer.validated_data["user"])
        return Response({"token": token.key})


class PasswordChangeView(auth_views.PasswordChangeView):
    """Anyone logged in changes their own password (the demo's printed ones, an admin's first
    one). A wrong old password counts as a failed login for the account: a borrowed session
    cannot try passwords here beyond the login limit. Django logs out every other session of the
    account; the API token is deleted too, since anyone who had the old password could have
    fetched it (POST /api/v1/auth/token/ gives a new one)."""

    template_name = "registration/password_change.html"
    success_url = reverse_lazy("home")

    def post(self, request, *args, **kwargs):
        self.limiter = LoginLimiter(request, request.user.get_username())
        if self.limiter.blocked():
            context = self.get_context_data(form=self.get_form(), rate_limited=self.limiter.message())
            return self.render_to_response(context, status=429)
        return super().post(request, *args, **kwargs)

    def form_invalid(self, form):
        if "old_password" in form.errors:
            self.limiter.record_failure()
        return super().form_invalid(form)

    def form_valid(self, form):
        response = super().form_valid(form)  # saves it, and keeps this session logged in
        revoked = Token.objects.filter(user=form.user).delete()[0]
        messages.success(self.request, "Your password is changed; your other sessions are logged out"
                                       + (" and your API token is revoked." if revoked else "."))
        return response
