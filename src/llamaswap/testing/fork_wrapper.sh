#!/usr/bin/env bash
# fork_wrapper.sh - run a command as a grandchild, for llamaswap's no-orphans tests.
#
#   fork_wrapper.sh python -m llamaswap.testing.upstream --port 8080
#
# Default mode: start "$@" in the background, print "wrapper child pid <pid>", wait for it and
# exit with its status. The real server is then a grandchild of whoever spawned the wrapper and
# shares the wrapper's process group, like a `cmd` that is a shell script which does not `exec`
# (llama-swap's StopForkingWrapper / StopReapsForkedGrandchild tests). Signalling only the
# wrapper's pid leaves the server running as an orphan; signalling the process group reaches it.
# The wrapper installs no traps: SIGTERM kills it and does not forward anything.
#
# FORK_WRAPPER_DETACH=1: start the child in the background, print the line, exit 0 at once
#   (llama-swap issue #601: a `cmd` that daemonises). The child is reparented to init (or to
#   the nearest child subreaper) but is still in the wrapper's process group, so a
#   process-group signal still reaches it even though the group leader is gone.
#
# FORK_WRAPPER_SETSID=1: start the child with `setsid`, so it gets its own session and process
#   group. Neither a signal to the wrapper nor one to the wrapper's process group reaches it,
#   and PR_SET_PDEATHSIG set on the wrapper is not inherited across fork, so it cannot help
#   either. Only means that do not depend on the process tree or group can stop it: the pid
#   printed above, a cgroup, or becoming a child subreaper (PR_SET_CHILD_SUBREAPER) and
#   walking /proc for the reparented descendants. This mode only provides the situation; the
#   tests that use it decide what llamaswap must guarantee.
#
# The two modes combine (FORK_WRAPPER_DETACH=1 FORK_WRAPPER_SETSID=1 is a classic daemon).
set -u

if [ "$#" -eq 0 ]; then
    echo "usage: fork_wrapper.sh COMMAND [ARGS...]" >&2
    exit 2
fi

if [ "${FORK_WRAPPER_SETSID:-0}" = "1" ]; then
    # Without job control, background jobs stay in the shell's own process group, so the
    # child is no group leader and setsid(1) calls setsid() without forking: $! is the server.
    setsid "$@" &
else
    "$@" &
fi
child=$!
echo "wrapper child pid $child"

if [ "${FORK_WRAPPER_DETACH:-0}" = "1" ]; then
    exit 0
fi
wait "$child"
