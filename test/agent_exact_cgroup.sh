#!/usr/bin/env bash
# test/agent_exact.sh with the socket-level hook (agent --hook cgroup): the pods routed in BPF
# past the node's netfilter (test/hostroute.bpf.c), their processes in cgroups below the node's
# where the agent counts, and the oracle on the pods' own devices (test/lib.sh, KZN_HOOK).
KZN_HOOK=cgroup exec "$(dirname "$0")/agent_exact.sh"
