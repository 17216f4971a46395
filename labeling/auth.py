"""Login on the site and for API tokens, both rate-limited by LoginLimiter."""

from django.contrib.auth import views as auth_views
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
