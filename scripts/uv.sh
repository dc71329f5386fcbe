# Sourced by the scripts: provides `uv_cmd`, installing uv for this user when it is missing.
uv_cmd() {
    if command -v uv >/dev/null 2>&1; then
        uv "$@"
    else
        if ! python3 -m uv --version >/dev/null 2>&1; then
            echo "uv not found; installing it with pip (python3 -m pip install --user uv)" >&2
            # A distribution's own Python refuses --user installs without the last flag.
            python3 -m pip install --quiet --user uv >/dev/null 2>&1 \
                || python3 -m pip install --quiet --user --break-system-packages uv >&2 \
                || { echo "could not install uv; install it (https://docs.astral.sh/uv/) and retry" >&2; return 1; }
        fi
        python3 -m uv "$@"
    fi
}
