#!/usr/bin/env bash
# Start the local RabbitMQ, PostgreSQL and Redis the suite needs, if they are installed and stopped.
# If one is not installed, say so and fail: the suite never skips for a missing service.
set -u
up() { (exec 3<>/dev/tcp/127.0.0.1/"$1") 2>/dev/null; }
wait_port() { for _ in $(seq 1 60); do up "$1" && return 0; sleep 1; done; return 1; }

if ! up 5432; then
  if ls /etc/postgresql >/dev/null 2>&1 && command -v pg_ctlcluster >/dev/null; then
    echo "starting PostgreSQL"; pg_ctlcluster --skip-systemctl-redirect "$(ls /etc/postgresql | head -1)" main start
    wait_port 5432 || { echo "PostgreSQL did not come up on 127.0.0.1:5432" >&2; exit 1; }
  else
    echo "PostgreSQL is not installed (apt-get install postgresql); the suite needs it on 127.0.0.1:5432" >&2; exit 1
  fi
fi
if ! up 5672; then
  if command -v rabbitmq-server >/dev/null; then
    echo "starting RabbitMQ"; rabbitmq-server -detached
    wait_port 5672 || { echo "RabbitMQ did not come up on 127.0.0.1:5672" >&2; exit 1; }
  else
    echo "RabbitMQ is not installed (apt-get install rabbitmq-server); the suite needs it on 127.0.0.1:5672" >&2; exit 1
  fi
fi
if ! up 6379; then
  if command -v redis-server >/dev/null; then
    echo "starting Redis"; redis-server --daemonize yes --bind 127.0.0.1 --port 6379 --save "" --appendonly no
    wait_port 6379 || { echo "Redis did not come up on 127.0.0.1:6379" >&2; exit 1; }
  else
    echo "Redis is not installed (apt-get install redis-server); the suite needs it on 127.0.0.1:6379" >&2; exit 1
  fi
fi
