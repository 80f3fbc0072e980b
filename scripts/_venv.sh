# Sourced by scripts/demo and scripts/test: make (once) and enter the project's
# virtual environment, with a torch build installed before the package itself.
# FLOPGRAPH_VENV picks the environment's folder; FLOPGRAPH_TORCH the torch spec:
# torch, and torchvision where a build matching that torch exists (.ci/run tests
# the oldest supported torch without one).
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
venv="${FLOPGRAPH_VENV:-$root/.venv}"
if [ ! -x "$venv/bin/python" ]; then
    python3 -m venv "$venv"
fi
# shellcheck disable=SC1091
. "$venv/bin/activate"
export PIP_DISABLE_PIP_VERSION_CHECK=1
# torch and torchvision must come as a matching pair; pip leaves a satisfied pin alone
# shellcheck disable=SC2086
python -m pip install -q ${FLOPGRAPH_TORCH:-torch==2.14.1 torchvision==0.29.1}
# the installed torch, pinned in every later install so that no dependency moves it
# (its public version: "==2.14.1" matches the 2.14.1+cu130 build installed)
torch_pin="torch==$(python -c 'import torch; print(torch.__version__.partition("+")[0])')"
