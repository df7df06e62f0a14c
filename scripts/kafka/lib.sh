# shellcheck shell=bash
# Shared by scripts/start-kafka.sh and scripts/kafka-tool.sh (sourced, not
# run): finds Java, and resolves the Kafka jars that scripts/kafka/pom.xml
# names into a cache directory, once per version of that pom.
#
# - Cache: $WEIR_KAFKA_HOME (default ${XDG_CACHE_HOME:-$HOME/.cache}/weir-kafka);
#   the jars go to lib-HASH/ in there, HASH being the start of the pom's
#   SHA-256. A directory is complete once Maven has finished copying; it is
#   moved into place whole, so an interrupted resolution leaves nothing
#   half-done behind; directories of older versions of the pom are left
#   alone (delete them by hand). Maven's own repository (~/.m2 unless its settings say
#   otherwise) also keeps what it downloaded.
# - Java: $JAVA_HOME/bin/java, else `java` on PATH; it must be 17 or newer.
# - Installs what is missing with apt-get (sudo when not root): Debian's
#   openjdk-17-jre-headless for Java, `maven` for mvn (needed only when the
#   cache is not complete).
#
# Callers set KAFKA_LOG_PREFIX (for messages on stderr) before sourcing.

KAFKA_SCRIPTS_DIR="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
KAFKA_POM="$KAFKA_SCRIPTS_DIR/pom.xml"
WEIR_KAFKA_HOME="${WEIR_KAFKA_HOME:-${XDG_CACHE_HOME:-$HOME/.cache}/weir-kafka}"

log() { echo "${KAFKA_LOG_PREFIX:-kafka}: $*" >&2; }

apt_install() {
    if ! command -v apt-get >/dev/null 2>&1; then
        log "$* is missing and apt-get is not available; install it by hand."
        return 1
    fi
    local sudo=()
    if [ "$(id -u)" -ne 0 ]; then
        command -v sudo >/dev/null 2>&1 || { log "not root and sudo is not available"; return 1; }
        sudo=(sudo)
    fi
    log "installing $* (apt-get install)"
    export DEBIAN_FRONTEND=noninteractive
    ${sudo[@]+"${sudo[@]}"} apt-get update >&2
    ${sudo[@]+"${sudo[@]}"} apt-get install -y --no-install-recommends "$@" >&2
}

# The major version of the java at $1, or nothing.
java_major() {
    "$1" -XshowSettings:properties -version 2>&1 \
        | awk -F'= *' '/java\.specification\.version/ { print $2; exit }' \
        | sed 's/^1\.//'
}

# Sets JAVA to a Java 17+ binary, installing one if there is none.
find_java() {
    local candidates=() c major
    [ -n "${JAVA_HOME:-}" ] && candidates+=("$JAVA_HOME/bin/java")
    command -v java >/dev/null 2>&1 && candidates+=("$(command -v java)")
    candidates+=(/usr/lib/jvm/java-17-openjdk-*/bin/java)
    for c in "${candidates[@]}"; do
        [ -x "$c" ] || continue
        major="$(java_major "$c")"
        if [ -n "$major" ] && [ "$major" -ge 17 ]; then
            JAVA="$c"
            return 0
        fi
    done
    apt_install openjdk-17-jre-headless || return 1
    for c in /usr/lib/jvm/java-17-openjdk-*/bin/java; do
        [ -x "$c" ] && { JAVA="$c"; return 0; }
    done
    log "installed openjdk-17-jre-headless, but found no Java 17"
    return 1
}

# Sets KAFKA_LIB to a directory holding every jar the pom needs (resolving
# them with Maven first if this version of the pom has not been resolved).
resolve_kafka_lib() {
    local hash tmp
    hash="$(sha256sum "$KAFKA_POM" | cut -c1-16)"
    KAFKA_LIB="$WEIR_KAFKA_HOME/lib-$hash"
    [ -f "$KAFKA_LIB/.complete" ] && return 0

    mkdir -p "$WEIR_KAFKA_HOME"
    # Serialise resolutions of the same cache (fd 8; callers close it in
    # anything long-lived they start).
    exec 8>"$WEIR_KAFKA_HOME/.lock"
    flock 8
    if [ ! -f "$KAFKA_LIB/.complete" ]; then
        command -v mvn >/dev/null 2>&1 || apt_install maven || { exec 8>&-; return 1; }
        # Left by an interrupted resolution (none can be running: we hold the lock).
        rm -rf "$WEIR_KAFKA_HOME"/.resolving.*
        tmp="$(mktemp -d "$WEIR_KAFKA_HOME/.resolving.XXXXXX")"
        cp "$KAFKA_POM" "$tmp/pom.xml"
        log "resolving Kafka's jars with Maven into $KAFKA_LIB"
        local started=$SECONDS
        # Maven's output is shown only if it fails.
        if ! (cd "$tmp" && JAVA_HOME="${JAVA_HOME:-$(dirname "$(dirname "$(readlink -f "$JAVA")")")}" \
                mvn -B -Dstyle.color=never dependency:copy-dependencies \
                -DincludeScope=runtime -DoutputDirectory="$tmp/lib") >"$tmp/mvn.log" 2>&1; then
            log "Maven could not resolve $KAFKA_POM; its output:"
            tail -n 60 "$tmp/mvn.log" >&2
            rm -rf "$tmp"
            exec 8>&-
            return 1
        fi
        cp "$KAFKA_POM" "$tmp/lib/pom.xml"
        touch "$tmp/lib/.complete"
        rm -rf "$KAFKA_LIB"
        mv "$tmp/lib" "$KAFKA_LIB"
        rm -rf "$tmp"
        log "resolved $(find "$KAFKA_LIB" -name '*.jar' | wc -l) jars ($(du -sh "$KAFKA_LIB" | cut -f1)) in $((SECONDS - started))s"
    fi
    exec 8>&-
}
