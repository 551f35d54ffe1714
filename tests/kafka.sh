#!/usr/bin/env bash
# Apache Kafka for the tests and benchmarks, from Maven Central (no Docker).
#
#   tests/kafka.sh fetch          download the broker's jars once; print their directory
#   tests/kafka.sh start DIR PORT format DIR and start a single KRaft broker
#                                 (broker + controller) on 127.0.0.1:PORT (controller
#                                 on PORT+1); prints its pid once it accepts clients
#   tests/kafka.sh stop DIR       stop the broker started in DIR
#
# The jars are cached outside the clone ($AUDITLAKE_CACHE, default
# ~/.cache/auditlake), so later runs start at once.
set -euo pipefail
KAFKA_VERSION="${AUDITLAKE_KAFKA_VERSION:-4.1.1}"
CACHE="${AUDITLAKE_CACHE:-$HOME/.cache/auditlake}"
LIBS="$CACHE/kafka-$KAFKA_VERSION/libs"

fetch() {
  if [ -f "$LIBS/.complete" ]; then echo "$LIBS"; return; fi
  # Tests start brokers in parallel: one fetch at a time.
  mkdir -p "$CACHE"
  exec 9>"$CACHE/kafka-fetch.lock"
  flock 9
  if [ -f "$LIBS/.complete" ]; then echo "$LIBS"; return; fi
  command -v java >/dev/null || { echo "tests/kafka.sh: java is not installed (Kafka needs Java 17+)" >&2; exit 1; }
  command -v mvn >/dev/null || { echo "tests/kafka.sh: mvn is not installed (it fetches Kafka's jars)" >&2; exit 1; }
  local work; work="$(mktemp -d)"
  cat > "$work/pom.xml" <<POM
<project xmlns="http://maven.apache.org/POM/4.0.0">
  <modelVersion>4.0.0</modelVersion>
  <groupId>dev.auditlake</groupId><artifactId>kafka-broker</artifactId><version>1</version>
  <packaging>pom</packaging>
  <dependencies>
    <dependency><groupId>org.apache.kafka</groupId><artifactId>kafka_2.13</artifactId><version>$KAFKA_VERSION</version></dependency>
  </dependencies>
</project>
POM
  echo "tests/kafka.sh: fetching Apache Kafka $KAFKA_VERSION from Maven Central into $LIBS" >&2
  rm -rf "$LIBS"; mkdir -p "$LIBS"
  (cd "$work" && mvn -q -B dependency:copy-dependencies -DoutputDirectory="$LIBS" -DincludeScope=runtime >&2)
  rm -rf "$work"
  touch "$LIBS/.complete"
  echo "$LIBS"
}

start() {
  local dir="$1" port="$2" libs
  libs="$(fetch)"
  mkdir -p "$dir"
  if [ ! -f "$dir/server.properties" ]; then
    cat > "$dir/server.properties" <<PROPS
process.roles=broker,controller
node.id=1
controller.quorum.voters=1@127.0.0.1:$((port + 1))
listeners=PLAINTEXT://127.0.0.1:$port,CONTROLLER://127.0.0.1:$((port + 1)),SASL_PLAINTEXT://127.0.0.1:$((port + 2))
advertised.listeners=PLAINTEXT://127.0.0.1:$port,SASL_PLAINTEXT://127.0.0.1:$((port + 2))
controller.listener.names=CONTROLLER
listener.security.protocol.map=PLAINTEXT:PLAINTEXT,CONTROLLER:PLAINTEXT,SASL_PLAINTEXT:SASL_PLAINTEXT
sasl.enabled.mechanisms=PLAIN
# Azure Event Hubs' Kafka endpoint takes SASL PLAIN with the user name
# \$ConnectionString and the connection string as the password; this listener
# accepts exactly that (over plaintext: Event Hubs adds TLS, SASL_SSL).
listener.name.sasl_plaintext.plain.sasl.jaas.config=org.apache.kafka.common.security.plain.PlainLoginModule required user_\$ConnectionString="Endpoint=sb://auditlake-test.servicebus.windows.net/;SharedAccessKeyName=listen;SharedAccessKey=secret";
inter.broker.listener.name=PLAINTEXT
log.dirs=$dir/data
num.partitions=4
offsets.topic.replication.factor=1
offsets.topic.num.partitions=4
transaction.state.log.replication.factor=1
transaction.state.log.min.isr=1
group.initial.rebalance.delay.ms=0
auto.create.topics.enable=true
PROPS
    # A cluster id is 16 random bytes in URL-safe base64. The first byte's
    # top six bits are cleared so that the id starts with A-D: one starting
    # with '-' (1 in 64 otherwise) is taken by the tool for an option and
    # the format fails.
    local id
    id="$(python3 -c 'import os,base64;b=bytearray(os.urandom(16));b[0]&=3;print(base64.urlsafe_b64encode(bytes(b)).decode().rstrip("="))')"
    if ! java -cp "$libs/*" kafka.tools.StorageTool format --ignore-formatted -t "$id" \
      -c "$dir/server.properties" > "$dir/format.log" 2>&1; then
      echo "tests/kafka.sh: formatting $dir (cluster id $id) failed:" >&2
      tail -20 "$dir/format.log" >&2
      exit 1
    fi
  fi
  # Heap kept small: the tests run beside it on a 2-core machine.
  nohup java -Xms256m -Xmx768m -XX:+UseG1GC -cp "$libs/*" kafka.Kafka "$dir/server.properties" \
    >> "$dir/broker.log" 2>&1 &
  local pid=$!
  echo "$pid" > "$dir/broker.pid"
  for _ in $(seq 1 120); do
    if ! kill -0 "$pid" 2>/dev/null; then
      echo "tests/kafka.sh: broker exited; see $dir/broker.log" >&2; tail -20 "$dir/broker.log" >&2; exit 1
    fi
    # The broker logs nothing (no SLF4J binding): its client port
    # accepting connections is the sign; clients retry until it serves.
    if (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; then
      echo "$pid"; return
    fi
    sleep 0.5
  done
  echo "tests/kafka.sh: broker did not start in 60 s; see $dir/broker.log" >&2
  kill "$pid" 2>/dev/null || true
  exit 1
}

stop() {
  local dir="$1"
  [ -f "$dir/broker.pid" ] || return 0
  local pid; pid="$(cat "$dir/broker.pid")"
  kill "$pid" 2>/dev/null || true
  for _ in $(seq 1 60); do kill -0 "$pid" 2>/dev/null || { rm -f "$dir/broker.pid"; return 0; }; sleep 0.5; done
  kill -9 "$pid" 2>/dev/null || true
  rm -f "$dir/broker.pid"
}

case "${1:-}" in
  fetch) fetch ;;
  start) start "$2" "$3" ;;
  stop) stop "$2" ;;
  *) echo "usage: tests/kafka.sh fetch | start DIR PORT | stop DIR" >&2; exit 2 ;;
esac
