# Sourced by scripts/run and scripts/test: make .venv on first use (Python >= 3.11), and
# (re)install the project whenever pyproject.toml, setup.py or constraints.txt changed since the last install.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

pick_python() {
  for candidate in "${PYTHON:-}" python3.11 python3.12 python3.13 python3; do
    [ -n "$candidate" ] || continue
    if command -v "$candidate" >/dev/null 2>&1 &&
       "$candidate" -c 'import sys; sys.exit(sys.version_info < (3, 11))' 2>/dev/null; then
      echo "$candidate"; return 0
    fi
  done
  echo "mailsync needs Python 3.11 or newer on PATH (or PYTHON=/path/to/python)" >&2
  return 1
}

if [ ! -x .venv/bin/python ]; then
  echo "creating .venv ..." >&2
  "$(pick_python)" -m venv .venv
fi
stamp=.venv/.mailsync-installed
want=$(cat pyproject.toml setup.py constraints.txt | sha256sum | cut -d' ' -f1)
if [ "$(cat "$stamp" 2>/dev/null)" != "$want" ]; then
  echo "installing mailsync and its dependencies into .venv ..." >&2
  .venv/bin/python -m pip install --quiet --disable-pip-version-check --upgrade pip
  .venv/bin/python -m pip install --quiet --disable-pip-version-check -c constraints.txt -e '.[dev]'
  echo "$want" > "$stamp"
fi
export PATH="$PWD/.venv/bin:$PATH"
