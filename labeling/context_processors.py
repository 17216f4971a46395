from .models import is_expert
from .polling import RESULT_POLL_DELAYS_MS


def roles(request):
    user = getattr(request, "user", None)
    return {"user_is_expert": bool(user and is_expert(user))}


def result_polling(request):
    return {"result_poll_delays_ms": ",".join(str(ms) for ms in RESULT_POLL_DELAYS_MS)}
