# shellcheck shell=bash
# Apache Kafka, single node in KRaft mode, run from Maven Central jars (no tarball, no Docker).

KAFKA_SRC=$COMPONENTS_DIR/kafka
KAFKA_RUN=$RUN_DIR/kafka
KAFKA_PORT=${CHARGENET_KAFKA_PORT:-9092}
KAFKA_CONTROLLER_PORT=${CHARGENET_KAFKA_CONTROLLER_PORT:-9093}
KAFKA_SASL_PORT=${CHARGENET_KAFKA_SASL_PORT:-9094}
# The SASL listener's one user: a test credential, never a secret.
KAFKA_SASL_USERNAME=chargenet-test
KAFKA_SASL_PASSWORD=chargenet-test-password
KAFKA_PIDFILE=$KAFKA_RUN/kafka.pid
KAFKA_LOG=$KAFKA_RUN/logs/server.log
KAFKA_STDOUT=$KAFKA_RUN/logs/stdout.log
KAFKA_CONFIG=$KAFKA_RUN/server.properties
KAFKA_TLS=$KAFKA_RUN/tls
# The rendered config path is unique to this run dir, so it identifies our JVM among others.
KAFKA_MARKER="kafka.Kafka $KAFKA_CONFIG"
KAFKA_HEAP=${CHARGENET_KAFKA_HEAP:--Xms256m -Xmx512m}

# The pom's Kafka version, for messages and the cache path.
kafka_version() {
    sed -n 's:.*<kafka.version>\(.*\)</kafka.version>.*:\1:p' "$KAFKA_SRC/pom.xml"
}

# One libs dir per pom content: editing the pom (a version bump) resolves a fresh set.
kafka_libs_dir() {
    printf '%s/kafka/%s-%s/libs\n' "$CACHE_DIR" "$(kafka_version)" "$(sha12 "$KAFKA_SRC/pom.xml")"
}

KAFKA_JAVA=${JAVA_HOME:+$JAVA_HOME/bin/}java
# Fresh class-data-sharing archive a run writes when its JVM exits (see kafka_cds_opts).
KAFKA_NEW_CDS=$KAFKA_RUN/kafka-classes.jsa

# A dynamic CDS archive only fits the exact JVM build and classpath it was dumped from.
kafka_cds_archive() {
    local jvm_id
    jvm_id=$("$KAFKA_JAVA" -version 2>&1 | sha256sum | cut -c1-12)
    printf '%s/classes-%s.jsa\n' "$(dirname "$(kafka_libs_dir)")" "$jvm_id"
}

# A truncated archive makes the JVM abort even with -Xshare:auto, so each one is tried first.
kafka_cds_ok() { "$KAFKA_JAVA" "-XX:SharedArchiveFile=$1" -cp "$(kafka_libs_dir)/*" -version >/dev/null 2>&1; }

# Loading Kafka's classes from a CDS archive cut the broker's start-up CPU by about a third in
# measurements here, which matters on two shared cores. The first run dumps the archive when
# its JVM exits (on `down`); later runs map it.
# CHARGENET_KAFKA_CDS=0 turns it off.
kafka_cds_opts() {
    local archive
    if [[ ${CHARGENET_KAFKA_CDS:-1} == 0 ]]; then
        printf '%s\n' "-Xshare:auto"
        return 0
    fi
    archive=$(kafka_cds_archive)
    if [[ -s $archive ]] && ! kafka_cds_ok "$archive"; then
        log "kafka: discarding unusable class-data archive $archive"
        rm -f "$archive"
    fi
    if [[ -s $archive ]]; then
        printf '%s\n' "-XX:SharedArchiveFile=$archive"
    else
        printf '%s\n' "-XX:ArchiveClassesAtExit=$KAFKA_NEW_CDS"
    fi
}

# Moves an archive the last JVM dumped into the cache (atomically: other clones may share it).
kafka_keep_cds() {
    local archive
    if [[ -s $KAFKA_NEW_CDS && ! -s $(kafka_cds_archive) ]] && kafka_cds_ok "$KAFKA_NEW_CDS"; then
        archive=$(kafka_cds_archive)
        cp "$KAFKA_NEW_CDS" "$archive.tmp.$$" && mv "$archive.tmp.$$" "$archive"
        log "kafka: saved a class-data archive for faster starts: $archive"
    fi
    rm -f "$KAFKA_NEW_CDS"
}

kafka_install() {
    local libs stage
    libs=$(kafka_libs_dir)
    if [[ -f $libs/.complete ]]; then
        log "kafka: $(kafka_version) jars cached in $libs"
        return 0
    fi
    # Kafka 4.x needs Java 17+; Debian 12's default JRE is 17.
    command -v java >/dev/null || apt_ensure openjdk-17-jre-headless
    command -v mvn >/dev/null || apt_ensure maven
    log "kafka: resolving org.apache.kafka:kafka_2.13:$(kafka_version) and its runtime dependencies with Maven"
    stage="$libs.tmp.$$"
    rm -rf "$stage"
    mkdir -p "$stage"
    # copy-dependencies fetches into ~/.m2 (reused on reruns) and copies the jars out of it.
    if ! mvn -B -q -f "$KAFKA_SRC/pom.xml" dependency:copy-dependencies \
        -DincludeScope=runtime -DoutputDirectory="$stage" >"$stage.mvn.log" 2>&1; then
        log_tail "$stage.mvn.log"
        rm -rf "$stage"
        die "kafka: Maven could not resolve the broker jars (see above)"
    fi
    rm -f "$stage.mvn.log"
    ls "$stage"/kafka_2.13-*.jar >/dev/null 2>&1 || die "kafka: kafka_2.13 jar missing after Maven copy"
    touch "$stage/.complete"
    rm -rf "$libs"
    mkdir -p "$(dirname "$libs")"
    mv "$stage" "$libs"
    prune_cache_siblings "$CACHE_DIR/kafka" "$(dirname "$libs")"
    log "kafka: $(find "$libs" -name '*.jar' | wc -l) jars in $libs"
}

kafka_ready() { repo_python "$KAFKA_SRC/probe.py" --bootstrap "127.0.0.1:$KAFKA_PORT" --timeout 3; }

# A KRaft cluster id is 16 random bytes in URL-safe base64 without padding (what
# `StorageTool random-uuid` prints); made here to save a JVM start. Kafka rejects ids
# that start with '-' because they read like options.
kafka_new_cluster_id() {
    local id
    while true; do
        id=$(head -c 16 /dev/urandom | base64 | tr '+/' '-_' | tr -d '=\n')
        [[ $id != -* ]] && break
    done
    printf '%s\n' "$id"
}

kafka_start() {
    local libs pid
    if pid=$(live_pid "$KAFKA_PIDFILE" "$KAFKA_MARKER"); then
        log "kafka: already running (pid $pid)"
        return 0
    fi
    local p
    for p in "$KAFKA_PORT" "$KAFKA_CONTROLLER_PORT" "$KAFKA_SASL_PORT"; do
        ! port_open "$p" || die "kafka: 127.0.0.1:$p is taken by a process components.sh did not start"
    done
    libs=$(kafka_libs_dir)
    [[ -f $libs/.complete ]] || kafka_install
    mkdir -p "$KAFKA_RUN/data" "$KAFKA_RUN/logs"
    kafka_tls_files
    sed -e "s#@LOG_DIRS@#$KAFKA_RUN/data#" -e "s#@CONTROLLER_PORT@#$KAFKA_CONTROLLER_PORT#g" \
        -e "s#@TLS_DIR@#$KAFKA_TLS#g" \
        -e "s#@PORT@#$KAFKA_PORT#g" -e "s#@SASL_PORT@#$KAFKA_SASL_PORT#g" \
        -e "s#@SASL_USERNAME@#$KAFKA_SASL_USERNAME#g" -e "s#@SASL_PASSWORD@#$KAFKA_SASL_PASSWORD#g" \
        "$KAFKA_SRC/server.properties.in" >"$KAFKA_CONFIG"

    local heap
    read -ra heap <<<"$KAFKA_HEAP"
    local jvm=(-server "${heap[@]}" -XX:+UseG1GC -XX:MaxGCPauseMillis=20
        -XX:InitiatingHeapOccupancyPercent=35 -XX:+ExplicitGCInvokesConcurrent
        -Djava.awt.headless=true
        "-Dlog4j2.configurationFile=$KAFKA_SRC/log4j2.properties"
        "-Dkafka.logs.dir=$KAFKA_RUN/logs"
        -cp "$libs/*")

    if [[ ! -f $KAFKA_RUN/data/meta.properties ]]; then
        [[ -s $KAFKA_RUN/cluster-id ]] || kafka_new_cluster_id >"$KAFKA_RUN/cluster-id"
        log "kafka: formatting storage (cluster id $(<"$KAFKA_RUN/cluster-id"))"
        if ! "$KAFKA_JAVA" "${jvm[@]}" kafka.tools.StorageTool format --standalone \
            -t "$(<"$KAFKA_RUN/cluster-id")" -c "$KAFKA_CONFIG" >>"$KAFKA_STDOUT" 2>&1; then
            log_tail "$KAFKA_STDOUT"
            die "kafka: storage format failed"
        fi
    fi
    log "kafka: starting $(kafka_version) on 127.0.0.1:$KAFKA_PORT (SASL over TLS 127.0.0.1:$KAFKA_SASL_PORT, controller 127.0.0.1:$KAFKA_CONTROLLER_PORT)"
    start_detached "$KAFKA_PIDFILE" "$KAFKA_STDOUT" \
        "$KAFKA_JAVA" "$(kafka_cds_opts)" "${jvm[@]}" kafka.Kafka "$KAFKA_CONFIG"
}

kafka_wait() {
    # stdout.log holds what the JVM says before log4j is up (bad options, OOM, crashes).
    wait_until_ready kafka "$KAFKA_PIDFILE" "$KAFKA_MARKER" "$KAFKA_LOG:$KAFKA_STDOUT" kafka_ready
}

kafka_down() {
    local clean=$1
    local rc=0
    stop_pidfile kafka "$KAFKA_PIDFILE" "$KAFKA_MARKER" || rc=$?
    # A JVM killed mid-dump leaves a partial archive: never keep that one.
    ((rc == 2)) && rm -f "$KAFKA_NEW_CDS"
    kafka_keep_cds
    if [[ $clean == 1 ]]; then
        rm -rf "$KAFKA_RUN"
        log "kafka: removed $KAFKA_RUN"
    fi
}

kafka_status() {
    local pid
    if ! pid=$(live_pid "$KAFKA_PIDFILE" "$KAFKA_MARKER"); then
        echo "kafka: stopped"
        return 1
    fi
    if kafka_ready >/dev/null 2>&1; then
        echo "kafka: running (pid $pid), ready at 127.0.0.1:$KAFKA_PORT, version $(kafka_version), log $KAFKA_LOG"
    else
        echo "kafka: running (pid $pid) but not answering at 127.0.0.1:$KAFKA_PORT, log $KAFKA_LOG"
        return 1
    fi
}

# A CA and the broker's certificate for 127.0.0.1 (the SASL listener's TLS), made once per run dir.
kafka_tls_files() {
    [[ -s $KAFKA_TLS/broker.pem && -s $KAFKA_TLS/ca.crt ]] && return 0
    command -v openssl >/dev/null || apt_ensure openssl
    mkdir -p "$KAFKA_TLS"
    (
        cd "$KAFKA_TLS"
        openssl req -x509 -newkey rsa:2048 -nodes -keyout ca.key -out ca.crt -days 3650 \
            -subj "/CN=chargenet test Kafka CA" 2>/dev/null
        openssl req -newkey rsa:2048 -nodes -keyout broker.key -out broker.csr \
            -subj "/CN=127.0.0.1" 2>/dev/null
        printf 'subjectAltName=IP:127.0.0.1,DNS:localhost\n' >san.ext
        openssl x509 -req -in broker.csr -CA ca.crt -CAkey ca.key -CAcreateserial \
            -out broker.crt -days 3650 -extfile san.ext 2>/dev/null
        # Kafka's PEM key store: the (PKCS#8, unencrypted) key, then the certificate chain.
        cat broker.key broker.crt >broker.pem
        # Only broker.pem and ca.crt are used; the CA's key is not kept.
        rm -f ca.key ca.srl broker.key broker.csr broker.crt san.ext
    ) || die "kafka: could not make the test TLS files in $KAFKA_TLS"
}

kafka_env() {
    echo "export CHARGENET_TEST_KAFKA=127.0.0.1:$KAFKA_PORT"
    echo "export CHARGENET_TEST_KAFKA_SASL=127.0.0.1:$KAFKA_SASL_PORT"
    echo "export CHARGENET_TEST_KAFKA_SASL_USERNAME=$KAFKA_SASL_USERNAME"
    echo "export CHARGENET_TEST_KAFKA_SASL_PASSWORD=$KAFKA_SASL_PASSWORD"
    echo "export CHARGENET_TEST_KAFKA_CA_FILE=$KAFKA_TLS/ca.crt"
}
