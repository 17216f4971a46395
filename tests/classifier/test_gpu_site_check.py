"""scripts/gpu_site_check, the site's own training commands as a GPU machine runs them, on the
CPU here: every step runs, and --require-gpu then refuses runs that did not use a GPU."""

import os
import subprocess
import sys

from tests.paths import REPO

TINY = ["--per-label", "4", "--epochs", "1", "--image-size", "32"]


def run_check(*args):
    env = {k: v for k, v in os.environ.items() if k not in ("DJANGO_SETTINGS_MODULE", "DATABASE_URL", "REDIS_URL")}
    env["PYTHON"] = sys.executable
    env["CUDA_VISIBLE_DEVICES"] = ""  # a CPU run even on a machine with a GPU: the one --require-gpu refuses
    return subprocess.run([str(REPO / "scripts" / "gpu_site_check"), *TINY, *args], cwd=REPO, env=env,
                          capture_output=True, text=True, timeout=300)


def test_the_site_check_trains_activates_and_predicts_then_refuses_a_cpu_run_when_a_gpu_is_required():
    result = run_check("--require-gpu")

    assert result.returncode == 1, result.stdout + result.stderr
    assert "Not every run succeeded on a GPU." in result.stderr
    out = result.stdout
    assert "Starter model version 1 is active" in out
    assert "Run 2 created model version 2" in out and "activated" in out
    assert "run 1: succeeded on cpu" in out and "run 2: succeeded on cpu" in out
    assert "Training on the CPU with" in out
    assert "version 2: resnet18 at 32 px" in out and ", active" in out
    assert "Model version 2 (resnet18)." in result.stderr  # manage.py predict used the new active version
    assert sum(".jpg\t" in line for line in out.splitlines()) == 4  # a label and probabilities per photo
