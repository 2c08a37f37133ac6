import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]


def test_ml_core_imports_no_django():
    code = (
        "import sys, workers.ml, workers.ml.__main__, workers.ml.inference_server, workers.experiments,"
        " workers.experiments.__main__\n"
        "bad = sorted(m for m in sys.modules if m == 'django' or m.startswith('django.'))\n"
        "print(bad); sys.exit(1 if bad else 0)\n"
    )
    env = {"PATH": "/usr/bin:/bin", "PYTHONPATH": str(REPO)}
    r = subprocess.run([sys.executable, "-c", code], cwd=REPO, env=env, capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stdout + r.stderr
