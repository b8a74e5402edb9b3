# Sourced by the CPU example scripts: puts `nmt` on PATH. An `nmt` already there (an activated environment) is used
# as it is; otherwise the clone's own .venv, created and installed on first use. TORCH_SPEC picks the torch build
# (the default is the CPU build the development machines carry; on a GPU machine give the one for your CUDA).
NMT_REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
if [ -x "$NMT_REPO/.venv/bin/nmt" ]; then
  export PATH="$NMT_REPO/.venv/bin:$PATH"
elif ! command -v nmt >/dev/null; then
  echo "installing nmt into $NMT_REPO/.venv (once)" >&2
  python3 -m venv "$NMT_REPO/.venv"
  "$NMT_REPO/.venv/bin/pip" install -q "${TORCH_SPEC:-torch==2.13.0}"
  "$NMT_REPO/.venv/bin/pip" install -q -e "$NMT_REPO[plot]"
  export PATH="$NMT_REPO/.venv/bin:$PATH"
fi
