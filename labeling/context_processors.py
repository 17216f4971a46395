from .models import is_expert


def roles(request):
    user = getattr(request, "user", None)
    return {"user_is_expert": bool(user and is_expert(user))}
