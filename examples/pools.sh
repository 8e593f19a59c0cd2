#!/bin/sh
# The pools the example conflists name, made with the operator CLI (checked as the plugin reads them).
# Static addresses (a job's IP, podman's --ip) live in the subnet outside rangeStart..rangeEnd.
set -e
export CONSUL_HTTP_ADDR=http://127.0.0.1:8500
consul-ipam pool set web --range 10.20.0.0/24,10.20.0.100,10.20.0.199,10.20.0.1
consul-ipam pool set batch --range 10.21.0.0/24,10.21.0.100,10.21.0.199,10.21.0.1
consul-ipam pool set podman --range 10.88.0.0/24,10.88.0.100,10.88.0.199,10.88.0.1
consul-ipam pool set web-v4 --range 10.22.0.0/24,10.22.0.100,10.22.0.199,10.22.0.1
consul-ipam pool set web-v6 --range fd00:22::/64,fd00:22::100,fd00:22::1ff,fd00:22::1
