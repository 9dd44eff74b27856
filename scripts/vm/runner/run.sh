#!/bin/sh
# The VM test's stand-in for GitHub's runner (its tarball cannot be fetched
# here). It reads the JIT config from its environment as the real runner
# does, says it started, then exits once the probe is done, or hangs when
# the config says so (to test the watchdog).
set -eu
work="$(dirname "$0")/_work"
config=$(printf '%s' "${ACTIONS_RUNNER_INPUT_JITCONFIG:?no JIT config in the environment}" | base64 -d)
echo "$$" >"$work/.runner-pid"
: >"$work/.runner-started"
case "$config" in
*'"mode":"hang"'*)
    while :; do sleep 3600; done
    ;;
esac
waited=0
while [ ! -e "$work/.probe-done" ] && [ "$waited" -lt 300 ]; do
    sleep 1
    waited=$((waited + 1))
done
exit 0
