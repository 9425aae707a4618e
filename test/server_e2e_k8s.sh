#!/usr/bin/env bash
# The end-to-end scenario of server_e2e.sh with pods and nodes from a stand-in Kubernetes API
# server instead of a topology file.
E2E_KUBE=1 exec bash "$(dirname "$0")/server_e2e.sh"
