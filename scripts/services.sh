#!/usr/bin/env bash
# services.sh: make sure the services ferry's tests talk to are up and set up.
#
#   bash scripts/services.sh [NAME...]   NAME: postgres mariadb redis rabbitmq nats kcat
#
# With no NAME it ensures all five services (kcat, a command-line Kafka client
# the tests use as an independent check, only when named). For each NAME it
# checks the service on loopback, installs the Debian package if the service
# is absent, starts it if it is down, configures what the tests need, and
# prints one line: "NAME: up (already running)", "NAME: started", "NAME:
# configured and restarted". It exits non-zero with a message saying what to
# do when a service cannot be had: tests must fail loudly, never skip.
#
# What the tests expect (the defaults of internal/testdb):
#   postgres  127.0.0.1:5432, user postgres with trust auth, database test, wal_level=logical
#   mariadb   127.0.0.1:3306, root with no password, database test, row-based binlog
#   redis     127.0.0.1:6379
#   rabbitmq  127.0.0.1:5672, guest/guest (the package's default user)
#   nats      127.0.0.1:4222 with JetStream
#
# When everything is already fine it only probes, in a few milliseconds per
# service. Restarts (for wal_level and the binlog) happen once per machine.
set -euo pipefail

readonly ALL_SERVICES=(postgres mariadb redis rabbitmq nats)
readonly PG_PORT=5432 MY_PORT=3306 REDIS_PORT=6379 AMQP_PORT=5672 NATS_PORT=4222

# Change data capture reads MariaDB's binary log in row format with full row
# images; Debian's MariaDB has the binlog off. log_bin is relative to datadir.
# The test suites write a lot (1.4 GB of binlog in 12 minutes, seen): keep
# three hours of it, in files small enough to be purged, or the disk fills.
readonly MY_CNF_FILE=/etc/mysql/mariadb.conf.d/99-ferry-cdc.cnf
readonly MY_CNF="# Written by ferry's scripts/services.sh: change data capture reads the
# row-based binary log. A test machine keeps three hours of it.
[mysqld]
log_bin = mysql-bin
binlog_format = ROW
binlog_row_image = FULL
server_id = 1
binlog_expire_logs_seconds = 10800
max_binlog_size = 128M"

SELF=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)/$(basename "${BASH_SOURCE[0]}")
readonly SELF
export DEBIAN_FRONTEND=noninteractive

# systemd manages the services on a booted Debian machine: use it there, so
# that it does not fight a server started behind its back. Containers, CI
# sandboxes and this project's machines have no systemd: start the daemons
# directly, with the commands the machines' docs give.
if [[ -d /run/systemd/system ]]; then SYSTEMD=1; else SYSTEMD=0; fi

# --- reporting ---------------------------------------------------------------

# Per-service outcome, reset by begin and printed by report.
SVC='' STATE='' NOTES=()

begin() { SVC=$1 STATE=up NOTES=(); }
note() { NOTES+=("$*"); }
started() { STATE=started; }
restarted() { STATE=restarted; }

report() {
  local line
  case $STATE in
    up) line="up (already running${NOTES[*]:+; $(join "${NOTES[@]}")})" ;;
    started) line="started${NOTES[*]:+ ($(join "${NOTES[@]}"))}" ;;
    restarted) line="configured and restarted${NOTES[*]:+ ($(join "${NOTES[@]}"))}" ;;
  esac
  echo "$SVC: $line"
}

join() { local IFS=';'; local s="$*"; echo "${s//;/; }"; }

# fail MESSAGE [HINT...]: name the service, say what is wrong and what to do.
fail() {
  {
    echo "services.sh: ${SVC:-setup}: FAILED: $1"
    shift
    local hint
    for hint; do echo "  ${hint//$'\n'/$'\n'  }"; done
  } >&2
  exit 1
}

# need_root WHAT: changing the machine needs root; say the exact command.
need_root() {
  [[ $EUID -eq 0 ]] ||
    fail "$1 needs root" "run: sudo bash $SELF $SVC"
}

# --- small probes ------------------------------------------------------------

have() { command -v "$1" >/dev/null 2>&1; }

# port_open PORT: something accepts TCP connections on 127.0.0.1:PORT.
# bash's /dev/tcp makes this a connect() without starting a program.
port_open() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }

# wait_for SECONDS COMMAND...: retry COMMAND until it succeeds or time is up.
wait_for() {
  local deadline=$((SECONDS + $1))
  shift
  until "$@"; do
    ((SECONDS < deadline)) || return 1
    sleep 0.2
  done
}

# close_fds: close every descriptor above stderr (in a subshell about to exec).
close_fds() {
  local fd
  for fd in /proc/self/fd/*; do
    fd=${fd##*/}
    if ((fd > 2)); then eval "exec $fd>&-" 2>/dev/null || true; fi
  done
}

# run_quiet LOG CMD...: run CMD with its output appended to LOG, holding none
# of our descriptors. A daemon it starts must not inherit them: one holding
# the write end of CI's output pipe would keep CI waiting for end-of-file.
run_quiet() {
  local log=$1
  shift
  (
    close_fds
    exec "$@" </dev/null >>"$log" 2>&1
  )
}

# run_detached CMD...: run_quiet, showing the output only if CMD fails.
run_detached() {
  local out rc=0
  out=$(mktemp)
  run_quiet "$out" "$@" || rc=$?
  ((rc == 0)) || sed 's/^/  | /' "$out" >&2
  rm -f "$out"
  return $rc
}

# --- packages ----------------------------------------------------------------

# packages_for NAME: the Debian packages NAME lacks. A server package only
# when the service is also down: a server run elsewhere (a container with the
# port forwarded) is fine, but the checks below still need the clients.
packages_for() {
  case $1 in
    postgres)
      have psql && have pg_isready || echo postgresql-client
      compgen -G '/usr/lib/postgresql/*/bin/postgres' >/dev/null || port_open $PG_PORT || echo postgresql
      ;;
    mariadb)
      have mariadb || echo mariadb-client
      [[ -x /usr/sbin/mariadbd ]] || port_open $MY_PORT || echo mariadb-server
      ;;
    redis) have redis-server || port_open $REDIS_PORT || echo redis-server ;;
    rabbitmq) have rabbitmq-server || port_open $AMQP_PORT || echo rabbitmq-server ;;
    nats) have nats-server || port_open $NATS_PORT || echo nats-server ;;
    kcat) have kcat || echo kcat ;;
  esac
  return 0
}

# install_packages PKG...: one apt-get update, one apt-get install.
install_packages() {
  (($#)) || return 0
  SVC=packages
  have apt-get ||
    fail "missing: $*" "this script installs packages only with apt-get (Debian, Ubuntu); install them yourself"
  [[ $EUID -eq 0 ]] ||
    fail "missing Debian packages: $*" \
      "run: sudo apt-get update && sudo apt-get install -y $*" \
      "then run this script again"
  local log=/var/log/ferry-apt.log
  echo "packages: installing $* (log: $log)"
  # Package scripts may start daemons: keep them off our output (run_quiet).
  run_quiet "$log" apt-get -q -o DPkg::Lock::Timeout=300 update ||
    { tail -n 20 "$log" | sed 's/^/  | /' >&2; fail "apt-get update failed" "see $log"; }
  run_quiet "$log" apt-get -q -y -o DPkg::Lock::Timeout=300 install "$@" ||
    { tail -n 30 "$log" | sed 's/^/  | /' >&2; fail "apt-get install -y $* failed" "see $log"; }
}

# --- PostgreSQL --------------------------------------------------------------

# Debian's psql is a Perl wrapper that picks a version: call a real binary
# when there is one, which saves some 30 ms a call.
pg_bin() {
  local bins=(/usr/lib/postgresql/*/bin/"$1")
  if [[ -x ${bins[-1]} ]]; then echo "${bins[-1]}"; else echo "$1"; fi
}

# LC_ALL=C: the error texts matched below are the English ones.
pg_sql() {
  LC_ALL=C "$PSQL" -X -w -q -h 127.0.0.1 -p $PG_PORT -U postgres -d postgres -v ON_ERROR_STOP=1 -At "$@"
}

pg_ready() { port_open $PG_PORT && "$(pg_bin pg_isready)" -q -h 127.0.0.1 -p $PG_PORT -t 1; }

# pg_cluster: "VERSION NAME" of the local cluster on our port (Debian's
# postgresql-common can hold several).
pg_cluster() {
  have pg_lsclusters || fail "pg_lsclusters not found" "install Debian's postgresql package: apt-get install -y postgresql"
  local c
  c=$(pg_lsclusters -h | awk -v p=$PG_PORT '$3 == p { print $1, $2; exit }')
  [[ -n $c ]] || fail "no PostgreSQL cluster is configured for port $PG_PORT; pg_lsclusters says:" \
    "$(pg_lsclusters 2>&1)" \
    "move one to port $PG_PORT: sudo pg_conftool VERSION NAME set port $PG_PORT" \
    "or create one: sudo pg_createcluster --port $PG_PORT VERSION NAME" \
    "(or point the tests at another server with FERRY_TEST_POSTGRES)"
  echo "$c"
}

# pg_ctl ACTION: start/restart/reload the cluster, through systemd if it runs.
pg_ctl() {
  local c redirect=()
  c=$(pg_cluster) || exit 1
  ((SYSTEMD)) || redirect=(--skip-systemctl-redirect)
  # shellcheck disable=SC2086 # $c is "VERSION NAME"
  run_detached pg_ctlcluster "${redirect[@]}" $c "$1" && return 0
  # A start that finds the server already up (still opening its port) is fine.
  [[ $1 == start && $(pg_lsclusters -h | awk -v p=$PG_PORT '$3 == p { print $4 }') == online ]] && return 0
  fail "pg_ctlcluster $c $1 failed" "look at /var/log/postgresql/postgresql-${c/ /-}.log"
}

pg_wait() {
  wait_for 60 pg_ready ||
    fail "not accepting connections on 127.0.0.1:$PG_PORT after 60 s" \
      "look at /var/log/postgresql/ and pg_lsclusters"
}

# pg_probe: sets PG_WAL and PG_HAS_TEST, or PG_ERR on failure.
pg_probe() {
  local out
  PG_ERR=''
  if out=$(pg_sql -c "SELECT current_setting('wal_level'), EXISTS (SELECT FROM pg_database WHERE datname = 'test')" 2>&1); then
    IFS='|' read -r PG_WAL PG_HAS_TEST <<<"$out"
    return 0
  fi
  PG_ERR=$out
  return 1
}

# A fresh Debian install asks for a password on 127.0.0.1 (scram-sha-256).
# The tests connect as postgres without one: trust that user on loopback
# only, in lines placed first because pg_hba.conf's first match wins.
pg_trust_loopback() {
  need_root "letting user postgres in over 127.0.0.1 without a password (pg_hba.conf)"
  local c hba
  c=$(pg_cluster) || exit 1
  hba=/etc/postgresql/${c/ //}/pg_hba.conf
  [[ -f $hba ]] || fail "$hba not found" "add 'host all postgres 127.0.0.1/32 trust' to your pg_hba.conf"
  if ! grep -q '^host[[:space:]]\+all[[:space:]]\+postgres[[:space:]]\+127\.0\.0\.1/32[[:space:]]\+trust' "$hba"; then
    sed -i '1i # Added by ferry scripts/services.sh: the tests connect as postgres over loopback without a password.\nhost    all    postgres    127.0.0.1/32    trust\nhost    all    postgres    ::1/128         trust' "$hba"
  fi
  pg_ctl reload
  note "trusted user postgres on 127.0.0.1 in $hba"
}

ensure_postgres() {
  begin postgres
  PSQL=$(pg_bin psql)
  if ! port_open $PG_PORT; then
    need_root "starting PostgreSQL"
    pg_ctl start
    started
    pg_wait
  fi
  if ! pg_probe; then
    case $PG_ERR in
      *"starting up"*|*"shutting down"*|*"not yet accepting"*)
        pg_wait
        pg_probe || fail "cannot connect as postgres to 127.0.0.1:$PG_PORT: $PG_ERR" ;;
      *password*|*pg_hba.conf*|*authentication*)
        pg_trust_loopback
        pg_probe || fail "cannot connect as postgres to 127.0.0.1:$PG_PORT: $PG_ERR" ;;
      *) fail "cannot connect as postgres to 127.0.0.1:$PG_PORT: $PG_ERR" ;;
    esac
  fi
  if [[ $PG_HAS_TEST != t ]]; then
    pg_sql -c 'CREATE DATABASE test' || fail "could not create database test"
    note "created database test"
  fi
  if [[ $PG_WAL != logical ]]; then
    # wal_level takes effect only at server start: a one-time restart.
    need_root "setting wal_level = logical (restarts PostgreSQL)"
    local was=$PG_WAL
    pg_sql -c 'ALTER SYSTEM SET wal_level = logical' || fail "ALTER SYSTEM SET wal_level = logical failed"
    pg_ctl restart
    pg_wait
    pg_probe || fail "cannot connect after the restart: $PG_ERR"
    [[ $PG_WAL == logical ]] || fail "wal_level is still '$PG_WAL' after a restart" \
      "check 'wal_level' in /etc/postgresql/*/main/postgresql.conf and postgresql.auto.conf"
    note "wal_level $was -> logical" && restarted
  fi
  report
}

# --- MariaDB -----------------------------------------------------------------

my_sql() {
  mariadb --protocol=TCP -h 127.0.0.1 -P $MY_PORT -u root --connect-timeout=5 -N -B "$@"
}

# my_probe: sets MY_STATE ("log_bin format image server_id has_test"), or
# MY_ERR on failure.
my_probe() {
  local out
  MY_ERR=''
  if out=$(my_sql -e "SELECT @@log_bin, @@binlog_format, @@binlog_row_image, @@server_id,
      (SELECT COUNT(*) FROM information_schema.schemata WHERE schema_name = 'test')" 2>&1); then
    MY_STATE=${out//$'\t'/ }
    return 0
  fi
  MY_ERR=$out
  return 1
}

# What mariadbd prints when we start it (Debian's own config logs nowhere).
readonly MY_START_LOG=/var/log/ferry-mariadbd.log

my_start() {
  need_root "starting MariaDB"
  if ((SYSTEMD)); then
    systemctl start mariadb || fail "systemctl start mariadb failed" "see: journalctl -u mariadb"
  else
    # mariadbd does not create its socket directory; /run is empty after a
    # boot. Debian's config leaves 'user' to systemd: without --user=mysql,
    # mariadbd started by root refuses to run.
    install -d -o mysql -g mysql -m 755 /run/mysqld
    run_detached start-stop-daemon --start --oknodo --background --output "$MY_START_LOG" \
      --exec /usr/sbin/mariadbd -- --user=mysql ||
      fail "start-stop-daemon could not start /usr/sbin/mariadbd"
  fi
  my_wait
}

my_restart() {
  need_root "restarting MariaDB"
  if ((SYSTEMD)); then
    systemctl restart mariadb || fail "systemctl restart mariadb failed" "see: journalctl -u mariadb"
    my_wait
  else
    # TERM is a clean shutdown; give InnoDB time to flush before giving up.
    start-stop-daemon --stop --oknodo --exec /usr/sbin/mariadbd --retry TERM/120 ||
      fail "mariadbd did not stop within 120 s"
    my_start
  fi
}

# my_alive: a mariadbd runs (always true under systemd, which waits itself).
my_alive() { ((SYSTEMD)) || start-stop-daemon --status --exec /usr/sbin/mariadbd; }

# Stop waiting once mariadbd has died: it will not open its port. (It gets
# a few seconds first: start-stop-daemon returns before mariadbd runs.)
my_up_or_dead() { port_open $MY_PORT || { ((SECONDS - MY_WAIT_START >= 3)) && ! my_alive; }; }

my_wait() {
  MY_WAIT_START=$SECONDS
  wait_for 60 my_up_or_dead && port_open $MY_PORT && return 0
  [[ -s $MY_START_LOG ]] && tail -n 15 "$MY_START_LOG" | sed 's/^/  | /' >&2
  fail "not listening on 127.0.0.1:$MY_PORT ($(my_alive && echo 'after 60 s' || echo 'mariadbd exited'))" \
    "look at $MY_START_LOG, /var/log/mysql/error.log or journalctl -u mariadb"
}

# A fresh Debian MariaDB lets root in only through unix_socket auth. Log in
# that way (we are root) and allow root with an empty password too, from
# localhost and from the loopback addresses (which one matches depends on
# skip-name-resolve).
my_open_root() {
  need_root "letting MariaDB's root in over TCP without a password"
  mariadb --protocol=SOCKET -u root <<'SQL' || fail "could not log in as root over the unix socket to fix root's login" "MariaDB's root has a password here: give the tests a user instead, e.g. FERRY_TEST_MYSQL='user:pass@tcp(127.0.0.1:3306)/test'"
ALTER USER 'root'@'localhost' IDENTIFIED VIA unix_socket OR mysql_native_password USING PASSWORD('');
CREATE USER IF NOT EXISTS 'root'@'127.0.0.1' IDENTIFIED BY '';
GRANT ALL PRIVILEGES ON *.* TO 'root'@'127.0.0.1' WITH GRANT OPTION;
CREATE USER IF NOT EXISTS 'root'@'::1' IDENTIFIED BY '';
GRANT ALL PRIVILEGES ON *.* TO 'root'@'::1' WITH GRANT OPTION;
SQL
  note "root may log in over TCP without a password"
}

# my_write_cnf: put the binlog settings in place; true if the file changed.
my_write_cnf() {
  [[ -f $MY_CNF_FILE && "$(<"$MY_CNF_FILE")" == "$MY_CNF" ]] && return 1
  need_root "writing $MY_CNF_FILE"
  mkdir -p "${MY_CNF_FILE%/*}"
  printf '%s\n' "$MY_CNF" >"$MY_CNF_FILE"
  note "wrote $MY_CNF_FILE"
}

# Debian's my.cnf includes mariadb.conf.d/, but a hand-written one (as on
# this project's machines) may not: then include it, or the file is ignored.
my_reads_cnf() {
  local defaults
  defaults=$(my_print_defaults --mysqld) && grep -qx -- '--binlog_format=ROW' <<<"$defaults"
}

my_include_cnf_dir() {
  my_reads_cnf && return 0
  need_root "including ${MY_CNF_FILE%/*}/ from /etc/mysql/my.cnf"
  printf '\n# Added by ferry scripts/services.sh: read the drop-in files.\n!includedir %s/\n' "${MY_CNF_FILE%/*}" >>/etc/mysql/my.cnf
  note "included ${MY_CNF_FILE%/*}/ from /etc/mysql/my.cnf"
  my_reads_cnf ||
    fail "MariaDB does not read $MY_CNF_FILE" "see which files it reads: my_print_defaults --mysqld"
}

ensure_mariadb() {
  begin mariadb
  # Probe with SQL first: MariaDB logs a warning for every bare TCP probe.
  if ! my_probe && ! port_open $MY_PORT; then
    my_start
    started
    my_probe || true
  fi
  if [[ -n $MY_ERR ]]; then
    case $MY_ERR in
      *"Access denied"*) my_open_root; my_probe || fail "cannot log in as root over TCP: $MY_ERR" ;;
      *) fail "cannot connect as root to 127.0.0.1:$MY_PORT: $MY_ERR" ;;
    esac
  fi
  if [[ ${MY_STATE##* } == 0 ]]; then
    my_sql -e 'CREATE DATABASE IF NOT EXISTS test' || fail "could not create database test"
    note "created database test"
  fi
  local want='1 ROW FULL 1'
  if [[ ${MY_STATE% *} == "$want" ]]; then
    # Already right. As root, make sure our file is there too (it keeps the
    # settings across restarts and bounds the binlog); these two settings
    # change without a restart.
    if ((EUID == 0)) && my_write_cnf; then
      my_sql -e 'SET GLOBAL binlog_expire_logs_seconds = 10800, GLOBAL max_binlog_size = 134217728' ||
        fail "could not set the binlog's size and expiry"
    fi
  else
    # log_bin is read only at start-up: a one-time restart.
    my_write_cnf || true
    my_include_cnf_dir
    my_restart
    my_probe || fail "cannot connect after the restart: $MY_ERR"
    [[ ${MY_STATE% *} == "$want" ]] ||
      fail "after a restart log_bin, binlog_format, binlog_row_image, server_id are '${MY_STATE% *}', not '$want'" \
        "see which settings MariaDB reads: my_print_defaults --mysqld"
    note "row-based binlog on" && restarted
  fi
  report
}

# --- Redis -------------------------------------------------------------------

# redis_ping: Redis answers PING with +PONG (no client program needed).
redis_ping() {
  local reply
  reply=$( (exec 3<>"/dev/tcp/127.0.0.1/$REDIS_PORT" && printf 'PING\r\n' >&3 && read -r -t 2 line <&3 && echo "$line") 2>/dev/null) || return 1
  [[ $reply == +PONG* ]] && return 0
  REDIS_REPLY=$reply
  return 1
}

ensure_redis() {
  begin redis
  REDIS_REPLY=''
  if ! port_open $REDIS_PORT; then
    need_root "starting Redis"
    if ((SYSTEMD)); then
      systemctl start redis-server || fail "systemctl start redis-server failed" "see: journalctl -u redis-server"
    else
      # The tests want a scratch Redis: nothing kept on disk.
      install -d /var/lib/redis /var/log/redis
      run_detached redis-server --daemonize yes --bind 127.0.0.1 -::1 --port $REDIS_PORT --save "" --appendonly no \
        --dir /var/lib/redis --logfile /var/log/redis/ci.log ||
        fail "redis-server did not start" "look at /var/log/redis/ci.log"
    fi
    started
  fi
  # Wait only for a server we started; one that answers wrongly will not change.
  redis_ping || { [[ $STATE == started ]] && wait_for 15 redis_ping; } ||
    fail "no PONG from 127.0.0.1:$REDIS_PORT${REDIS_REPLY:+ (it said: ${REDIS_REPLY%$'\r'})}" \
      "look at /var/log/redis/; the tests expect Redis without a password"
  report
}

# --- RabbitMQ ----------------------------------------------------------------

ensure_rabbitmq() {
  begin rabbitmq
  if ! port_open $AMQP_PORT; then
    need_root "starting RabbitMQ"
    if ((SYSTEMD)); then
      systemctl start rabbitmq-server || fail "systemctl start rabbitmq-server failed" "see: journalctl -u rabbitmq-server"
    else
      run_detached rabbitmq-server -detached || fail "rabbitmq-server -detached failed" "look at /var/log/rabbitmq/"
    fi
    started
  fi
  # The Erlang node takes a while to boot; it opens 5672 when it is ready.
  wait_for 120 port_open $AMQP_PORT ||
    fail "not listening on 127.0.0.1:$AMQP_PORT after 120 s" "look at /var/log/rabbitmq/"
  report
}

# --- NATS --------------------------------------------------------------------

# nats_info: the INFO line a NATS server sends on connect.
nats_info() {
  (exec 3<>"/dev/tcp/127.0.0.1/$NATS_PORT" && read -r -t 2 line <&3 && echo "$line") 2>/dev/null
}

nats_has_jetstream() { [[ $(nats_info) == *'"jetstream":true'* ]]; }

# Debian's nats-server unit runs /etc/nats-server.conf, which has no
# JetStream: turn it on there, with a store the unit's user can write.
nats_enable_jetstream_systemd() {
  need_root "enabling JetStream in /etc/nats-server.conf"
  grep -q '^jetstream' /etc/nats-server.conf 2>/dev/null ||
    printf '\n# Added by ferry scripts/services.sh: the tests need JetStream.\njetstream {\n  store_dir: "/var/lib/nats-server"\n}\n' >>/etc/nats-server.conf
  install -d -o nats -g nats /var/lib/nats-server
  systemctl restart nats-server || fail "systemctl restart nats-server failed" "see: journalctl -u nats-server"
  note "enabled JetStream in /etc/nats-server.conf"
}

ensure_nats() {
  begin nats
  if ! port_open $NATS_PORT; then
    need_root "starting NATS"
    if ((SYSTEMD)); then
      systemctl start nats-server || fail "systemctl start nats-server failed" "see: journalctl -u nats-server"
    else
      install -d /var/lib/nats-server
      run_detached start-stop-daemon --start --oknodo --background --exec /usr/sbin/nats-server -- \
        -a 127.0.0.1 -p $NATS_PORT -js -sd /var/lib/nats-server -l /var/log/nats-server.log ||
        fail "start-stop-daemon could not start nats-server"
    fi
    started
  fi
  wait_for 15 port_open $NATS_PORT ||
    fail "not listening on 127.0.0.1:$NATS_PORT after 15 s" "look at /var/log/nats-server.log (or journalctl -u nats-server)"
  if ! nats_has_jetstream; then
    if ((SYSTEMD)) && systemctl -q is-active nats-server; then
      nats_enable_jetstream_systemd
      [[ $STATE == started ]] || restarted
      wait_for 15 nats_has_jetstream || fail "JetStream is still off after a restart" "see: journalctl -u nats-server"
    else
      fail "the NATS server on 127.0.0.1:$NATS_PORT runs without JetStream" \
        "stop it and run this script again, or start it with -js"
    fi
  fi
  report
}

# --- kcat (a tool, not a service) --------------------------------------------

ensure_kcat() {
  begin kcat
  have kcat || fail "kcat is not installed" "run: sudo apt-get install -y kcat"
  echo "kcat: installed"
}

# --- main --------------------------------------------------------------------

# lock NAME...: two test runs at once must not both restart a server, so the
# script runs again under flock. flock -o keeps the lock's descriptor out of
# the script: a daemon it started would otherwise hold the lock forever.
lock() {
  if [[ -n ${FERRY_SERVICES_LOCKED:-} ]]; then
    unset FERRY_SERVICES_LOCKED
    return 0
  fi
  have flock || return 0
  local rc=0
  FERRY_SERVICES_LOCKED=1 flock -o -w 600 -E 75 "${TMPDIR:-/tmp}/ferry-services-$EUID.lock" bash "$SELF" "$@" || rc=$?
  ((rc != 75)) || fail "another services.sh held the lock for 10 minutes" "is one stuck? see: ps aux | grep services.sh"
  exit $rc
}

main() {
  local names=("$@") name pkgs=()
  ((${#names[@]})) || names=("${ALL_SERVICES[@]}")
  for name in "${names[@]}"; do
    case $name in
      postgres|mariadb|redis|rabbitmq|nats|kcat) ;;
      *) fail "unknown service '$name'" "known: ${ALL_SERVICES[*]} kcat" ;;
    esac
  done

  lock "${names[@]}"

  for name in "${names[@]}"; do
    # shellcheck disable=SC2207 # package names have no spaces
    pkgs+=($(packages_for "$name"))
  done
  install_packages ${pkgs[@]+"${pkgs[@]}"}

  for name in "${names[@]}"; do
    "ensure_$name"
  done
}

main "$@"
