#!/bin/sh
# The official rabbitmq image's contract, for the test's local image: RABBITMQ_DEFAULT_USER,
# RABBITMQ_DEFAULT_PASS, RABBITMQ_ERLANG_COOKIE, and /etc/rabbitmq/conf.d/*.conf read on start.
set -eu
mkdir -p /etc/rabbitmq/conf.d
cat > /etc/rabbitmq/conf.d/00-image.conf <<CONF
loopback_users = none
listeners.tcp.default = 5672
default_user = ${RABBITMQ_DEFAULT_USER:-guest}
default_pass = ${RABBITMQ_DEFAULT_PASS:-guest}
CONF
[ -f /etc/rabbitmq/enabled_plugins ] || echo "[rabbitmq_management,rabbitmq_prometheus]." > /etc/rabbitmq/enabled_plugins
if [ -n "${RABBITMQ_ERLANG_COOKIE:-}" ]; then
  printf '%s' "$RABBITMQ_ERLANG_COOKIE" > /var/lib/rabbitmq/.erlang.cookie
  chmod 600 /var/lib/rabbitmq/.erlang.cookie
fi
chown -R rabbitmq:rabbitmq /var/lib/rabbitmq /var/log/rabbitmq
# Debian's wrapper drops to the rabbitmq user itself
exec /usr/sbin/rabbitmq-server
