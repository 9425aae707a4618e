#!/usr/bin/env bash
# test/agent_exact.sh with the flow counts kept per CPU (agent --per-cpu-counts): the agent
# sums each flow's CPUs when it drains, and every byte and packet still equals nftables'.
KZN_AGENT_ARGS=--per-cpu-counts exec "$(dirname "$0")/agent_exact.sh"
