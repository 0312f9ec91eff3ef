#!/bin/sh
# Install the QEMU system emulators the bare-metal suites need (Debian bookworm).
#
# Debian bookworm's own QEMU 7.2 conflicts with a qemu-utils 10.x from
# bookworm-backports, so we take qemu-system-arm and qemu-system-riscv from
# bookworm-backports when it is (or can be) configured, else from the main suite.
# Idempotent: does nothing when both emulators are already on PATH.
set -eu

have() { command -v "$1" >/dev/null 2>&1; }

if have qemu-system-arm && have qemu-system-riscv64; then
    echo "install-qemu: qemu-system-arm and qemu-system-riscv64 already installed"
    exit 0
fi

if [ "$(id -u)" != 0 ]; then
    echo "install-qemu: must run as root (try: sudo $0)" >&2
    exit 1
fi
if ! have apt-get; then
    echo "install-qemu: apt-get not found; install qemu-system-arm and qemu-system-riscv64 with your package manager" >&2
    exit 1
fi

export DEBIAN_FRONTEND=noninteractive
codename=""
if [ -r /etc/os-release ]; then
    # shellcheck disable=SC1091
    codename=$(. /etc/os-release && echo "${VERSION_CODENAME:-}")
fi

use_backports=0
if [ "$codename" = bookworm ]; then
    # Is bookworm-backports already among apt's sources?
    if grep -rqs 'bookworm-backports' /etc/apt/sources.list /etc/apt/sources.list.d/ 2>/dev/null; then
        :
    else
        echo 'deb http://deb.debian.org/debian bookworm-backports main' \
            > /etc/apt/sources.list.d/bookworm-backports.list
    fi
    use_backports=1
fi

apt-get update -qq
if [ "$use_backports" = 1 ]; then
    apt-get install -y -qq --no-install-recommends -t bookworm-backports \
        qemu-system-arm qemu-system-riscv
else
    apt-get install -y -qq --no-install-recommends qemu-system-arm qemu-system-riscv \
        || apt-get install -y -qq --no-install-recommends qemu-system-arm qemu-system-misc
fi

qemu-system-arm --version | head -n1
qemu-system-riscv64 --version | head -n1
