#!/usr/bin/env bash
# test/overlay.sh with the socket-level hook (agent --hook cgroup): each node's agent at the
# node's cgroup, the pods' processes in cgroups below it (test/lib.sh, KZN_HOOK).
KZN_HOOK=cgroup exec "$(dirname "$0")/overlay.sh"
