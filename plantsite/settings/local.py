"""The default: a local setup that runs with no configuration."""

from .base import *  # noqa: F401,F403
from .env import env_bool

DEBUG = env_bool("DEBUG", True)
# `make run` never runs collectstatic: WhiteNoise serves the app's static folders as they are,
# so that pages keep their styles and scripts with DEBUG=0 too (runserver serves them only
# with DEBUG on).
WHITENOISE_USE_FINDERS = True
