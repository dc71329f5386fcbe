# Sourced by the scripts: provides `uv_cmd`, installing uv for this user when it is missing.
uv_cmd() {
    if command -v uv >/dev/null 2>&1; then
        uv "$@"
    else
        if ! python3 -m uv --version >/dev/null 2>&1; then
            echo "uv not found; installing it with pip (python3 -m pip install --user uv)" >&2
            python3 -m pip install --quiet --user uv >&2 \
                || python3 -m pip install --quiet --user --break-system-packages uv >&2
        fi
        python3 -m uv "$@"
    fi
}
