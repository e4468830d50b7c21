#!/usr/bin/env bash
# Checks the Prometheus deployment files with promtool (the Debian 12 package, promtool 2.42):
#   promtool check config  deployments/prometheus/prometheus.yml  (also checks rule_files exist)
#   promtool check config  deployments/prometheus/prometheus-cluster.yml (docker-compose.cluster.yaml)
#   promtool check rules   deployments/prometheus/rules.yml
#   promtool test rules    deployments/prometheus/rules_test.yml
# Installs promtool through apt when it is missing, without leaving a Prometheus daemon running.
# Exits non-zero when any check fails.
set -euo pipefail

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"

install_promtool() {
	local sudo=""
	if [ "$(id -u)" -ne 0 ]; then
		command -v sudo >/dev/null || { echo "promtool missing and not root: install the Debian package 'prometheus'" >&2; exit 1; }
		sudo="sudo"
	fi
	# The package would start its own Prometheus on :9090. policy-rc.d (exit 101 = "action
	# forbidden") stops invoke-rc.d from starting it on hosts without systemd; it is only
	# created when absent and removed afterwards.
	local policy=/usr/sbin/policy-rc.d made_policy=""
	if [ ! -e "$policy" ]; then
		printf '#!/bin/sh\nexit 101\n' | $sudo tee "$policy" >/dev/null
		$sudo chmod 0755 "$policy"
		made_policy=1
	fi
	local before
	before="$(pgrep -x prometheus || true)"
	local rc=0
	$sudo apt-get update && DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y --no-install-recommends prometheus || rc=$?
	if [ -n "$made_policy" ]; then
		$sudo rm -f "$policy"
	fi
	[ "$rc" -eq 0 ] || { echo "apt-get install prometheus failed ($rc)" >&2; exit "$rc"; }

	# If a daemon was started anyway (systemd hosts), stop it and keep it from starting at boot.
	if [ -d /run/systemd/system ] && command -v systemctl >/dev/null; then
		$sudo systemctl disable --now prometheus.service >/dev/null 2>&1 || true
	fi
	local pid
	for pid in $(pgrep -x prometheus || true); do
		case " $before " in
		*" $pid "*) ;; # was running before we installed: not ours
		*) $sudo kill "$pid" || true ;;
		esac
	done
}

command -v promtool >/dev/null || install_promtool
promtool --version 2>&1 | head -n 1

promtool check config deployments/prometheus/prometheus.yml
promtool check config deployments/prometheus/prometheus-cluster.yml
promtool check rules deployments/prometheus/rules.yml
promtool test rules deployments/prometheus/rules_test.yml
echo "promtool: all checks passed"
