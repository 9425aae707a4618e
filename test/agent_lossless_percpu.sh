#!/usr/bin/env bash
# test/agent_lossless.sh with the flow counts kept per CPU (agent --per-cpu-counts): the full
# map, drains every 100 ms while both CPUs add new flows, and kill -9 mid-traffic lose nothing
# when the agent sums each flow's CPUs.
KZN_AGENT_ARGS=--per-cpu-counts exec "$(dirname "$0")/agent_lossless.sh"
