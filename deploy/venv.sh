# Sourced by deploy/callscreen and deploy/test: make sure .venv exists and holds this checkout.
# POSIX sh; needs only Python 3.11+ and a C compiler (the build compiles the Cython scorer).

# ensure_venv EXTRAS: EXTRAS is "" (run) or "test". Installs `pip install -e .[EXTRAS]` into
# $root/.venv when the venv is new or the packaging (pyproject.toml, setup.py, *.pyx, *.pxd, *.h)
# changed since the last install; a stamp in .venv remembers what was installed.
ensure_venv() {
    extras=$1
    python=${PYTHON:-}
    if [ -z "$python" ]; then
        for candidate in python3.13 python3.12 python3.11 python3; do
            if command -v "$candidate" >/dev/null 2>&1 &&
                "$candidate" -c 'import sys; sys.exit(sys.version_info < (3, 11))' 2>/dev/null; then
                python=$candidate
                break
            fi
        done
    fi
    if [ -z "$python" ]; then
        echo "callscreen needs Python 3.11 or newer; set PYTHON=/path/to/python3.11" >&2
        exit 1
    fi
    if [ ! -x "$root/.venv/bin/python" ]; then
        echo "creating $root/.venv with $python ..." >&2
        "$python" -m venv "$root/.venv"
    fi
    sum=$(cd "$root" && { cat pyproject.toml setup.py; find features models streaming service -name '*.pyx' -o -name '*.pxd' -o -name '*.h' | LC_ALL=C sort | xargs cat 2>/dev/null; } | cksum)
    stamp_test="$root/.venv/.callscreen-installed-test"
    stamp_run="$root/.venv/.callscreen-installed-run"
    if [ "$extras" = test ]; then stamp=$stamp_test; spec="$root[test]"; else stamp=$stamp_run; spec="$root"; fi
    # A test install is a superset of a run install.
    for s in "$stamp" "$stamp_test"; do
        if [ -f "$s" ] && [ "$(cat "$s")" = "$sum" ]; then return 0; fi
    done
    echo "installing callscreen${extras:+[$extras]} into .venv (first run, or its packaging changed) ..." >&2
    if ! "$root/.venv/bin/python" -m pip install --quiet --disable-pip-version-check -e "$spec"; then
        echo "install failed: see the pip output above (building the Cython scorer needs gcc and the Python headers)" >&2
        exit 1
    fi
    echo "$sum" >"$stamp"
}
